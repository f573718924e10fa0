"""ImageBind's modality trunk, built on colearn-plugin-image's ViT, and the single-channel ViTs.

ImageBind's depth, thermal and audio trunks are ViTs over single-channel inputs with a
bias-free convolutional patch embedding followed by a LayerNorm, a class token, learned
position embeddings, pre-norm blocks with a learned extra key/value (``add_bias_kv``) and a
final LayerNorm. :class:`ImageBindTrunk` is :class:`colearn_plugin_image.vit.ViTTrunk` (any
channel count, image size, patch kernel and stride: audio uses kernel 16, stride 10) plus that
patch LayerNorm; ``depth/vit``, ``thermal/vit`` and ``audio/ast`` use it.

Shapes: B batch, H x W input, N patches, D width.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from colearn_plugin_image.vit import PatchEmbed, ViTTrunk, num_parameters
from torch import Tensor, nn

from colearn_core import ConfigError, Encoder, EncoderOutput

__all__ = [
    "TRUNK_KEYS",
    "DepthViT",
    "ImageBindTrunk",
    "NormedPatchEmbed",
    "SingleChannelViT",
    "count_parameters",
    "pool_tokens",
    "resolve_config",
    "vit_presets",
]

Size2 = tuple[int, int]


class NormedPatchEmbed(PatchEmbed):
    """:class:`PatchEmbed` followed by a LayerNorm over each patch embedding (ImageBind's stems:
    ``PatchEmbedGeneric`` with ``norm_layer``)."""

    def __init__(
        self,
        in_chans: int,
        dim: int,
        patch_size: int | Size2,
        stride: int | Size2 | None = None,
        bias: bool = False,
        eps: float = 1e-6,
    ) -> None:
        super().__init__(in_chans, dim, patch_size, stride, bias=bias)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(super().forward(x))  # (B, N, D)


class ImageBindTrunk(ViTTrunk):
    """:class:`ViTTrunk` with ImageBind's defaults for non-image modalities: one input channel,
    bias-free patch convolution followed by a LayerNorm (``patch_norm``), learned extra
    key/value in every block (``bias_kv``), no LayerNorm before the blocks, final LayerNorm,
    stochastic depth rising linearly over the blocks. ``(B, C, H, W) -> (B, 1 + N, D)``."""

    def __init__(
        self,
        *,
        in_chans: int = 1,
        patch_norm: bool = True,
        patch_bias: bool = False,
        bias_kv: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(in_chans=in_chans, patch_bias=patch_bias, bias_kv=bias_kv, **kwargs)
        if patch_norm:
            plain = self.patch_embed
            self.patch_embed = NormedPatchEmbed(
                in_chans,
                self.width,
                plain.patch_size,
                plain.stride,
                bias=patch_bias,
                eps=kwargs.get("norm_eps", 1e-6),
            )
            self.patch_embed.proj = plain.proj  # keep the initialised convolution


def pool_tokens(tokens: Tensor, pooling: str, prefix: int = 1) -> Tensor:
    """``(B, T, D) -> (B, D)``: the class token (``"cls"``) or the mean of the patch tokens."""
    return tokens[:, 0] if pooling == "cls" else tokens[:, prefix:].mean(dim=1)


#: Trunk keyword arguments an encoder config may set on top of its size preset.
TRUNK_KEYS: tuple[str, ...] = (
    "image_size",
    "patch_size",
    "patch_stride",
    "width",
    "depth",
    "heads",
    "mlp_ratio",
    "qkv_bias",
    "bias_kv",
    "patch_bias",
    "patch_norm",
    "pre_norm",
    "norm_eps",
    "act",
    "drop",
    "attn_drop",
    "drop_path",
)
POOLS = ("cls", "mean")


def resolve_config(
    owner: str,
    presets: Mapping[str, Mapping[str, Any]],
    config: Mapping[str, Any],
    allowed: tuple[str, ...],
) -> dict[str, Any]:
    """Merge ``config`` over its ``size`` preset (default ``tiny``); unknown keys and sizes are
    ConfigErrors. ``size`` itself is dropped; ``pool`` is checked and kept."""
    size = config.get("size", "tiny")
    if size not in presets:
        raise ConfigError(f"{owner}: unknown size {size!r}; choose one of {', '.join(presets)}")
    unknown = sorted(set(config) - set(allowed) - {"size", "pool"})
    if unknown:
        raise ConfigError(
            f"{owner}: unknown config key(s) {', '.join(unknown)}; "
            f"valid keys: size, pool, {', '.join(allowed)}"
        )
    resolved = {"pool": "cls", **presets[size]}
    resolved.update({k: v for k, v in config.items() if k != "size"})
    if resolved["pool"] not in POOLS:
        raise ConfigError(f"{owner}: pool must be 'cls' or 'mean', got {resolved['pool']!r}")
    return resolved


class SingleChannelViT(Encoder):
    """A ViT over single-channel images ``{"pixels": (B, 1, H, W)}`` (depth, thermal, ...).

    Config: ``size`` (a preset name), ``pool`` (``"cls"``, default, or ``"mean"`` of the patch
    tokens) and any :class:`ImageBindTrunk` argument in :data:`TRUNK_KEYS` to override the
    preset. Returns tokens ``(B, 1 + N, D)`` after the final LayerNorm and the pooled ``(B, D)``.
    Subclasses set :attr:`modality` and :attr:`PRESETS`.
    """

    modality: ClassVar[str] = ""
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
    input_key: ClassVar[str] = "pixels"

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        resolved = resolve_config(f"{self.modality}/vit", self.PRESETS, config, TRUNK_KEYS)
        self.pool = resolved.pop("pool")
        self.trunk = ImageBindTrunk(in_chans=1, **resolved)
        self.width = self.trunk.width

    def forward(self, inputs: Mapping[str, Tensor]) -> EncoderOutput:
        try:
            pixels = inputs[self.input_key]
        except KeyError:
            raise KeyError(
                f"{self.modality}/vit expects inputs[{self.input_key!r}] of shape (B, 1, H, W); "
                f"got keys {sorted(inputs)}"
            ) from None
        tokens = self.trunk(pixels)  # (B, 1 + N, D)
        return EncoderOutput(tokens=tokens, pooled=pool_tokens(tokens, self.pool))

    @classmethod
    def example_config(cls) -> dict[str, Any]:
        return {"size": "tiny", "depth": 2, "image_size": 32, "patch_size": 8}

    def example_inputs(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        h, w = self.trunk.image_size
        return {self.input_key: torch.randn(batch_size, 1, h, w, generator=generator)}


def vit_presets(huge: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Single-channel ViT sizes: ``tiny``, ``base``, and ``huge`` as ``imagebind-huge``."""
    common = {"image_size": 224, "patch_size": 16}
    return {
        "tiny": {**common, "width": 192, "depth": 12, "heads": 3},
        "base": {**common, "width": 768, "depth": 12, "heads": 12},
        "imagebind-huge": {**common, **huge},
    }


class DepthViT(SingleChannelViT):
    """``depth/vit``: a single-channel ViT over depth or disparity maps.

    Sizes: ``tiny`` (192 wide, 12 deep, 3 heads), ``base`` (ViT-B: 768, 12, 12) and
    ``imagebind-huge`` (ImageBind-huge's depth trunk: 384 wide, 12 deep, 8 heads, patch 16,
    224 px).
    """

    modality: ClassVar[str] = "depth"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = vit_presets(
        {"width": 384, "depth": 12, "heads": 8}
    )


def count_parameters(module: nn.Module) -> int:
    """Number of parameters; works on the meta device, where nothing is allocated."""
    return num_parameters(module)
