"""Kaldi fbank and windowed-sinc resampling against stored torchaudio outputs.

The reference values were made once with torchaudio by ``data/make_fbank_reference.py``
(torchaudio cannot be installed beside this project's torch).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import soundfile
import torch
from colearn_plugin_audio.kaldi import fbank, mel_banks, mel_scale
from colearn_plugin_audio.resample import resample, resampled_length
from safetensors.torch import load_file

DATA = Path(__file__).resolve().parent / "data"
IMAGEBIND = dict(
    htk_compat=True,
    sample_frequency=16000,
    use_energy=False,
    window_type="hanning",
    num_mel_bins=128,
    dither=0.0,
    frame_length=25,
    frame_shift=10,
)


@pytest.fixture(scope="module")
def ref():
    return load_file(str(DATA / "fbank_reference.safetensors"))


@pytest.mark.parametrize("case", ["sweep", "noise", "hello"])
def test_imagebind_fbank_matches_torchaudio(ref, case):
    wave = ref[f"{case}.waveform"]
    if case == "hello":
        wave = wave - wave.mean()  # the reference was made from the zero-mean waveform
    ours = fbank(wave, **IMAGEBIND)
    expected = ref[f"{case}.fbank"]
    assert ours.shape == expected.shape
    torch.testing.assert_close(ours, expected, atol=1e-3, rtol=0)


def test_kaldi_default_fbank_matches_torchaudio(ref):
    """Povey window, 23 bins, energy column first (htk_compat=False), raw energy, floor 1."""
    ours = fbank(ref["noise.waveform"], use_energy=True)
    expected = ref["noise_kaldi_defaults.fbank"]
    assert ours.shape == expected.shape == (28, 24)
    torch.testing.assert_close(ours, expected, atol=1e-3, rtol=0)


def test_fbank_is_batched(ref):
    waves = torch.stack([ref["noise.waveform"], ref["sweep.waveform"][:4800]])
    batched = fbank(waves.reshape(2, 1, -1), **IMAGEBIND)
    assert batched.shape == (2, 1, 28, 128)
    for i in range(2):
        torch.testing.assert_close(batched[i, 0], fbank(waves[i], **IMAGEBIND))


def test_frame_count_keeps_whole_windows_only():
    # 2 s at 16 kHz: 1 + (32000 - 400) // 160 = 198 frames (ImageBind pads these to 204)
    assert fbank(torch.randn(32000), **IMAGEBIND).shape == (198, 128)
    assert fbank(torch.randn(400), **IMAGEBIND).shape == (1, 128)
    assert fbank(torch.randn(559), **IMAGEBIND).shape == (1, 128)
    assert fbank(torch.randn(560), **IMAGEBIND).shape == (2, 128)


def test_mel_banks_follow_their_definition():
    """Each filter is a triangle on the mel scale peaking at its centre, zero outside."""
    banks = mel_banks(10, 512, 16000.0, 20.0, 0.0)
    assert banks.shape == (10, 257) and (banks[:, -1] == 0).all()
    lo, hi = mel_scale(20.0), mel_scale(8000.0)
    delta = (hi - lo) / 11
    for b in range(10):
        for k in range(0, 256, 7):
            m = mel_scale(k * 16000.0 / 512)
            left, centre, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
            expected = max(0.0, min((m - left) / (centre - left), (right - m) / (right - centre)))
            assert banks[b, k].item() == pytest.approx(expected, abs=1e-12)


def test_fbank_rejects_bad_input():
    with pytest.raises(ValueError, match="fewer than one 25 ms frame"):
        fbank(torch.randn(399), **IMAGEBIND)
    with pytest.raises(TypeError, match="floating-point"):
        fbank(torch.ones(1000, dtype=torch.int16), **IMAGEBIND)
    with pytest.raises(ValueError, match="window_type"):
        fbank(torch.randn(1000), window_type="kaiser")


def test_resample_matches_torchaudio(ref):
    data, sr = soundfile.read(DATA / "hello.wav", dtype="float32")
    assert sr == 22050
    ours = resample(torch.from_numpy(data), sr, 16000)
    expected = ref["hello.waveform"]
    assert ours.shape == expected.shape == (resampled_length(len(data), 22050, 16000),)
    # torchaudio's float32 convolution is itself ~7e-6 from an exact float64 resampling
    torch.testing.assert_close(ours, expected, atol=5e-5, rtol=0)


@pytest.mark.parametrize(("orig", "new"), [(44100, 16000), (8000, 16000), (48000, 16000)])
def test_resampling_keeps_a_tone_in_band(orig, new):
    t = torch.arange(orig, dtype=torch.float64) / orig  # 1 s
    tone = torch.sin(2 * math.pi * 1000 * t)
    out = resample(tone, orig, new)
    assert out.shape == (new,)
    expected = torch.sin(2 * math.pi * 1000 * torch.arange(new, dtype=torch.float64) / new)
    inner = slice(new // 10, -new // 10)  # away from the zero-padded edges
    torch.testing.assert_close(out[inner], expected[inner], atol=2e-3, rtol=0)


def test_resampling_removes_frequencies_above_the_new_nyquist():
    t = torch.arange(44100, dtype=torch.float64) / 44100
    alias = resample(torch.sin(2 * math.pi * 10000 * t), 44100, 16000)  # 10 kHz > 8 kHz
    assert alias[1600:-1600].abs().max() < 1e-2


def test_resample_shapes_and_identity():
    x = torch.randn(2, 3, 1000)
    assert resample(x, 16000, 16000) is x
    assert resample(x, 22050, 16000).shape == (2, 3, 726)  # ceil(1000 * 320 / 441)
    with pytest.raises(ValueError, match="positive integers"):
        resample(x, 22050.5, 16000)
