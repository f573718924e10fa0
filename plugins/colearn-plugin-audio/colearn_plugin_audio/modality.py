"""The ``audio`` modality: waveforms -> normalised log-mel clips, as ImageBind prepares them.

Per example: decode, mix down to mono, resample to 16 kHz, cut ``clips_per_example`` clips of
``clip_duration`` seconds at evenly spaced starts (pytorchvideo's ``ConstantClipsPerVideoSampler``,
which ImageBind uses), and per clip: subtract the mean, Kaldi fbank (128 bins, 25 ms Hann
windows every 10 ms), pad with zeros or crop to ``target_length`` frames, then normalise with
ImageBind's mean -4.268 and std 9.138.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from colearn_plugin_depth.single_channel import SampleError, check_config
from torch import Tensor

from colearn_core import ConfigError, Modality

from .kaldi import fbank, num_frames
from .resample import resample

__all__ = ["AudioModality", "clip_starts", "decode_audio"]

#: ImageBind's ``waveform2melspec`` settings for ``kaldi.fbank``.
IMAGEBIND_FBANK: dict[str, Any] = {
    "htk_compat": True,
    "use_energy": False,
    "window_type": "hanning",
    "dither": 0.0,
}
#: Integer PCM dtypes and the value that maps to 1.0 (what soundfile and torchaudio do).
_PCM_SCALE = {
    np.dtype(np.int16): 32768.0,
    np.dtype(np.int32): 2147483648.0,
    np.dtype(np.int8): 128.0,
}
_MAX_CHANNELS = 16


def clip_starts(duration: float, clip_duration: float, clips: int) -> list[Fraction]:
    """Start times (s) of ``clips`` clips spread evenly over ``duration`` seconds.

    The clips start at ``i * max(duration - clip_duration, 0) / clips`` for ``i < clips``:
    pytorchvideo's ``ConstantClipsPerVideoSampler`` as ImageBind uses it (note the division by
    ``clips``, not ``clips - 1``: the last clip does not reach the end). Exact fractions keep the
    sample offsets identical to ImageBind's.
    """
    latest = Fraction(max(duration - clip_duration, 0))
    return [latest * i / clips for i in range(clips)]


def _error(index: int | None, message: str) -> SampleError:
    return SampleError("audio", index, message)


def _as_float_array(data: Any, index: int | None) -> np.ndarray:
    """An array or tensor of PCM samples -> float32 numpy, integer PCM scaled to [-1, 1)."""
    if isinstance(data, Tensor):
        data = data.detach().cpu().numpy()
    elif isinstance(data, (list, tuple)):
        data = np.asarray(data)
    if not isinstance(data, np.ndarray):
        raise _error(index, f"expected an array of samples, got a {type(data).__name__}")
    if np.issubdtype(data.dtype, np.floating):
        return data.astype(np.float32, copy=False)
    if data.dtype in _PCM_SCALE:
        return (data.astype(np.float32) / _PCM_SCALE[data.dtype]).astype(np.float32)
    if data.dtype == np.uint8:
        return (data.astype(np.float32) - 128.0) / 128.0
    raise _error(
        index,
        f"wrong dtype {data.dtype}: expected float samples or integer PCM "
        "(int8, uint8, int16, int32)",
    )


def _channels_first(array: np.ndarray, index: int | None) -> np.ndarray:
    if array.ndim == 1:
        return array[None]
    if array.ndim == 2:
        if array.shape[0] > _MAX_CHANNELS and array.shape[1] <= _MAX_CHANNELS:
            raise _error(
                index,
                f"array of shape {array.shape} looks like (samples, channels); expected "
                "(samples,) or (channels, samples): pass array.T",
            )
        return array
    raise _error(
        index, f"expected (samples,) or (channels, samples) audio, got shape {array.shape}"
    )


def _read_file(source: Any, index: int | None, what: str) -> tuple[np.ndarray, int]:
    import soundfile

    if isinstance(source, Path) and not source.is_file():
        raise _error(index, f"file not found: {what}")
    try:
        data, sr = soundfile.read(source, dtype="float32", always_2d=True)
    except (
        RuntimeError,
        TypeError,
        ValueError,
        OSError,
    ) as err:  # LibsndfileError is a RuntimeError
        raise _error(
            index,
            f"cannot decode {what} as audio ({err}); expected a file soundfile can read "
            "(WAV, FLAC, OGG, ...)",
        ) from None
    return np.ascontiguousarray(data.T), int(sr)  # (channels, samples); later passes are 10x faster


def decode_audio(sample: Any, *, index: int | None = None) -> tuple[np.ndarray, int]:
    """Decode one raw sample into ``(float32 (channels, samples), sampling_rate)``.

    Accepts a path or bytes of an audio file, a ``datasets`` Audio value (``{"array",
    "sampling_rate"}`` decoded, ``{"bytes", "path"}`` undecoded, or a torchcodec
    ``AudioDecoder``), or ``(array, sampling_rate)``. Arrays are ``(samples,)`` or
    ``(channels, samples)``, float or integer PCM.
    """
    if isinstance(sample, (str, os.PathLike)):
        path = Path(sample)
        data, sr = _read_file(path, index, f"file {str(path)!r}")
    elif isinstance(sample, (bytes, bytearray, memoryview)):
        raw = bytes(sample)
        data, sr = _read_file(io.BytesIO(raw), index, f"{len(raw)} bytes")
    elif isinstance(sample, Mapping):
        if "array" in sample:
            if sample.get("sampling_rate") is None:
                raise _error(index, "the audio dict has an 'array' but no 'sampling_rate'")
            data, sr = _as_float_array(sample["array"], index), sample["sampling_rate"]
        elif sample.get("bytes") is not None:
            return decode_audio(sample["bytes"], index=index)
        elif sample.get("path"):
            return decode_audio(sample["path"], index=index)
        else:
            raise _error(
                index,
                f"the audio dict has keys {sorted(sample)}; expected 'array' and "
                "'sampling_rate' (decoded) or 'bytes'/'path' (undecoded)",
            )
    elif hasattr(sample, "get_all_samples"):  # torchcodec AudioDecoder (datasets >= 4)
        decoded = sample.get_all_samples()
        data, sr = _as_float_array(decoded.data, index), decoded.sample_rate
    elif (
        isinstance(sample, (tuple, list))
        and len(sample) == 2
        and isinstance(sample[1], (int, float, np.integer))
    ):
        data, sr = _as_float_array(sample[0], index), sample[1]
    elif isinstance(sample, (np.ndarray, Tensor)):
        raise _error(
            index,
            "a bare array has no sampling rate; pass (array, sampling_rate) or "
            "{'array': array, 'sampling_rate': rate}",
        )
    else:
        raise _error(
            index,
            f"cannot decode a {type(sample).__name__}; expected a file path, bytes, a datasets "
            "Audio value or (array, sampling_rate)",
        )
    if isinstance(sr, float) and sr.is_integer():
        sr = int(sr)
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise _error(index, f"sampling rate must be a positive integer, got {sr!r}")
    return _channels_first(data, index), int(sr)


class AudioModality(Modality):
    """Audio as ImageBind prepares it: ``{"fbank": (clips, 1, num_mel_bins, target_length)}``.

    Config (defaults are ImageBind's):

    - ``sample_rate`` (16000): everything is resampled to this (windowed-sinc, as torchaudio).
    - ``clip_duration`` (2.0 s) and ``clips_per_example`` (3): clips start evenly spaced.
    - ``num_mel_bins`` (128), ``frame_length`` (25 ms), ``frame_shift`` (10 ms).
    - ``target_length`` (204): frames per clip after zero-padding or cropping (a 2 s clip has
      198 frames).
    - ``mean`` (-4.268), ``std`` (9.138): normalisation of the log-mel values.
    - ``mix``: ``"mean"`` averages channels (default); ``"first"`` keeps the first channel.
    - ``silence_threshold`` (0.0): audio whose peak amplitude is at or below this is an error.

    Samples: see :func:`decode_audio`. Empty, silent, non-finite, wrongly typed or undecodable
    audio is a :class:`~colearn_plugin_depth.single_channel.SampleError` naming the example.
    """

    name: ClassVar[str] = "audio"
    feature_types: ClassVar[tuple[str, ...]] = ("Audio",)
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "sample_rate": 16000,
        "clip_duration": 2.0,
        "clips_per_example": 3,
        "num_mel_bins": 128,
        "target_length": 204,
        "frame_length": 25.0,
        "frame_shift": 10.0,
        "mean": -4.268,
        "std": 9.138,
        "mix": "mean",
        "silence_threshold": 0.0,
    }

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        c = check_config("modality 'audio'", config, self.DEFAULTS)
        for key in ("sample_rate", "clips_per_example", "num_mel_bins", "target_length"):
            if isinstance(c[key], bool) or not isinstance(c[key], int) or c[key] <= 0:
                raise ConfigError(f"audio: {key} must be a positive int, got {c[key]!r}")
        for key in ("clip_duration", "frame_length", "frame_shift", "std"):
            if not float(c[key]) > 0:
                raise ConfigError(f"audio: {key} must be > 0, got {c[key]!r}")
        if c["mix"] not in ("mean", "first"):
            raise ConfigError(f"audio: mix must be 'mean' or 'first', got {c['mix']!r}")
        self.options = c
        self.window_size = int(c["sample_rate"] * c["frame_length"] * 0.001)
        self.fbank_options = {
            **IMAGEBIND_FBANK,
            "sample_frequency": float(c["sample_rate"]),
            "num_mel_bins": c["num_mel_bins"],
            "frame_length": float(c["frame_length"]),
            "frame_shift": float(c["frame_shift"]),
        }

    def waveform(self, sample: Any, *, index: int | None = None) -> Tensor:
        """Decode, check, mix down and resample one sample -> float32 ``(samples,)``."""
        data, sr = decode_audio(sample, index=index)
        if data.shape[-1] == 0:
            raise _error(index, "the audio is empty (0 samples); expected a non-empty waveform")
        if not np.isfinite(data).all():
            bad = int((~np.isfinite(data)).sum())
            raise _error(index, f"{bad} samples are NaN or infinite; expected finite audio")
        peak = float(np.abs(data).max())
        if peak <= self.options["silence_threshold"]:
            raise _error(
                index,
                f"the audio is silent (peak amplitude {peak:g}); expected a non-silent waveform",
            )
        mono = data.mean(axis=0) if self.options["mix"] == "mean" else data[0]
        return resample(
            torch.from_numpy(np.ascontiguousarray(mono)), sr, self.options["sample_rate"]
        )

    def clips(self, wave: Tensor) -> list[Tensor]:
        """Cut the clips ImageBind cuts from a resampled waveform ``(samples,)``, each with its
        mean removed.

        Exactly like ImageBind, each clip's mean is subtracted in place from one shared copy of
        the waveform, in clip order, so where clips overlap a later clip starts from samples an
        earlier clip already shifted. Per-frame DC removal hides this except in the frames that
        straddle the earlier clip's end, and only when the clip means differ; it is kept so that
        converted ImageBind checkpoints see the inputs they were trained on.
        """
        o = self.options
        sr = o["sample_rate"]
        starts = clip_starts(wave.shape[-1] / sr, o["clip_duration"], o["clips_per_example"])
        length = Fraction(o["clip_duration"])
        shared = wave.clone()
        out = []
        for start in starts:
            clip = shared[int(start * sr) : int((start + length) * sr)]
            clip -= clip.mean()
            out.append(clip.clone())
        return out

    def melspec(self, clips: Tensor) -> Tensor:
        """Zero-mean clips ``(..., samples)`` -> normalised ``(..., 1, bins, target_length)``."""
        o = self.options
        feats = fbank(clips, **self.fbank_options).transpose(-1, -2)  # (..., bins, frames)
        pad = o["target_length"] - feats.shape[-1]
        feats = F.pad(feats, (0, pad)) if pad > 0 else feats[..., : o["target_length"]]
        return ((feats - o["mean"]) / o["std"]).unsqueeze(-3)

    def preprocess(self, sample: Any, *, index: int | None = None) -> dict[str, Tensor]:
        """One raw sample -> ``{"fbank": (clips, 1, num_mel_bins, target_length)}``."""
        wave = self.waveform(sample, index=index)
        if wave.shape[-1] < self.window_size:
            raise _error(
                index,
                f"the audio is {wave.shape[-1]} samples at {self.options['sample_rate']} Hz, "
                f"shorter than one {self.options['frame_length']} ms frame; expected at least "
                f"{self.window_size} samples",
            )
        clips = self.clips(wave)
        if len({c.shape[-1] for c in clips}) == 1:
            return {"fbank": self.melspec(torch.stack(clips))}
        return {"fbank": torch.cat([self.melspec(c[None]) for c in clips])}

    def frames_per_clip(self) -> int:
        """Fbank frames a full clip yields before padding/cropping to ``target_length``."""
        o = self.options
        samples = int(Fraction(o["clip_duration"]) * o["sample_rate"])
        return num_frames(
            samples, self.window_size, int(o["sample_rate"] * o["frame_shift"] * 0.001)
        )

    @classmethod
    def example_samples(cls, n: int) -> list[Any]:
        """Tones of different pitch, length and sampling rate, as ``datasets`` Audio dicts."""
        out = []
        for i in range(n):
            sr = (16000, 22050, 8000)[i % 3]
            t = np.arange(int(sr * (0.5 + 0.75 * i))) / sr
            tone = 0.3 * np.sin(2 * math.pi * (220.0 * (i + 1)) * t)
            out.append({"array": tone.astype(np.float32), "sampling_rate": sr})
        return out
