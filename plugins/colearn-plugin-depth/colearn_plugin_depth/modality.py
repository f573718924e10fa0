"""The ``depth`` modality: depth or disparity maps -> normalised single-channel tensors."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from colearn_core import ConfigError, Modality

from .single_channel import SampleError, check_config, load_array, pair, resize_map

__all__ = ["DepthModality", "depth_to_disparity", "disparity_to_depth"]


def depth_to_disparity(depth: Tensor, baseline: float = 1.0, focal_length: float = 1.0) -> Tensor:
    """``disparity = baseline * focal_length / depth``; a depth of 0 gives ``inf``."""
    return (baseline * focal_length) / depth


def disparity_to_depth(
    disparity: Tensor, baseline: float = 1.0, focal_length: float = 1.0
) -> Tensor:
    """``depth = baseline * focal_length / disparity``; a disparity of 0 gives ``inf``."""
    return (baseline * focal_length) / disparity


class DepthModality(Modality):
    """Depth or disparity maps: decode, convert, normalise, resize.

    A sample is a float array or tensor, a 16-bit PNG (PIL image, path, bytes or a ``datasets``
    Image value) or a ``.npy`` file holding one ``(H, W)`` map. Config:

    - ``input``: what samples hold, ``"depth"`` (default) or ``"disparity"``.
    - ``output``: what the encoder sees, ``"disparity"`` (default, as ImageBind) or ``"depth"``.
    - ``baseline``, ``focal_length``: the conversion ``depth = baseline * focal_length /
      disparity`` (defaults 1.0 and 1.0: disparity is inverse depth).
    - ``integer_scale``: integer-coded maps (16-bit PNGs) are divided by this (default 1000:
      millimetres to metres).
    - ``invalid``: pixels that are NaN, infinite, negative, or a depth of 0 (no measurement);
      ``"error"`` (default) raises, ``"mask"`` excludes them and fills them with ``fill_value``.
    - ``max_value``: clamp values above this before normalising (None: no clamp).
    - ``mean``, ``std``: normalisation ``(x - mean) / std``.
    - ``image_size`` (int or [H, W], default 224), ``crop``: ``"center"`` (scale the shorter
      side, crop the centre) or ``"none"`` (stretch).

    ``preprocess`` returns ``{"pixels": (1, H, W) float32, "valid": (1, H, W) bool}``.
    """

    name: ClassVar[str] = "depth"
    feature_types: ClassVar[tuple[str, ...]] = ("Image", "Array2D")
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "input": "depth",
        "output": "disparity",
        "baseline": 1.0,
        "focal_length": 1.0,
        "integer_scale": 1000.0,
        "invalid": "error",
        "fill_value": 0.0,
        "max_value": None,
        "mean": 0.0,
        "std": 1.0,
        "image_size": 224,
        "crop": "center",
    }

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        c = check_config("modality 'depth'", config, self.DEFAULTS)
        for key in ("input", "output"):
            if c[key] not in ("depth", "disparity"):
                raise ConfigError(f"depth: {key} must be 'depth' or 'disparity', got {c[key]!r}")
        if c["invalid"] not in ("error", "mask"):
            raise ConfigError(f"depth: invalid must be 'error' or 'mask', got {c['invalid']!r}")
        for key in ("baseline", "focal_length", "integer_scale", "std"):
            if not float(c[key]) > 0:
                raise ConfigError(f"depth: {key} must be > 0, got {c[key]!r}")
        if c["crop"] not in ("center", "none"):
            raise ConfigError(f"depth: crop must be 'center' or 'none', got {c['crop']!r}")
        self.size = pair(c["image_size"], "depth: image_size")
        self.options = c

    def _error(self, index: int | None, message: str) -> SampleError:
        return SampleError(self.name, index, message)

    def to_tensor(self, sample: Any, *, index: int | None = None) -> Tensor:
        """Decode a sample into a float64 ``(H, W)`` map in the units of ``input``."""
        array = load_array(sample, modality=self.name, index=index)
        if array.ndim == 3:
            raise self._error(
                index,
                f"expected a single-channel {self.options['input']} map, got {array.shape[-1]} "
                f"channels (shape {array.shape})",
            )
        if np.issubdtype(array.dtype, np.integer):
            values = array.astype(np.float64) / float(self.options["integer_scale"])
        elif np.issubdtype(array.dtype, np.floating):
            values = array.astype(np.float64)
        else:
            raise self._error(
                index,
                f"wrong dtype {array.dtype}: expected a float or integer-coded "
                f"{self.options['input']} map",
            )
        return torch.from_numpy(values)

    def preprocess(self, sample: Any, *, index: int | None = None) -> dict[str, Tensor]:
        """One raw map -> ``{"pixels": (1, H, W), "valid": (1, H, W)}``; see the class doc."""
        o = self.options
        x = self.to_tensor(sample, index=index)
        invalid = ~torch.isfinite(x) | (x < 0)
        if o["input"] == "depth":
            invalid |= x == 0
        if o["input"] != o["output"]:
            x = depth_to_disparity(x, o["baseline"], o["focal_length"])
            invalid |= ~torch.isfinite(x)
        if bool(invalid.any()):
            if o["invalid"] == "error":
                raise self._error(
                    index,
                    f"{int(invalid.sum())} of {invalid.numel()} pixels are NaN, infinite, "
                    f"negative{' or 0 (no measurement)' if o['input'] == 'depth' else ''}; "
                    f"expected finite non-negative {o['input']} values. Clean the data or set "
                    "invalid='mask' to ignore such pixels",
                )
            x = torch.where(invalid, torch.zeros_like(x), x)
        if o["max_value"] is not None:
            x = x.clamp(max=float(o["max_value"]))
        x = ((x - float(o["mean"])) / float(o["std"])).to(torch.float32)[None]
        pixels, valid = resize_map(x, self.size, crop=o["crop"], valid=~invalid[None])
        if valid is None:
            valid = torch.ones_like(pixels, dtype=torch.bool)
        else:
            pixels = torch.where(valid, pixels, torch.full_like(pixels, float(o["fill_value"])))
        return {"pixels": pixels, "valid": valid}

    @classmethod
    def example_samples(cls, n: int) -> list[Any]:
        """Depth ramps in metres (float32), of a few sizes."""
        out = []
        for i in range(n):
            h, w = 24 + 8 * (i % 3), 32 + 4 * i
            yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
            out.append((0.5 + 3.0 * yy + 0.5 * xx * (i + 1)).astype(np.float32))
        return out
