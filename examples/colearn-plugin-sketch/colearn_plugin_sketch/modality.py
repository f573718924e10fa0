"""The ``sketch`` modality: an image's edge map, the way a quick line drawing would show it.

A sample is anything image-like: a PIL image (what a ``datasets`` Image column decodes to), an
undecoded ``{"bytes": ..., "path": ...}`` value, a file path, or a numpy array / torch tensor
shaped ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)`` with 1, 3 or 4 channels (``uint8`` 0-255 or
float 0-1). Preprocessing, all in torch:

1. grayscale (ITU-R 601 luma: 0.299 R + 0.587 G + 0.114 B; alpha dropped), values in [0, 1];
2. resize to ``image_size`` x ``image_size`` (bilinear, antialiased);
3. Gaussian blur with ``blur_sigma`` (0 turns it off), which keeps texture out of the edges;
4. Sobel gradient magnitude, divided by its maximum so every sketch spans [0, 1];
5. with ``threshold`` set, binary strokes ``magnitude >= threshold``.

Output: ``{"edges": (1, image_size, image_size) float32}``. Borders replicate the edge pixels
(``scipy.ndimage``'s ``mode="nearest"``), so a flat image has no edges at all.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from colearn_core import ConfigError, Modality
from torch import Tensor

__all__ = ["SketchModality", "gaussian_blur", "sobel_magnitude", "to_grayscale"]

_LUMA = (0.299, 0.587, 0.114)
_KEYS = {"image_size", "blur_sigma", "threshold", "max_shift", "drop_p", "drop_size"}


def to_grayscale(sample: Any) -> Tensor:
    """Any supported image-like sample -> ``(H, W)`` float32 in [0, 1]."""
    from PIL import Image

    if isinstance(sample, Mapping) and ("bytes" in sample or "path" in sample):
        sample = sample.get("bytes") or sample.get("path")
    if isinstance(sample, bytes):
        sample = Image.open(io.BytesIO(sample))
    elif isinstance(sample, (str, Path)):
        sample = Image.open(sample)
    if isinstance(sample, Image.Image):
        # Luma as float from RGB (not PIL's rounded "L") so every input type agrees.
        sample = np.array(sample.convert("RGB"))  # a writable copy for torch
    if isinstance(sample, np.ndarray):
        sample = torch.from_numpy(np.ascontiguousarray(sample))
    if not isinstance(sample, Tensor):
        raise TypeError(
            f"modality 'sketch': cannot read a {type(sample).__name__}; give a PIL image, "
            "bytes, a file path, or an (H, W), (H, W, C) or (C, H, W) array"
        )
    x = sample.to(torch.float32) / 255.0 if sample.dtype == torch.uint8 else sample.float()
    if x.ndim == 3 and x.shape[0] in (1, 3, 4) and x.shape[-1] not in (1, 3, 4):
        x = x.permute(1, 2, 0)  # (C, H, W) -> (H, W, C)
    if x.ndim == 3 and x.shape[-1] in (1, 3, 4):
        x = x[..., :3]  # drop alpha
        x = x[..., 0] if x.shape[-1] == 1 else x @ torch.tensor(_LUMA)
    if x.ndim != 2 or min(x.shape) < 3:
        raise ValueError(
            f"modality 'sketch': expected an image of shape (H, W), (H, W, C) or (C, H, W) "
            f"with C in 1, 3, 4 and H, W >= 3; got {tuple(sample.shape)}"
        )
    if not torch.isfinite(x).all():
        raise ValueError("modality 'sketch': image contains NaN or infinite values")
    return x


def gaussian_blur(image: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``(..., H, W)``, radius ``round(3 sigma)``, replicated borders."""
    if sigma <= 0:
        return image
    radius = int(3 * sigma + 0.5)  # scipy.ndimage.gaussian_filter's default truncation
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    x = image.reshape(-1, 1, *image.shape[-2:])  # (N, 1, H, W)
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    x = F.conv2d(x, kernel.view(1, 1, -1, 1))
    return x.reshape(image.shape)


def sobel_magnitude(image: Tensor) -> Tensor:
    """``sqrt(Gx^2 + Gy^2)`` of ``(..., H, W)`` with the 3x3 Sobel kernels, replicated borders."""
    smooth = torch.tensor([1.0, 2.0, 1.0])
    diff = torch.tensor([-1.0, 0.0, 1.0])
    kx = torch.outer(smooth, diff)  # derivative along W, smoothing along H
    kernels = torch.stack([kx, kx.T]).unsqueeze(1)  # (2, 1, 3, 3)
    x = image.reshape(-1, 1, *image.shape[-2:])
    grads = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernels)  # (N, 2, H, W)
    return grads.square().sum(dim=1).sqrt().reshape(image.shape)


class SketchModality(Modality):
    """``sketch``: image-like sample -> ``{"edges": (1, S, S)}`` edge map in [0, 1].

    Config: ``image_size`` S (64), ``blur_sigma`` (1.0), ``threshold`` (None: soft edges;
    a float in (0, 1): binary strokes). Augmentation (views of one sketch): ``max_shift``
    (random translation up to that many pixels, 4) and ``drop_p`` (probability that each
    ``drop_size`` x ``drop_size`` patch of strokes is erased, 0.1; patch 8).
    """

    name = "sketch"
    feature_types = ("Image",)

    def __init__(self, **config: Any) -> None:
        unknown = set(config) - _KEYS
        if unknown:
            raise ConfigError(
                f"modality 'sketch': unknown config keys {sorted(unknown)}; known: {sorted(_KEYS)}"
            )
        resolved = {
            "image_size": int(config.get("image_size", 64)),
            "blur_sigma": float(config.get("blur_sigma", 1.0)),
            "threshold": config.get("threshold"),
            "max_shift": int(config.get("max_shift", 4)),
            "drop_p": float(config.get("drop_p", 0.1)),
            "drop_size": int(config.get("drop_size", 8)),
        }
        if resolved["image_size"] < 8:
            size = resolved["image_size"]
            raise ConfigError(f"modality 'sketch': image_size must be >= 8, got {size}")
        threshold = resolved["threshold"]
        if threshold is not None and not 0 < float(threshold) < 1:
            raise ConfigError(f"modality 'sketch': threshold must be in (0, 1), got {threshold}")
        if not 0 <= resolved["drop_p"] < 1:
            drop_p = resolved["drop_p"]
            raise ConfigError(f"modality 'sketch': drop_p must be in [0, 1), got {drop_p}")
        super().__init__(**resolved)

    def edges(self, gray: Tensor) -> Tensor:
        """``(H, W)`` grayscale -> ``(S, S)`` edge map (steps 2-5 of the module docstring)."""
        size = self.config["image_size"]
        if tuple(gray.shape) != (size, size):
            gray = F.interpolate(
                gray[None, None], size=(size, size), mode="bilinear", antialias=True
            )[0, 0]
        magnitude = sobel_magnitude(gaussian_blur(gray, self.config["blur_sigma"]))
        peak = magnitude.max()
        # A flat image has no edges; don't blow up rounding noise to full-strength strokes.
        magnitude = magnitude / peak if peak > 1e-6 else torch.zeros_like(magnitude)
        if self.config["threshold"] is not None:
            magnitude = (magnitude >= self.config["threshold"]).float()
        return magnitude

    def preprocess(self, sample: Any) -> dict[str, Tensor]:
        return {"edges": self.edges(to_grayscale(sample)).unsqueeze(0)}

    def augment(
        self, batch: Mapping[str, Tensor], *, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """Random translation (zeros enter at the border) and erased patches of strokes."""
        edges = batch["edges"]  # (B, 1, S, S)
        b, _, s, _ = edges.shape
        out = torch.zeros_like(edges)
        m = self.config["max_shift"]
        shifts = torch.randint(-m, m + 1, (b, 2), generator=generator).tolist()
        for i, (dy, dx) in enumerate(shifts):
            src_y, dst_y = slice(max(0, -dy), s - max(0, dy)), slice(max(0, dy), s - max(0, -dy))
            src_x, dst_x = slice(max(0, -dx), s - max(0, dx)), slice(max(0, dx), s - max(0, -dx))
            out[i, :, dst_y, dst_x] = edges[i, :, src_y, src_x]
        p, patch = self.config["drop_p"], self.config["drop_size"]
        if p > 0:
            cells = math.ceil(s / patch)
            keep = (torch.rand(b, 1, cells, cells, generator=generator) >= p).float()
            keep = keep.repeat_interleave(patch, 2).repeat_interleave(patch, 3)[..., :s, :s]
            out = out * keep.to(out)
        return {**batch, "edges": out}

    @classmethod
    def example_samples(cls, n: int) -> list[Any]:
        """Synthetic drawings: a filled square and a ring at positions that vary with ``i``."""
        from PIL import Image

        samples: list[Any] = []
        yy, xx = np.mgrid[0:48, 0:48]
        for i in range(n):
            image = np.full((48, 48), 30, dtype=np.uint8)
            image[6 + i % 10 : 20 + i % 10, 8:22] = 220
            ring = np.abs(np.hypot(yy - 30, xx - 32 + i % 7) - 9) < 2
            image[ring] = 160
            # Alternate input types, as real data would mix them.
            samples.append(Image.fromarray(image).convert("RGB") if i % 2 else image)
        return samples
