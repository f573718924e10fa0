"""The ``thermal`` modality and the ``thermal/vit`` encoder."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from colearn_plugin_depth.single_channel import (
    SampleError,
    check_config,
    load_array,
    pair,
    resize_map,
    to_luminance,
)
from colearn_plugin_depth.vit import SingleChannelViT, vit_presets
from torch import Tensor

from colearn_core import ConfigError, Modality

__all__ = ["ThermalModality", "ThermalViT"]

#: Integer dtypes a thermal image may have, and the value that maps to 1.0.
_INTEGER_FULL_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


class ThermalModality(Modality):
    """Single-channel thermal images: decode, scale to [0, 1], normalise, resize.

    A sample is a PIL image (``L`` or 16-bit), a path, bytes, a ``datasets`` Image value, or a
    ``(H, W)`` array/tensor. ``uint8`` is divided by 255, ``uint16`` by 65535; float images are
    taken as they are (already scaled). Config:

    - ``mean``, ``std``: normalisation ``(x - mean) / std`` after scaling (defaults 0 and 1).
    - ``image_size`` (int or [H, W], default 224) and ``crop`` (``"center"`` or ``"none"``).
    - ``convert_rgb``: colour images (thermal frames saved as RGB, e.g. LLVIP's) are an error
      by default; True converts them to luminance.

    ``preprocess`` returns ``{"pixels": (1, H, W) float32}``.
    """

    name: ClassVar[str] = "thermal"
    feature_types: ClassVar[tuple[str, ...]] = ("Image",)
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "mean": 0.0,
        "std": 1.0,
        "image_size": 224,
        "crop": "center",
        "convert_rgb": False,
    }

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        c = check_config("modality 'thermal'", config, self.DEFAULTS)
        if not float(c["std"]) > 0:
            raise ConfigError(f"thermal: std must be > 0, got {c['std']!r}")
        if c["crop"] not in ("center", "none"):
            raise ConfigError(f"thermal: crop must be 'center' or 'none', got {c['crop']!r}")
        self.size = pair(c["image_size"], "thermal: image_size")
        self.options = c

    def to_tensor(self, sample: Any, *, index: int | None = None) -> Tensor:
        """Decode a sample into a float32 ``(H, W)`` image scaled to [0, 1] (integer inputs)."""
        array = load_array(sample, modality=self.name, index=index)
        if array.ndim == 3:
            if not self.options["convert_rgb"] or array.shape[-1] not in (3, 4):
                raise SampleError(
                    self.name,
                    index,
                    f"expected a single-channel thermal image, got {array.shape[-1]} channels "
                    f"(shape {array.shape}); set convert_rgb=True to convert colour images to "
                    "luminance",
                )
            array = to_luminance(array)
        if array.dtype in _INTEGER_FULL_SCALE:
            values = array.astype(np.float32) / _INTEGER_FULL_SCALE[array.dtype]
        elif np.issubdtype(array.dtype, np.floating):
            values = array.astype(np.float32)
        else:
            raise SampleError(
                self.name,
                index,
                f"wrong dtype {array.dtype}: expected uint8, uint16 or float thermal images",
            )
        x = torch.from_numpy(values)
        if not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            raise SampleError(
                self.name,
                index,
                f"{bad} pixels are NaN or infinite; expected finite thermal values",
            )
        return x

    def preprocess(self, sample: Any, *, index: int | None = None) -> dict[str, Tensor]:
        """One raw image -> ``{"pixels": (1, H, W)}``."""
        o = self.options
        x = (self.to_tensor(sample, index=index) - float(o["mean"])) / float(o["std"])
        pixels, _ = resize_map(x[None], self.size, crop=o["crop"])
        return {"pixels": pixels}

    @classmethod
    def example_samples(cls, n: int) -> list[Any]:
        """uint8 and uint16 gradients of a few sizes."""
        out: list[Any] = []
        for i in range(n):
            h, w = 20 + 6 * i, 28 + 2 * i
            ramp = np.add.outer(np.arange(h), np.arange(w)) / float(h + w)
            out.append(
                (ramp * 255).astype(np.uint8) if i % 2 == 0 else (ramp * 65535).astype(np.uint16)
            )
        return out


class ThermalViT(SingleChannelViT):
    """``thermal/vit``: a single-channel ViT over thermal images ``{"pixels": (B, 1, H, W)}``.

    Sizes: ``tiny`` (192 wide, 12 deep, 3 heads), ``base`` (ViT-B: 768, 12, 12) and
    ``imagebind-huge`` (ImageBind-huge's thermal trunk: 768 wide, 12 deep, 12 heads, patch 16).
    """

    modality: ClassVar[str] = "thermal"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = vit_presets(
        {"width": 768, "depth": 12, "heads": 12}
    )
