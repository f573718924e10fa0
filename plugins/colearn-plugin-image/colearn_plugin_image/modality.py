"""The ``image`` modality: decoding, resize / centre crop / normalise, and SimCLR views.

Accepted samples: PIL images; ``datasets`` Image values (a PIL image, or ``{"bytes": ...,
"path": ...}`` when the column is not decoded); encoded bytes; a file path; numpy arrays and
torch tensors shaped ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)`` with 1, 3 or 4 (alpha dropped)
channels, ``uint8`` in 0-255 or float in 0-1. Output: ``{"pixels": (C, H, W) float32}``.
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

from colearn_core import ConfigError, InputError, Modality

from .vit import to_2tuple

__all__ = ["CLIP_MEAN", "CLIP_STD", "ImageInputError", "ImageModality"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_AUGMENT_KEYS = {
    "augmentations",
    "crop_scale",
    "crop_ratio",
    "flip_p",
    "color_strength",
    "jitter_p",
    "grayscale_p",
    "blur_p",
    "blur_sigma",
    "blur_kernel",
}
_KEYS = {"image_size", "channels", "mean", "std", "resize", "interpolation"} | _AUGMENT_KEYS
_FLOAT_TOLERANCE = 1e-3  # float pixels may overshoot [0, 1] by rounding


class ImageInputError(InputError):
    """A sample the image modality cannot turn into pixels."""


def _where(index: int | None) -> str:
    return "modality 'image'" + (f", example {index}" if index is not None else "")


class ImageModality(Modality):
    """``image``: any image-like sample -> ``{"pixels": (C, H, W)}``.

    Config: ``image_size`` (224, or [height, width]); ``channels`` (3: grayscale is repeated
    to RGB; 1: colour is converted to luma); ``mean``/``std`` (CLIP's; for 1 channel the
    average of CLIP's); ``resize``: ``"shorter"`` (scale so the image covers ``image_size``,
    then centre crop; CLIP's preprocessing), ``"stretch"`` (resize to exactly ``image_size``)
    or ``"none"`` (centre crop only); ``interpolation`` (bicubic, bilinear, nearest).
    Augmentation keys are those of :class:`~colearn_plugin_image.augment.SimCLRAugment`.
    """

    name = "image"
    feature_types = ("Image",)

    def __init__(self, **config: Any) -> None:
        unknown = set(config) - _KEYS
        if unknown:
            raise ConfigError(
                f"modality 'image': unknown config keys {sorted(unknown)}; known: {sorted(_KEYS)}"
            )
        channels = config.get("channels", 3)
        if channels not in (1, 3):
            raise ConfigError(f"modality 'image': channels must be 1 or 3, got {channels!r}")
        default_mean = CLIP_MEAN if channels == 3 else (sum(CLIP_MEAN) / 3,)
        default_std = CLIP_STD if channels == 3 else (sum(CLIP_STD) / 3,)
        resolved: dict[str, Any] = {
            "image_size": config.get("image_size", 224),
            "channels": channels,
            "mean": [float(m) for m in config.get("mean", default_mean)],
            "std": [float(s) for s in config.get("std", default_std)],
            "resize": config.get("resize", "shorter"),
            "interpolation": config.get("interpolation", "bicubic"),
        }
        resolved.update({k: v for k, v in config.items() if k in _AUGMENT_KEYS})
        super().__init__(**resolved)
        self.image_size = to_2tuple(resolved["image_size"], "modality 'image': image_size")
        self.channels = channels
        for key in ("mean", "std"):
            if len(resolved[key]) not in (1, channels):
                raise ConfigError(
                    f"modality 'image': {key} needs 1 or {channels} values (one per channel), "
                    f"got {resolved[key]}"
                )
        if any(s <= 0 for s in resolved["std"]):
            raise ConfigError(f"modality 'image': std must be positive, got {resolved['std']}")
        self.mean = torch.tensor(resolved["mean"]).expand(channels).reshape(channels, 1, 1)
        self.std = torch.tensor(resolved["std"]).expand(channels).reshape(channels, 1, 1)
        if resolved["resize"] not in ("shorter", "stretch", "none"):
            raise ConfigError(
                "modality 'image': resize must be 'shorter', 'stretch' or 'none', "
                f"got {resolved['resize']!r}"
            )
        if resolved["interpolation"] not in ("bicubic", "bilinear", "nearest"):
            raise ConfigError(
                "modality 'image': interpolation must be bicubic, bilinear or nearest, "
                f"got {resolved['interpolation']!r}"
            )
        self._augmenter: Any = None
        if _AUGMENT_KEYS & set(resolved):
            _ = self.augmenter  # validate the augmentation config now, not at the first batch

    # --- decoding -------------------------------------------------------------------------

    def decode(self, sample: Any, *, index: int | None = None) -> Tensor:
        """Any accepted sample -> ``(channels, H, W)`` float32 in [0, 1], original size."""
        import PIL.Image

        if isinstance(sample, PIL.Image.Image):
            return self._from_pil(sample, index)
        if isinstance(sample, Mapping):
            data, path = sample.get("bytes"), sample.get("path")
            if data is None and not path:
                raise ImageInputError(
                    f"{_where(index)}: expected a dict with 'bytes' or 'path' (a datasets "
                    f"Image value), got keys {sorted(sample)}"
                )
            return self.decode(data if data is not None else path, index=index)
        if isinstance(sample, bytes | bytearray | memoryview):
            return self._from_pil(
                self._open(io.BytesIO(bytes(sample)), "image bytes", index), index
            )
        if isinstance(sample, str | os.PathLike):
            path = Path(sample)
            if not path.is_file():
                raise ImageInputError(f"{_where(index)}: image file {str(path)!r} does not exist")
            return self._from_pil(self._open(path, f"file {str(path)!r}", index), index)
        if isinstance(sample, np.ndarray):
            return self._from_array(torch.from_numpy(np.ascontiguousarray(sample)), False, index)
        if isinstance(sample, Tensor):
            return self._from_array(sample.detach().cpu(), True, index)
        raise ImageInputError(
            f"{_where(index)}: expected a PIL image, a datasets Image value (dict with 'bytes' "
            f"or 'path'), encoded bytes, a file path, a numpy array or a torch tensor; "
            f"got {type(sample).__name__}"
        )

    @staticmethod
    def _open(source: Any, what: str, index: int | None) -> Any:
        import PIL.Image

        try:
            image = PIL.Image.open(source)
            image.load()  # decode now so truncated data fails here, with the index
        except (PIL.UnidentifiedImageError, OSError, ValueError) as exc:
            raise ImageInputError(
                f"{_where(index)}: could not decode {what} as an image (PNG, JPEG, ... that "
                f"Pillow reads): {exc}"
            ) from exc
        return image

    def _from_pil(self, image: Any, index: int | None) -> Tensor:
        if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            raise ImageInputError(
                f"{_where(index)}: expected an 8-bit image (mode L, RGB, RGBA, P, ...), got "
                f"mode {image.mode!r} ({image.size[0]}x{image.size[1]}); 16/32-bit maps belong "
                "to the depth or thermal modality, or convert to 8 bits first"
            )
        image = image.convert("RGB" if self.channels == 3 else "L")
        array = np.asarray(image, dtype=np.uint8)
        x = torch.from_numpy(array.copy())
        x = x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)
        return x.float().div_(255.0)

    def _from_array(self, x: Tensor, channels_first: bool, index: int | None) -> Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        elif x.is_floating_point():
            x = x.float()
            if not torch.isfinite(x).all():
                raise ImageInputError(f"{_where(index)}: float pixels contain NaN or inf")
            lo, hi = x.min().item() if x.numel() else 0.0, x.max().item() if x.numel() else 0.0
            if lo < -_FLOAT_TOLERANCE or hi > 1 + _FLOAT_TOLERANCE:
                raise ImageInputError(
                    f"{_where(index)}: float pixels must lie in [0, 1], got values in "
                    f"[{lo:g}, {hi:g}]; divide 0-255 data by 255 or pass uint8"
                )
            x = x.clamp(0.0, 1.0)
        else:
            raise ImageInputError(
                f"{_where(index)}: expected uint8 (0-255) or float (0-1) pixels, got dtype "
                f"{str(x.dtype).replace('torch.', '')}; convert with .astype(np.uint8) or "
                "scale to float in [0, 1]"
            )
        if x.ndim == 2:
            x = x.unsqueeze(0)
        elif x.ndim == 3:
            first, last = x.shape[0] in (1, 3, 4), x.shape[-1] in (1, 3, 4)
            if first and (channels_first or not last):
                pass  # already (C, H, W)
            elif last:
                x = x.permute(2, 0, 1)
            else:
                raise ImageInputError(
                    f"{_where(index)}: wrong channel count: expected 1, 3 or 4 channels "
                    f"(gray, RGB, RGBA) as the first or last axis of (C, H, W) / (H, W, C), "
                    f"got shape {tuple(x.shape)}"
                )
        else:
            raise ImageInputError(
                f"{_where(index)}: expected an array of shape (H, W), (H, W, C) or (C, H, W), "
                f"got shape {tuple(x.shape)}"
            )
        if min(x.shape[1:]) == 0:
            raise ImageInputError(f"{_where(index)}: empty image of shape {tuple(x.shape)}")
        if x.shape[0] == 4:
            x = x[:3]  # RGBA: drop alpha, as PIL's convert("RGB") does
        if x.shape[0] == 1 and self.channels == 3:
            x = x.expand(3, -1, -1)
        elif x.shape[0] == 3 and self.channels == 1:
            w = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)  # PIL's convert("L") weights
            x = (x * w).sum(dim=0, keepdim=True)
        return x.contiguous()

    # --- geometry and normalisation ------------------------------------------------------

    def resize_crop(self, x: Tensor, *, index: int | None = None) -> Tensor:
        """``(C, H, W)`` -> ``(C, *image_size)`` by the configured resize and a centre crop."""
        th, tw = self.image_size
        h, w = x.shape[-2:]
        mode = self.config["resize"]
        if mode == "stretch":
            size = (th, tw)
        elif mode == "shorter":
            scale = max(th / h, tw / w)
            size = (max(th, round(h * scale)), max(tw, round(w * scale)))
        else:
            if h < th or w < tw:
                raise ImageInputError(
                    f"{_where(index)}: image is {h}x{w}, smaller than image_size {th}x{tw}, "
                    "and resize is 'none'; use resize: shorter"
                )
            size = (h, w)
        if size != (h, w):
            interp = self.config["interpolation"]
            x = F.interpolate(
                x.unsqueeze(0),
                size=size,
                mode=interp,
                antialias=interp != "nearest",
                **({} if interp == "nearest" else {"align_corners": False}),
            )[0].clamp_(0.0, 1.0)  # bicubic overshoots
        top, left = (x.shape[-2] - th) // 2, (x.shape[-1] - tw) // 2
        return x[:, top : top + th, left : left + tw]

    def normalize(self, x: Tensor) -> Tensor:
        """``[0, 1]`` pixels -> ``(x - mean) / std``; works on ``(C, H, W)`` and batches."""
        return (x - self.mean.to(x)) / self.std.to(x)

    def denormalize(self, x: Tensor) -> Tensor:
        """Inverse of :meth:`normalize`."""
        return x * self.std.to(x) + self.mean.to(x)

    def preprocess(self, sample: Any, *, index: int | None = None) -> dict[str, Tensor]:
        """One raw sample -> ``{"pixels": (channels, *image_size) float32}``."""
        x = self.resize_crop(self.decode(sample, index=index), index=index)
        return {"pixels": self.normalize(x).contiguous()}

    # --- augmentation ---------------------------------------------------------------------

    @property
    def augmenter(self) -> Any:
        """The configured :class:`~colearn_plugin_image.augment.SimCLRAugment`."""
        if self._augmenter is None:
            from .augment import SimCLRAugment

            self._augmenter = SimCLRAugment.from_config(self.config)
        return self._augmenter

    def augment(
        self, batch: Mapping[str, Tensor], *, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """A SimCLR view of a collated batch, computed on the batch's device."""
        # Not clamped here: geometric ops keep any values; the colour ops clamp to [0, 1].
        views = self.augmenter(self.denormalize(batch["pixels"]), generator=generator)
        return {**batch, "pixels": self.normalize(views)}

    @classmethod
    def example_samples(cls, n: int) -> list[Any]:
        """Deterministic samples of every accepted kind, of varied sizes."""
        import PIL.Image

        rng = np.random.default_rng(0)
        out: list[Any] = []
        for i in range(n):
            h, w = 24 + 4 * (i % 3), 32 - 2 * (i % 4)
            rgb = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            kind = i % 5
            if kind == 0:
                out.append(PIL.Image.fromarray(rgb))
            elif kind == 1:
                out.append(PIL.Image.fromarray(rgb[..., 0]))  # grayscale
            elif kind == 2:
                out.append(rgb)
            elif kind == 3:
                out.append(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
            else:
                buffer = io.BytesIO()
                PIL.Image.fromarray(rgb).save(buffer, format="PNG")
                out.append({"bytes": buffer.getvalue(), "path": None})
        return out
