"""SimCLR's augmentations as one batched tensor pipeline.

Every operation works on a whole ``(B, C, H, W)`` batch in ``[0, 1]`` on the batch's device,
with per-example random parameters drawn from an optional :class:`torch.Generator` (so a seed
reproduces the views exactly). Per example, in order (Chen et al. 2020, appendix A):

1. ``crop``: random resized crop, area scale U(0.08, 1), log aspect ratio U(log 3/4, log 4/3),
   resized back to the input size (bilinear; one ``affine_grid``/``grid_sample`` call).
2. ``flip``: horizontal flip with p=0.5 (folded into the same sampling grid as the crop).
3. ``jitter``: colour jitter with p=0.8: brightness, contrast and saturation factors
   U(1 - 0.8s, 1 + 0.8s), hue shift U(-0.2s, 0.2s), applied in a random order per example.
4. ``grayscale``: with p=0.2.
5. ``blur``: Gaussian blur with p (0.5 for ImageNet), sigma U(0.1, 2), kernel 10% of the size.

``color`` is SimCLR's "colour distortion" = ``jitter`` + ``grayscale``. The per-op functions
(:func:`adjust_brightness`, ...) take per-example factors and equal torchvision's functional ops
applied one image at a time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from colearn_core import ConfigError

__all__ = [
    "AUGMENTATIONS",
    "DEFAULT_AUGMENTATIONS",
    "SimCLRAugment",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "gaussian_blur",
    "rgb_to_grayscale",
    "resized_crop_flip",
]

AUGMENTATIONS = ("crop", "flip", "color", "jitter", "grayscale", "blur")
DEFAULT_AUGMENTATIONS = ("crop", "flip", "color", "blur")
#: ITU-R 601-2 luma weights, as PIL and torchvision use.
_LUMA = (0.2989, 0.587, 0.114)


def _view(factors: Tensor, x: Tensor) -> Tensor:
    return factors.to(x).view(-1, *([1] * (x.ndim - 1)))


def rgb_to_grayscale(x: Tensor) -> Tensor:
    """``(B, 3, H, W) -> (B, 1, H, W)`` luma."""
    r, g, b = x.unbind(dim=1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def _blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    f = _view(factor, x)
    return (f * x + (1.0 - f) * other).clamp_(0.0, 1.0)


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """Scale intensities by ``factor`` ``(B,)``."""
    return (x * _view(factor, x)).clamp(0.0, 1.0)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Blend each image with the mean of its grayscale version."""
    gray = rgb_to_grayscale(x) if x.shape[1] == 3 else x
    return _blend(x, gray.mean(dim=(1, 2, 3), keepdim=True), factor)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    """Blend each image with its grayscale version."""
    return _blend(x, rgb_to_grayscale(x), factor)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate hue by ``shift`` ``(B,)`` (in turns, |shift| <= 0.5), keeping HSV's saturation
    and value: the hexcone formula out_n = V - C * clamp(min(k, 4 - k), 0, 1) with
    k = (n + H) mod 6 for n = 5, 3, 1 (R, G, B), H in sextants and C = V - min."""
    value = x.amax(dim=1, keepdim=True)  # (B, 1, H, W)
    chroma = value - x.amin(dim=1, keepdim=True)
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    # The max channel picks the sector: H * C = (difference of the other two) + 0, 2C or 4C.
    # Masks multiply rather than torch.where, which is several times slower on CPU.
    r_max = value == r
    g_max = (value == g) & ~r_max
    b_max = ~(r_max | g_max)
    scaled = (g - b) * r_max + (b - r + 2 * chroma) * g_max + (r - g + 4 * chroma) * b_max
    hue = scaled / chroma.clamp(min=1e-12) + 6.0 * _view(shift, value)  # gray: 0 / tiny = 0
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = (hue + n).remainder_(6.0)  # (B, 3, H, W)
    ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return value - chroma * ramp


def gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Separable Gaussian blur with per-example ``sigma`` ``(B,)`` and reflect padding."""
    B, C, H, W = x.shape
    half = (kernel_size - 1) / 2
    coords = torch.linspace(-half, half, kernel_size, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (coords / sigma.to(x).view(-1, 1)) ** 2)  # (B, K)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    kernel = kernel.repeat_interleave(C, dim=0)  # (B*C, K), one per channel of each example
    pad = kernel_size // 2
    y = F.pad(x.reshape(1, B * C, H, W), (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, kernel.view(B * C, 1, 1, kernel_size), groups=B * C)
    y = F.conv2d(y, kernel.view(B * C, 1, kernel_size, 1), groups=B * C)
    return y.view(B, C, H, W)


def resized_crop_flip(
    x: Tensor, boxes: Tensor, flip: Tensor | None = None, size: Sequence[int] | None = None
) -> Tensor:
    """Crop ``boxes`` ``(B, 4)`` = (top, left, height, width) in pixels, optionally mirror, and
    resize to ``size`` (default: the input size), bilinearly, in one ``grid_sample``."""
    B, C, H, W = x.shape
    out_h, out_w = (H, W) if size is None else size
    top, left, h, w = boxes.to(x).unbind(dim=1)
    theta = torch.zeros(B, 2, 3, device=x.device, dtype=x.dtype)
    sign = 1.0 if flip is None else 1.0 - 2.0 * flip.to(x)
    theta[:, 0, 0] = w / W * sign
    theta[:, 0, 2] = (2 * left + w) / W - 1.0  # box centre in [-1, 1]
    theta[:, 1, 1] = h / H
    theta[:, 1, 2] = (2 * top + h) / H - 1.0
    grid = F.affine_grid(theta, [B, C, out_h, out_w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _indices_per_row(masks: Tensor) -> list[Tensor]:
    """For a bool ``(G, B)`` matrix, the column indices of each row's True entries."""
    hits = masks.nonzero()  # (K, 2), row-major, so each row's hits are contiguous
    counts = torch.bincount(hits[:, 0], minlength=masks.shape[0]).tolist()
    return list(torch.split(hits[:, 1], counts))


class SimCLRAugment:
    """Callable ``(images (B, C, H, W) in [0, 1], generator) -> augmented images``.

    Config (all optional): ``augmentations`` (names from :data:`AUGMENTATIONS`, default
    :data:`DEFAULT_AUGMENTATIONS`), ``crop_scale`` ([0.08, 1]), ``crop_ratio`` ([3/4, 4/3]),
    ``flip_p`` (0.5), ``color_strength`` (s = 1.0), ``jitter_p`` (0.8), ``grayscale_p`` (0.2),
    ``blur_p`` (0.5), ``blur_sigma`` ([0.1, 2.0]), ``blur_kernel`` (odd size; default 10% of
    the image side).
    """

    def __init__(
        self,
        augmentations: Iterable[str] = DEFAULT_AUGMENTATIONS,
        *,
        crop_scale: Sequence[float] = (0.08, 1.0),
        crop_ratio: Sequence[float] = (3 / 4, 4 / 3),
        flip_p: float = 0.5,
        color_strength: float = 1.0,
        jitter_p: float = 0.8,
        grayscale_p: float = 0.2,
        blur_p: float = 0.5,
        blur_sigma: Sequence[float] = (0.1, 2.0),
        blur_kernel: int | None = None,
    ) -> None:
        if isinstance(augmentations, str):
            augmentations = [augmentations]
        names = set(augmentations)
        unknown = names - set(AUGMENTATIONS)
        if unknown:
            raise ConfigError(
                f"image augmentations: unknown {sorted(unknown)}; choose from {list(AUGMENTATIONS)}"
            )
        if "color" in names:
            names |= {"jitter", "grayscale"}
        self.ops = names
        self.crop_scale = (float(crop_scale[0]), float(crop_scale[1]))
        self.crop_ratio = (float(crop_ratio[0]), float(crop_ratio[1]))
        self.flip_p = float(flip_p)
        s = float(color_strength)
        self.brightness = self.contrast = self.saturation = 0.8 * s
        self.hue = min(0.2 * s, 0.5)
        self.jitter_p = float(jitter_p)
        self.grayscale_p = float(grayscale_p)
        self.blur_p = float(blur_p)
        self.blur_sigma = (float(blur_sigma[0]), float(blur_sigma[1]))
        if blur_kernel is not None and (blur_kernel < 1 or blur_kernel % 2 == 0):
            raise ConfigError(f"image augmentations: blur_kernel must be odd, got {blur_kernel}")
        self.blur_kernel = blur_kernel

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SimCLRAugment:
        """Pick this pipeline's keys out of a modality config (other keys are ignored)."""
        keys = (
            "crop_scale crop_ratio flip_p color_strength jitter_p grayscale_p blur_p "
            "blur_sigma blur_kernel"
        ).split()
        kwargs = {k: config[k] for k in keys if k in config}
        return cls(config.get("augmentations", DEFAULT_AUGMENTATIONS), **kwargs)

    # --- parameter sampling ---------------------------------------------------------------

    @staticmethod
    def _uniform(shape: Sequence[int], low: float, high: float, gen: torch.Generator | None):
        device = gen.device if gen is not None else "cpu"
        return torch.rand(*shape, generator=gen, device=device) * (high - low) + low

    def sample_crop_boxes(
        self, batch: int, height: int, width: int, gen: torch.Generator | None = None
    ) -> Tensor:
        """``(B, 4)`` boxes (top, left, h, w) as torchvision's RandomResizedCrop.get_params
        draws them: 10 tries per example, then a centre crop at the nearest valid ratio."""
        tries = 10
        area = height * width * self._uniform((batch, tries), *self.crop_scale, gen)
        log_r = self._uniform((batch, tries), *map(math.log, self.crop_ratio), gen)
        ratio = torch.exp(log_r)
        w = torch.sqrt(area * ratio).round()
        h = torch.sqrt(area / ratio).round()
        ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
        first = ok.int().argmax(dim=1, keepdim=True)  # the first successful try
        w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
        # Fallback for examples where no try fits: whole image clipped to the ratio range.
        in_ratio = width / height
        if in_ratio < self.crop_ratio[0]:
            fw, fh = width, round(width / self.crop_ratio[0])
        elif in_ratio > self.crop_ratio[1]:
            fw, fh = round(height * self.crop_ratio[1]), height
        else:
            fw, fh = width, height
        found = ok.any(dim=1)
        w = torch.where(found, w, torch.full_like(w, fw))
        h = torch.where(found, h, torch.full_like(h, fh))
        u = self._uniform((batch, 2), 0.0, 1.0, gen)
        top = torch.where(found, (u[:, 0] * (height - h + 1)).floor(), ((height - h) / 2).floor())
        left = torch.where(found, (u[:, 1] * (width - w + 1)).floor(), ((width - w) / 2).floor())
        return torch.stack([top, left, h, w], dim=1)

    def kernel_size(self, height: int, width: int) -> int:
        """The blur kernel: ``blur_kernel`` or 10% of the shorter side, made odd (>= 3)."""
        if self.blur_kernel is not None:
            return self.blur_kernel
        k = max(3, int(0.1 * min(height, width)))
        return k if k % 2 else k + 1

    # --- the pipeline ---------------------------------------------------------------------

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment ``x`` ``(B, C, H, W)`` with values in [0, 1]; returns a new tensor."""
        if x.ndim != 4:
            raise ValueError(f"image augmentations: expected (B, C, H, W), got {tuple(x.shape)}")
        B, C, H, W = x.shape
        dev, gen = x.device, generator

        def draw(low: float, high: float) -> Tensor:
            return self._uniform((B,), low, high, gen).to(dev)

        def coin(p: float) -> Tensor:
            return self._uniform((B,), 0.0, 1.0, gen).to(dev) < p

        # Parameters are drawn in a fixed order whatever ops are on, so that enabling one op
        # doesn't change the randomness the others see.
        boxes = self.sample_crop_boxes(B, H, W, gen).to(dev)
        flip = coin(self.flip_p)
        jitter_on = coin(self.jitter_p)
        factors = torch.stack(
            [
                draw(max(0.0, 1 - self.brightness), 1 + self.brightness),
                draw(max(0.0, 1 - self.contrast), 1 + self.contrast),
                draw(max(0.0, 1 - self.saturation), 1 + self.saturation),
                draw(-self.hue, self.hue),
            ],
            dim=1,
        )  # (B, 4)
        order = self._uniform((B, 4), 0.0, 1.0, gen).argsort(dim=1).to(dev)  # random op order
        gray_on = coin(self.grayscale_p)
        blur_on = coin(self.blur_p)
        sigma = draw(*self.blur_sigma)

        if "crop" in self.ops:  # one resampling for crop and flip
            x = resized_crop_flip(x, boxes, flip if "flip" in self.ops else None)
        elif "flip" in self.ops:
            x = torch.where(flip.view(B, 1, 1, 1), x.flip(-1), x)
        else:
            x = x.clone()  # the ops below write into x in place
        # Which examples each masked op touches, found with one host sync for all of them
        # (one per op would stall a GPU sixteen times).
        jitter_ops = [adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue]
        if C != 3:  # saturation and hue need colour
            jitter_ops = jitter_ops[:2]
        rows: list[Tensor] = []
        if "jitter" in self.ops:
            rows += [
                jitter_on & (order[:, step] == k)
                for step in range(4)
                for k in range(len(jitter_ops))
            ]
        if "grayscale" in self.ops and C == 3:
            rows.append(gray_on)
        if "blur" in self.ops:
            rows.append(blur_on)
        groups = iter(_indices_per_row(torch.stack(rows)) if rows else [])
        if "jitter" in self.ops:
            for _step in range(4):
                for k, op in enumerate(jitter_ops):
                    idx = next(groups)
                    if idx.numel():
                        x.index_copy_(0, idx, op(x.index_select(0, idx), factors[idx, k]))
        if "grayscale" in self.ops and C == 3:
            idx = next(groups)
            if idx.numel():
                gray = rgb_to_grayscale(x.index_select(0, idx)).expand(-1, 3, H, W)
                x.index_copy_(0, idx, gray)
        if "blur" in self.ops:
            idx = next(groups)
            if idx.numel():
                blurred = gaussian_blur(x.index_select(0, idx), sigma[idx], self.kernel_size(H, W))
                x.index_copy_(0, idx, blurred)
        return x
