"""Band-limited resampling in torch: windowed-sinc interpolation, as ``torchaudio`` does it.

ImageBind resamples with ``torchaudio.functional.resample`` (Hann-windowed sinc, 6 zero
crossings, roll-off 0.99); this reproduces it (checked against stored torchaudio output) so
converted ImageBind models see the same spectrograms.

With ``g = gcd(orig, new)``, ``p = orig / g`` and ``q = new / g``, output sample ``j`` of every
block of ``q`` is a dot product of the input around ``j * p / q`` with a filter of its own, so
the whole resampler is one ``conv1d`` with ``q`` output channels and stride ``p``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["resample", "resampled_length"]


@lru_cache(maxsize=16)
def _kernel(orig: int, new: int, zeros: int, rolloff: float) -> tuple[Tensor, int]:
    """Filters ``(new, 1, 2 * width + orig)`` in float64 and the half-width ``width``."""
    cutoff = min(orig, new) * rolloff  # anti-aliasing: below both Nyquist frequencies
    width = math.ceil(zeros * orig / cutoff)
    # time of every input tap relative to every output phase, in input samples / orig
    taps = torch.arange(-width, width + orig, dtype=torch.float64) / orig  # (taps,)
    phases = -torch.arange(new, dtype=torch.float64)[:, None] / new  # (new, 1)
    t = ((taps + phases) * cutoff).clamp(-zeros, zeros)  # in zero crossings
    window = torch.cos(t * (math.pi / zeros / 2)) ** 2  # Hann, zero at +-zeros crossings
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t)
    return (sinc * window * (cutoff / orig))[:, None, :], width


def resampled_length(num_samples: int, orig_freq: int, new_freq: int) -> int:
    """Output length: ``ceil(num_samples * new / orig)``."""
    g = math.gcd(orig_freq, new_freq)
    return -(-num_samples * (new_freq // g) // (orig_freq // g))


def resample(
    waveform: Tensor,
    orig_freq: int,
    new_freq: int,
    *,
    lowpass_filter_width: int = 6,
    rolloff: float = 0.99,
) -> Tensor:
    """Resample ``(..., samples)`` from ``orig_freq`` to ``new_freq`` Hz (integers)."""
    if int(orig_freq) != orig_freq or int(new_freq) != new_freq or orig_freq <= 0 or new_freq <= 0:
        raise ValueError(
            f"sampling rates must be positive integers, got {orig_freq} and {new_freq}"
        )
    if not waveform.is_floating_point():
        raise TypeError(f"waveform must be a floating-point tensor, got {waveform.dtype}")
    orig_freq, new_freq = int(orig_freq), int(new_freq)
    if orig_freq == new_freq:
        return waveform
    g = math.gcd(orig_freq, new_freq)
    orig, new = orig_freq // g, new_freq // g
    kernel, width = _kernel(orig, new, lowpass_filter_width, float(rolloff))
    shape = waveform.shape
    x = waveform.reshape(-1, 1, shape[-1])
    x = F.pad(x, (width, width + orig))
    y = F.conv1d(x, kernel.to(dtype=waveform.dtype, device=waveform.device), stride=orig)
    y = y.transpose(1, 2).reshape(x.shape[0], -1)  # (N, blocks * new): interleave phases
    y = y[:, : resampled_length(shape[-1], orig_freq, new_freq)]
    return y.reshape(*shape[:-1], y.shape[-1])
