"""Generate the torchaudio reference values the audio tests compare against (run once).

torchaudio cannot be installed beside the project's torch, so this script runs in a separate,
throwaway environment and its output, ``fbank_reference.safetensors``, is committed. How it was
produced (torchaudio 2.9.1 on torch 2.13.0+cpu; torchaudio's compiled extension does not match
that torch, but ``compliance.kaldi`` and ``functional.resample`` are pure Python, so the script
tells torchaudio not to load it)::

    python3 -m venv /tmp/ta-venv
    /tmp/ta-venv/bin/pip install torch numpy safetensors soundfile
    /tmp/ta-venv/bin/pip install --no-deps torchaudio==2.9.1
    /tmp/ta-venv/bin/python make_fbank_reference.py

``hello.wav`` next to this file was made with ``espeak-ng -w hello.wav hello`` (22050 Hz mono
16-bit PCM). Every stored tensor is float32. Keys:

- ``<case>.waveform`` / ``<case>.fbank``: a 16 kHz waveform and torchaudio's Kaldi fbank of it,
  with ImageBind's settings for ``sweep``, ``noise`` and ``hello`` (``hello.waveform`` is the
  wav resampled to 16 kHz by torchaudio) and with Kaldi's defaults (povey window, 23 bins,
  energy column) for ``noise_kaldi_defaults`` (whose input is ``noise.waveform``).
- ``hello.pipeline``: ImageBind's ``load_and_transform_audio_data`` for ``hello.wav``, first clip
  only (the clip is shorter than 2 s, so all three clips are the same), ``(1, 128, 204)``.
- ``long.pipeline``: the same pipeline on :func:`long_signal` (8 kHz) with 1 s clips and
  ``target_length=100``: ``(3, 1, 128, 100)``.
"""

from __future__ import annotations

import math
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
IMAGEBIND_FBANK = dict(
    htk_compat=True,
    sample_frequency=16000,
    use_energy=False,
    window_type="hanning",
    num_mel_bins=128,
    dither=0.0,
    frame_length=25,
    frame_shift=10,
)


def sweep() -> np.ndarray:
    """0.75 s exponential sine sweep 100 Hz -> 7 kHz at 16 kHz, amplitude 0.5."""
    t = np.arange(12000) / 16000.0
    f0, f1, duration = 100.0, 7000.0, 0.75
    k = math.log(f1 / f0) / duration
    return 0.5 * np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)


def noise() -> np.ndarray:
    """0.3 s of Gaussian noise (numpy PCG64, seed 0), standard deviation 0.1."""
    return 0.1 * np.random.default_rng(0).standard_normal(4800)


def long_signal() -> np.ndarray:
    """3.3 s at 8 kHz: two tones whose pitch changes every 0.4 s, plus a DC offset of 0.05."""
    t = np.arange(26400) / 8000.0
    step = np.floor(t / 0.4)
    return (
        0.3 * np.sin(2 * np.pi * (300 + 90 * step) * t) + 0.2 * np.sin(2 * np.pi * 1700 * t) + 0.05
    )


def clip_starts(duration: float, clip_duration: float, clips: int) -> list[Fraction]:
    """Clip start times of pytorchvideo's ConstantClipsPerVideoSampler, as ImageBind uses it."""
    latest = Fraction(max(duration - clip_duration, 0))
    step = Fraction(latest, clips)
    starts = []
    for i in range(clips):
        starts.append(step * i)
        if step * (i + 1) > latest:
            break
    return starts


def imagebind_pipeline(
    waveform,
    sr: int,
    clip_duration: float = 2,
    clips: int = 3,
    target_length: int = 204,
    mean: float = -4.268,
    std: float = 9.138,
):
    """ImageBind's load_and_transform_audio_data for one (channels, samples) waveform."""
    import torch
    import torchaudio
    from torchaudio.compliance import kaldi

    if sr != 16000:
        waveform = torchaudio.functional.resample(waveform, orig_freq=sr, new_freq=16000)
    out = []
    for start in clip_starts(waveform.size(1) / 16000, clip_duration, clips):
        end = start + clip_duration
        clip = waveform[:, int(start * 16000) : int(end * 16000)]
        clip -= clip.mean()  # in place on a view of `waveform`, exactly as ImageBind does
        fb = kaldi.fbank(clip, **IMAGEBIND_FBANK).transpose(0, 1)
        pad = target_length - fb.size(1)
        fb = torch.nn.functional.pad(fb, (0, pad)) if pad > 0 else fb[:, :target_length]
        out.append(((fb - mean) / std).unsqueeze(0))
    return torch.stack(out)


def main() -> None:
    # torchaudio's C++ extension is built for another torch; the functions used here don't need it
    sys.modules["torchaudio.lib._torchaudio"] = None  # type: ignore[assignment]
    import soundfile
    import torch
    import torchaudio
    from safetensors.torch import save_file
    from torchaudio.compliance import kaldi

    tensors = {}
    for name, signal in (("sweep", sweep()), ("noise", noise())):
        wav = torch.from_numpy(signal.astype(np.float32))[None]
        tensors[f"{name}.waveform"] = wav[0]
        tensors[f"{name}.fbank"] = kaldi.fbank(wav, **IMAGEBIND_FBANK)
    # Kaldi's defaults on the same noise (its waveform is ``noise.waveform``)
    tensors["noise_kaldi_defaults.fbank"] = kaldi.fbank(
        tensors["noise.waveform"][None], use_energy=True
    )

    data, sr = soundfile.read(HERE / "hello.wav", dtype="float32", always_2d=True)
    hello = torch.from_numpy(data.T.copy())
    hello16k = torchaudio.functional.resample(hello, orig_freq=sr, new_freq=16000)
    tensors["hello.waveform"] = hello16k[0].clone()
    tensors["hello.fbank"] = kaldi.fbank(hello16k - hello16k.mean(), **IMAGEBIND_FBANK)
    tensors["hello.pipeline"] = imagebind_pipeline(hello.clone(), sr)[0]

    long = torch.from_numpy(long_signal().astype(np.float32))[None]
    tensors["long.pipeline"] = imagebind_pipeline(long, 8000, clip_duration=1, target_length=100)

    tensors = {k: v.contiguous().to(torch.float32) for k, v in tensors.items()}
    metadata = {"torch": torch.__version__, "torchaudio": torchaudio.__version__}
    save_file(tensors, str(HERE / "fbank_reference.safetensors"), metadata=metadata)
    for key, value in tensors.items():
        print(f"{key:32s} {tuple(value.shape)}")


if __name__ == "__main__":
    main()
