"""A general patch transformer trunk (ViT) and the single-channel ViT encoders built on it.

The trunk follows ImageBind's modality trunks: a bias-free convolutional patch embedding (any
number of input channels, any image size, a kernel and a stride that may differ so that patches
overlap, as ImageBind's audio stem does with kernel 16 and stride 10), a LayerNorm on the patch
embeddings, a class token, learned position embeddings, pre-norm transformer blocks (optionally
with a learned extra key/value, ImageBind's ``add_bias_kv``), and a final LayerNorm. It is shared
by ``depth/vit``, ``thermal/vit`` and ``audio/ast``.

Shapes: B batch, C input channels, H x W input, N patches, D width.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from colearn_core import ConfigError, Encoder, EncoderOutput

__all__ = [
    "DepthViT",
    "PatchTransformer",
    "SingleChannelViT",
    "TRUNK_KEYS",
    "count_parameters",
    "pair",
    "patch_grid",
    "resolve_config",
    "vit_presets",
]

Size2 = tuple[int, int]


def pair(value: int | tuple[int, int] | list[int], name: str = "size") -> Size2:
    """``7 -> (7, 7)``; ``(4, 6) -> (4, 6)``; anything else is a ConfigError naming ``name``."""
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int):
        out = (value, value)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        out = (value[0], value[1])
    else:
        raise ConfigError(f"{name} must be an int or a pair of ints, got {value!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in out):
        raise ConfigError(f"{name} must hold positive ints, got {value!r}")
    return out


def patch_grid(image_size: Size2, kernel: Size2, stride: Size2) -> Size2:
    """Patches along each axis for a convolution with this kernel and stride (no padding)."""
    if image_size[0] < kernel[0] or image_size[1] < kernel[1]:
        raise ConfigError(f"image size {image_size} is smaller than the patch kernel {kernel}")
    return tuple((s - k) // st + 1 for s, k, st in zip(image_size, kernel, stride))  # type: ignore[return-value]


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch for a whole example with probability ``p``."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class Attention(nn.Module):
    """Multi-head self-attention with ``scaled_dot_product_attention``.

    ``in_proj`` packs q, k, v like ``nn.MultiheadAttention.in_proj_weight`` and ``bias_k`` /
    ``bias_v`` are its ``add_bias_kv`` extras, so ImageBind checkpoints map over one to one.
    """

    def __init__(self, width: int, heads: int, *, qkv_bias: bool = True, add_bias_kv: bool = False):
        super().__init__()
        if width % heads:
            raise ConfigError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.in_proj = nn.Linear(width, 3 * width, bias=qkv_bias)
        self.out_proj = nn.Linear(width, width)
        if add_bias_kv:
            self.bias_k = nn.Parameter(torch.zeros(1, 1, width))
            self.bias_v = nn.Parameter(torch.zeros(1, 1, width))
        else:
            self.bias_k = self.bias_v = None

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.in_proj(x).chunk(3, dim=-1)  # 3 x (B, T, D)
        if self.bias_k is not None:
            # one learned key/value every query can attend to: (B, T+1, D)
            k = torch.cat([k, self.bias_k.expand(b, 1, d)], dim=1)
            v = torch.cat([v, self.bias_v.expand(b, 1, d)], dim=1)

        def heads(z: Tensor) -> Tensor:  # (B, T', D) -> (B, heads, T', D/heads)
            return z.unflatten(-1, (self.heads, d // self.heads)).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(
        self,
        width: int,
        heads: int,
        *,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        add_bias_kv: bool = False,
        drop_path: float = 0.0,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.norm1 = nn.LayerNorm(width, eps=eps)
        self.attn = Attention(width, heads, qkv_bias=qkv_bias, add_bias_kv=add_bias_kv)
        self.norm2 = nn.LayerNorm(width, eps=eps)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchTransformer(nn.Module):
    """ViT trunk over ``(B, C, H, W)`` inputs -> ``(tokens (B, 1+N, D), pooled (B, D))``.

    Args:
        in_chans: input channels C.
        image_size: input ``H`` and ``W`` (an int for square inputs); fixed, because the position
            embeddings are learned per patch.
        patch_size: the patch-embedding convolution's kernel.
        patch_stride: its stride; defaults to ``patch_size`` (non-overlapping patches).
        width, depth, heads, mlp_ratio: transformer size.
        qkv_bias: biases on the q/k/v projection.
        add_bias_kv: a learned extra key and value per layer (ImageBind's trunks use it).
        patch_bias: a bias on the patch convolution (ImageBind: none).
        patch_norm: LayerNorm on the patch embeddings (ImageBind: yes).
        pre_norm: LayerNorm before the first block (ImageBind: for images only).
        drop_path: stochastic depth rate, rising linearly from 0 in the first block to this
            value in the last (``drop_path_schedule="linear"``, ImageBind's "progressive") or the
            same in every block (``"constant"``).
        pooling: ``"cls"`` (the class token) or ``"mean"`` (mean of the patch tokens).
        eps: LayerNorm epsilon.
    """

    def __init__(
        self,
        *,
        in_chans: int = 1,
        image_size: int | Size2 = 224,
        patch_size: int | Size2 = 16,
        patch_stride: int | Size2 | None = None,
        width: int = 768,
        depth: int = 12,
        heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        add_bias_kv: bool = False,
        patch_bias: bool = False,
        patch_norm: bool = True,
        pre_norm: bool = False,
        drop_path: float = 0.0,
        drop_path_schedule: str = "linear",
        pooling: str = "cls",
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ConfigError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        if drop_path_schedule not in ("constant", "linear"):
            raise ConfigError(
                f"drop_path_schedule must be 'constant' or 'linear', got {drop_path_schedule!r}"
            )
        for name, value in (("in_chans", in_chans), ("width", width), ("depth", depth)):
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive int, got {value!r}")
        self.in_chans = in_chans
        self.image_size = pair(image_size, "image_size")
        kernel = pair(patch_size, "patch_size")
        stride = kernel if patch_stride is None else pair(patch_stride, "patch_stride")
        self.grid = patch_grid(self.image_size, kernel, stride)
        self.num_patches = self.grid[0] * self.grid[1]
        self.width = width
        self.pooling = pooling

        self.patch_embed = nn.Conv2d(in_chans, width, kernel, stride=stride, bias=patch_bias)
        self.patch_norm = nn.LayerNorm(width, eps=eps) if patch_norm else nn.Identity()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.num_patches, width))
        self.pre_norm = nn.LayerNorm(width, eps=eps) if pre_norm else nn.Identity()
        if drop_path_schedule == "linear":  # as torch.linspace(0, drop_path, depth)
            rates = [drop_path * i / max(depth - 1, 1) for i in range(depth)]
        else:
            rates = [drop_path] * depth
        self.blocks = nn.ModuleList(
            Block(
                width,
                heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                add_bias_kv=add_bias_kv,
                drop_path=rate,
                eps=eps,
            )
            for rate in rates
        )
        self.norm = nn.LayerNorm(width, eps=eps)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """ViT initialisation: truncated normal (std 0.02) weights, zero biases."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, Attention) and module.bias_k is not None:
                nn.init.trunc_normal_(module.bias_k, std=0.02)
                nn.init.trunc_normal_(module.bias_v, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.ndim != 4 or x.shape[1] != self.in_chans or tuple(x.shape[2:]) != self.image_size:
            raise ValueError(
                f"expected input of shape (B, {self.in_chans}, {self.image_size[0]}, "
                f"{self.image_size[1]}), got {tuple(x.shape)}"
            )
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, N, D)
        x = self.patch_norm(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1+N, D)
        x = self.pre_norm(x + self.pos_embed)
        for block in self.blocks:
            x = block(x)
        tokens = self.norm(x)  # (B, 1+N, D)
        pooled = tokens[:, 0] if self.pooling == "cls" else tokens[:, 1:].mean(dim=1)
        return tokens, pooled


#: Trunk keyword arguments an encoder config may set (on top of its size preset).
TRUNK_KEYS = (
    "image_size",
    "patch_size",
    "patch_stride",
    "width",
    "depth",
    "heads",
    "mlp_ratio",
    "qkv_bias",
    "add_bias_kv",
    "patch_bias",
    "patch_norm",
    "pre_norm",
    "drop_path",
    "drop_path_schedule",
    "pooling",
    "eps",
)


def resolve_config(
    owner: str,
    presets: Mapping[str, Mapping[str, Any]],
    config: Mapping[str, Any],
    allowed: tuple[str, ...],
) -> dict[str, Any]:
    """Merge ``config`` over its ``size`` preset; unknown keys and sizes are ConfigErrors."""
    size = config.get("size", "tiny")
    if size not in presets:
        raise ConfigError(f"{owner}: unknown size {size!r}; choose one of {', '.join(presets)}")
    unknown = sorted(set(config) - set(allowed) - {"size"})
    if unknown:
        raise ConfigError(
            f"{owner}: unknown config key(s) {', '.join(unknown)}; "
            f"valid keys: size, {', '.join(allowed)}"
        )
    return {**presets[size], **{k: v for k, v in config.items() if k != "size"}}


class SingleChannelViT(Encoder):
    """A ViT over single-channel images ``{"pixels": (B, 1, H, W)}`` (depth, thermal, ...).

    Config: ``size`` (a preset name) plus any :class:`PatchTransformer` argument to override it.
    Subclasses set :attr:`modality` and :attr:`PRESETS`.
    """

    modality: ClassVar[str] = ""
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
    input_key: ClassVar[str] = "pixels"

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        resolved = resolve_config(f"{self.modality}/vit", self.PRESETS, config, TRUNK_KEYS)
        self.trunk = PatchTransformer(in_chans=1, **resolved)
        self.width = self.trunk.width

    def forward(self, inputs: Mapping[str, Tensor]) -> EncoderOutput:
        try:
            pixels = inputs[self.input_key]
        except KeyError:
            raise KeyError(
                f"{self.modality}/vit expects inputs[{self.input_key!r}] of shape (B, 1, H, W); "
                f"got keys {sorted(inputs)}"
            ) from None
        tokens, pooled = self.trunk(pixels)
        return EncoderOutput(tokens=tokens, pooled=pooled)

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
    common = {"image_size": 224, "patch_size": 16, "add_bias_kv": True}
    return {
        "tiny": {**common, "width": 192, "depth": 12, "heads": 3},
        "base": {**common, "width": 768, "depth": 12, "heads": 12},
        "imagebind-huge": {**common, **huge},
    }


class DepthViT(SingleChannelViT):
    """``depth/vit``: a single-channel ViT over depth or disparity maps.

    Sizes: ``tiny`` (192 wide, 12 deep, 3 heads), ``base`` (ViT-B: 768, 12, 12) and
    ``imagebind-huge`` (ImageBind-huge's depth trunk: 384 wide, 12 deep, 8 heads, patch 16, 224 px).
    """

    modality: ClassVar[str] = "depth"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = vit_presets(
        {"width": 384, "depth": 12, "heads": 8}
    )


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (works on the meta device, where nothing is allocated)."""
    return sum(math.prod(p.shape) for p in module.parameters())
