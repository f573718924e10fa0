"""Decoding and resizing of single-channel images (depth, disparity, thermal), shared by plugins.

:func:`load_array` turns any raw sample a dataset may hold (PIL image, path, bytes, a
``datasets`` Image dict, numpy array, tensor) into a 2-D numpy array with its original dtype;
:func:`resize_map` resizes and crops a ``(1, H, W)`` map, optionally ignoring invalid pixels.
Errors are :class:`SampleError`, which names the modality and the example index.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from colearn_core import ConfigError, InputError

__all__ = [
    "SampleError",
    "check_config",
    "load_array",
    "pair",
    "resize_map",
    "to_luminance",
]

_NPY_MAGIC = b"\x93NUMPY"
#: PIL modes that hold one channel, and what they decode to.
_SINGLE_CHANNEL_MODES = ("L", "I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_CHANNELS = {"LA": 2, "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3, "RGBA": 4, "RGBX": 4, "CMYK": 4}


class SampleError(InputError):
    """A raw sample a modality cannot use. The message names the modality and the example."""

    def __init__(self, modality: str, index: int | None, message: str) -> None:
        self.modality = modality
        self.index = index
        where = f"modality {modality!r}" + ("" if index is None else f", example {index}")
        super().__init__(f"{where}: {message}")


def pair(value: Any, name: str = "size") -> tuple[int, int]:
    """``7 -> (7, 7)``; ``(4, 6) -> (4, 6)``; anything but positive ints is a ConfigError."""
    if isinstance(value, int) and not isinstance(value, bool):
        out = (value, value)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        out = (value[0], value[1])
    else:
        raise ConfigError(f"{name} must be an int or a pair of ints, got {value!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in out):
        raise ConfigError(f"{name} must hold positive ints, got {value!r}")
    return out


def check_config(
    owner: str, config: Mapping[str, Any], defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """``defaults`` updated with ``config``; an unknown key is a ConfigError listing valid keys."""
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise ConfigError(
            f"{owner}: unknown config key(s) {', '.join(unknown)}; "
            f"valid keys: {', '.join(defaults)}"
        )
    return {**defaults, **config}


def _open_image(source: Any, modality: str, index: int | None, what: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(source) as image:
            image.load()
            return _from_pil(image, modality, index)
    except FileNotFoundError:
        raise SampleError(modality, index, f"file not found: {what}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        # PIL's own message for an unknown format names a memory address; say it plainly
        reason = "unrecognised image format" if isinstance(err, UnidentifiedImageError) else err
        raise SampleError(
            modality,
            index,
            f"cannot decode {what} as an image: {reason}; expected a PNG/TIFF/JPEG image or a "
            ".npy array",
        ) from None


def _from_pil(image: Any, modality: str, index: int | None) -> np.ndarray:
    mode = image.mode
    if mode in _SINGLE_CHANNEL_MODES:
        array = np.asarray(image)
        if mode == "I" and array.size and array.min() >= 0 and array.max() <= 65535:
            # some PIL versions open 16-bit PNGs as 32-bit "I"; keep their 16-bit meaning
            array = array.astype(np.uint16)
        elif mode.startswith("I;16"):
            array = array.astype(np.uint16)
        return array
    if mode in _CHANNELS or mode == "P":
        if mode == "P":
            image = image.convert("RGB")
        return np.asarray(image)  # (H, W, C): the channel check reports it
    raise SampleError(
        modality, index, f"unsupported PIL image mode {mode!r}; expected a single-channel image"
    )


def _load_npy(source: Any, modality: str, index: int | None, what: str) -> np.ndarray:
    try:
        return np.load(source, allow_pickle=False)
    except FileNotFoundError:
        raise SampleError(modality, index, f"file not found: {what}") from None
    except (ValueError, OSError, EOFError) as err:
        raise SampleError(modality, index, f"cannot read {what} as a .npy array ({err})") from None


def load_array(sample: Any, *, modality: str, index: int | None = None) -> np.ndarray:
    """Decode one raw sample into a numpy array of shape ``(H, W)`` or ``(H, W, C)``.

    Accepts a PIL image, a path (``.npy`` or an image file), bytes, a ``datasets`` Image value
    (``{"bytes": ..., "path": ...}``), a numpy array or a tensor (``(H, W)``, ``(1, H, W)``,
    ``(H, W, 1)``, or ``(C, H, W)`` / ``(H, W, C)`` with C <= 4). Multi-channel results keep
    their channels last, so the caller decides whether they are an error.
    """
    from PIL import Image

    if isinstance(sample, Image.Image):
        array = _from_pil(sample, modality, index)
    elif isinstance(sample, (str, os.PathLike)):
        path = Path(sample)
        if path.suffix.lower() == ".npy":
            array = _load_npy(path, modality, index, f"file {str(path)!r}")
        else:
            array = _open_image(path, modality, index, f"file {str(path)!r}")
    elif isinstance(sample, (bytes, bytearray, memoryview)):
        data = bytes(sample)
        if data.startswith(_NPY_MAGIC):
            array = _load_npy(io.BytesIO(data), modality, index, f"{len(data)} bytes")
        else:
            array = _open_image(io.BytesIO(data), modality, index, f"{len(data)} bytes")
    elif isinstance(sample, Mapping) and ("bytes" in sample or "path" in sample):
        if sample.get("bytes") is not None:
            return load_array(sample["bytes"], modality=modality, index=index)
        if sample.get("path"):
            return load_array(sample["path"], modality=modality, index=index)
        raise SampleError(modality, index, "the image dict has neither 'bytes' nor 'path'")
    elif isinstance(sample, Tensor):
        array = sample.detach().cpu().numpy()
    elif isinstance(sample, np.ndarray):
        array = sample
    else:
        raise SampleError(
            modality,
            index,
            f"cannot decode a {type(sample).__name__}; expected a PIL image, a file path, bytes, "
            "a datasets Image value {'bytes', 'path'}, a numpy array or a tensor",
        )
    return _channels_last(array, modality, index)


def _channels_last(array: np.ndarray, modality: str, index: int | None) -> np.ndarray:
    if array.ndim == 3 and array.shape[0] <= 4 and array.shape[-1] > 4:
        array = np.moveaxis(array, 0, -1)  # (C, H, W) -> (H, W, C)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] > 4):
        raise SampleError(
            modality,
            index,
            f"expected a 2-D single-channel map (H, W), got an array of shape {array.shape}",
        )
    if array.size == 0:
        raise SampleError(modality, index, f"the map is empty (shape {array.shape})")
    return array


def to_luminance(array: np.ndarray) -> np.ndarray:
    """``(H, W, 3|4)`` colour -> ``(H, W)`` float luminance, ITU-R 601 weights (PIL's "L")."""
    rgb = array[..., :3].astype(np.float64)
    out = rgb @ np.array([0.299, 0.587, 0.114])
    if np.issubdtype(array.dtype, np.integer):
        return np.round(out).astype(array.dtype)
    return out.astype(array.dtype)


def _center_crop_box(height: int, width: int, size: tuple[int, int]) -> tuple[int, int]:
    return int(round((height - size[0]) / 2.0)), int(round((width - size[1]) / 2.0))


def resize_map(
    x: Tensor,
    size: tuple[int, int],
    *,
    crop: str = "center",
    valid: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Resize a ``(1, H, W)`` float map to ``size`` with antialiased bilinear interpolation.

    ``crop="center"`` scales the shorter side to fit and crops the centre (aspect kept);
    ``crop="none"`` stretches to ``size``. With a boolean ``valid`` mask, invalid pixels take no
    part in the interpolation (normalised convolution) and the returned mask marks output pixels
    at least half covered by valid input.
    """
    if crop not in ("center", "none"):
        raise ConfigError(f"crop must be 'center' or 'none', got {crop!r}")
    _, height, width = x.shape
    if crop == "center":
        scale = max(size[0] / height, size[1] / width)
        target = (max(size[0], round(height * scale)), max(size[1], round(width * scale)))
    else:
        target = size
    if valid is not None and bool(valid.all()):
        valid = None
    if target != (height, width):
        if valid is None:
            x = F.interpolate(x[None], size=target, mode="bilinear", antialias=True)[0]
        else:
            weight = valid.to(x.dtype)
            num = F.interpolate((x * weight)[None], size=target, mode="bilinear", antialias=True)
            den = F.interpolate(weight[None], size=target, mode="bilinear", antialias=True)
            x = torch.where(den > 1e-6, num / den.clamp_min(1e-6), torch.zeros_like(num))[0]
            valid = den[0] >= 0.5
    if crop == "center" and target != size:
        top, left = _center_crop_box(target[0], target[1], size)
        x = x[:, top : top + size[0], left : left + size[1]]
        if valid is not None:
            valid = valid[:, top : top + size[0], left : left + size[1]]
    return x.contiguous(), valid
