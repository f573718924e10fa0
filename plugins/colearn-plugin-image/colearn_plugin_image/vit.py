"""Vision Transformer: reusable transformer pieces and the ``image/vit`` encoder.

The pieces are meant to be shared by other modality plugins (audio spectrograms, depth and
thermal maps are all "images" with other channel counts and shapes):

- :class:`Attention`, :class:`Mlp`, :class:`TransformerBlock`: pre-norm (or post-norm) blocks
  on top of :func:`torch.nn.functional.scaled_dot_product_attention`, with optional padding
  and causal masks, stochastic depth and ImageBind's learned key/value bias tokens.
- :class:`PatchEmbed`: a strided convolution over ``(B, C, H, W)`` with any ``in_chans``,
  rectangular patches and an optional stride (overlapping patches, as AST/ImageBind audio use).
- :class:`ViTTrunk`: patch embedding + optional [CLS] token + learned positional embedding +
  blocks + final LayerNorm; works on non-square inputs such as ``(1, 128, 204)`` spectrograms.
- :class:`VisionTransformer`: the registered :class:`~colearn_core.Encoder`.

Shapes: B batch, C channels, H/W image size, N patches, T = N (+1 with [CLS]), D width.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from colearn_core import ConfigError, Encoder, EncoderOutput

__all__ = [
    "SIZES",
    "Attention",
    "DropPath",
    "Mlp",
    "PatchEmbed",
    "TransformerBlock",
    "ViTTrunk",
    "VisionTransformer",
    "num_parameters",
    "to_2tuple",
]

#: Width, depth and heads of the standard ViT sizes (Dosovitskiy et al.; DeiT for tiny/small).
SIZES: dict[str, dict[str, int]] = {
    "tiny": {"width": 192, "depth": 12, "heads": 3},
    "small": {"width": 384, "depth": 12, "heads": 6},
    "base": {"width": 768, "depth": 12, "heads": 12},
    "large": {"width": 1024, "depth": 24, "heads": 16},
    "huge": {"width": 1280, "depth": 32, "heads": 16},
}


def to_2tuple(value: int | Sequence[int], name: str = "size") -> tuple[int, int]:
    """``16 -> (16, 16)``; ``(16, 8) -> (16, 8)``; anything else is a ConfigError."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, Sequence) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return (int(value[0]), int(value[1]))
    raise ConfigError(f"{name} must be an int or a pair of ints (height, width), got {value!r}")


def _activation(name: str) -> nn.Module:
    if name == "gelu":
        return nn.GELU()
    if name == "gelu_tanh":
        return nn.GELU(approximate="tanh")
    if name == "quick_gelu":  # OpenAI CLIP's x * sigmoid(1.702 x)
        return _QuickGELU()
    if name == "relu":
        return nn.ReLU()
    raise ConfigError(f"act must be one of gelu, gelu_tanh, quick_gelu, relu; got {name!r}")


class _QuickGELU(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch for a whole example with probability ``p``."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class Attention(nn.Module):
    """Multi-head self-attention through ``scaled_dot_product_attention``.

    ``bias_kv`` appends one learned key and value (ImageBind's ``add_bias_kv``) that every
    query may attend to.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        bias_kv: bool = False,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"width {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = float(attn_drop)
        self.proj_drop = nn.Dropout(proj_drop)
        if bias_kv:
            self.bias_k = nn.Parameter(torch.zeros(1, 1, dim))
            self.bias_v = nn.Parameter(torch.zeros(1, 1, dim))
        else:
            self.bias_k = self.bias_v = None

    def forward(
        self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False
    ) -> Tensor:
        """x: ``(B, T, D)``; attn_mask: bool, True = may attend, broadcastable to
        ``(B, heads, T, T)`` (a key padding mask is ``(B, 1, 1, T)``)."""
        B, T, D = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # 3 x (B, T, D)
        if self.bias_k is not None:
            k = torch.cat([k, self.bias_k.expand(B, 1, D)], dim=1)  # (B, T+1, D)
            v = torch.cat([v, self.bias_v.expand(B, 1, D)], dim=1)
            attn_mask = _with_extra_key(attn_mask, is_causal, T, x.device)
            is_causal = False
        q, k, v = (
            t.reshape(B, t.shape[1], self.heads, self.head_dim).transpose(1, 2) for t in (q, k, v)
        )
        if is_causal and attn_mask is not None:
            causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            attn_mask, is_causal = attn_mask & causal, False
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            dropout_p=self.attn_drop if self.training else 0.0,
            is_causal=is_causal,
        )  # (B, heads, T, head_dim)
        out = out.transpose(1, 2).reshape(B, T, D)
        return self.proj_drop(self.proj(out))


def _with_extra_key(mask: Tensor | None, is_causal: bool, T: int, device: torch.device) -> Tensor:
    """Extend a (T-key) mask by one always-visible key for the learned bias token."""
    if mask is None:
        mask = torch.ones(1, 1, T, T, dtype=torch.bool, device=device)
    if is_causal:
        mask = mask & torch.ones(T, T, dtype=torch.bool, device=device).tril()
    extra = torch.ones(*mask.shape[:-1], 1, dtype=torch.bool, device=device)
    return torch.cat([mask, extra], dim=-1)


class Mlp(nn.Module):
    """Linear -> activation -> Linear."""

    def __init__(self, dim: int, hidden: int, act: str = "gelu", drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = _activation(act)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class TransformerBlock(nn.Module):
    """One transformer layer.

    ``norm_first=True`` (pre-norm, ViT/CLIP): ``x + attn(ln1(x))`` then ``x + mlp(ln2(x))``.
    ``norm_first=False`` (post-norm, BERT): ``ln1(x + attn(x))`` then ``ln2(x + mlp(x))``.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        norm_first: bool = True,
        norm_eps: float = 1e-6,
        act: str = "gelu",
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        bias_kv: bool = False,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(
            dim, heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop, bias_kv=bias_kv
        )
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act=act, drop=drop)
        self.drop_path = DropPath(drop_path)

    def forward(
        self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False
    ) -> Tensor:
        """x: ``(B, T, D)`` -> ``(B, T, D)``; masks as in :meth:`Attention.forward`."""
        if self.norm_first:
            x = x + self.drop_path(self.attn(self.norm1(x), attn_mask, is_causal))
            return x + self.drop_path(self.mlp(self.norm2(x)))
        x = self.norm1(x + self.drop_path(self.attn(x, attn_mask, is_causal)))
        return self.norm2(x + self.drop_path(self.mlp(x)))


class PatchEmbed(nn.Module):
    """``(B, C, H, W) -> (B, N, D)`` with a ``patch_size`` kernel and ``stride`` (default: the
    patch size, i.e. non-overlapping patches)."""

    def __init__(
        self,
        in_chans: int,
        dim: int,
        patch_size: int | Sequence[int],
        stride: int | Sequence[int] | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.patch_size = to_2tuple(patch_size, "patch_size")
        self.stride = self.patch_size if stride is None else to_2tuple(stride, "patch_stride")
        self.in_chans = in_chans
        self.proj = nn.Conv2d(in_chans, dim, self.patch_size, self.stride, bias=bias)

    def grid_size(self, image_size: Sequence[int]) -> tuple[int, int]:
        """Patches along height and width for an ``(H, W)`` input."""
        (h, w), (ph, pw), (sh, sw) = image_size, self.patch_size, self.stride
        if h < ph or w < pw:
            raise ValueError(f"input {h}x{w} is smaller than one {ph}x{pw} patch")
        return ((h - ph) // sh + 1, (w - pw) // sw + 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"expected pixels of shape (B, {self.in_chans}, H, W), got {tuple(x.shape)}"
            )
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, N, D)


class ViTTrunk(nn.Module):
    """Patch embedding, [CLS], positional embedding, blocks and final norm: ``(B, C, H, W) ->
    (B, T, D)``. Inputs of another size than ``image_size`` get a bicubically resized
    positional embedding."""

    def __init__(
        self,
        *,
        width: int,
        depth: int,
        heads: int,
        image_size: int | Sequence[int] = 224,
        patch_size: int | Sequence[int] = 16,
        patch_stride: int | Sequence[int] | None = None,
        in_chans: int = 3,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        class_token: bool = True,
        pre_norm: bool = False,
        final_norm: bool = True,
        patch_bias: bool = True,
        norm_eps: float = 1e-6,
        act: str = "gelu",
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        bias_kv: bool = False,
    ) -> None:
        super().__init__()
        self.image_size = to_2tuple(image_size, "image_size")
        self.patch_embed = PatchEmbed(in_chans, width, patch_size, patch_stride, bias=patch_bias)
        self.grid = self.patch_embed.grid_size(self.image_size)
        self.num_prefix_tokens = 1 if class_token else 0
        num_tokens = self.grid[0] * self.grid[1] + self.num_prefix_tokens
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width)) if class_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, width))
        self.norm_pre = nn.LayerNorm(width, eps=norm_eps) if pre_norm else nn.Identity()
        rates = [drop_path * i / max(depth - 1, 1) for i in range(depth)]  # linear schedule
        self.blocks = nn.ModuleList(
            TransformerBlock(
                width,
                heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                norm_eps=norm_eps,
                act=act,
                drop=drop,
                attn_drop=attn_drop,
                drop_path=rate,
                bias_kv=bias_kv,
            )
            for rate in rates
        )
        self.norm = nn.LayerNorm(width, eps=norm_eps) if final_norm else nn.Identity()
        self.width = width
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        w = self.patch_embed.proj.weight  # like a Linear over the flattened patch
        nn.init.trunc_normal_(w.view(w.shape[0], -1), std=0.02)

    def _pos_embed_for(self, grid: tuple[int, int]) -> Tensor:
        if grid == self.grid:
            return self.pos_embed
        prefix = self.pos_embed[:, : self.num_prefix_tokens]
        patches = self.pos_embed[:, self.num_prefix_tokens :]
        patches = patches.reshape(1, *self.grid, -1).permute(0, 3, 1, 2)
        patches = F.interpolate(patches, size=grid, mode="bicubic", align_corners=False)
        patches = patches.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1)
        return torch.cat([prefix, patches], dim=1)

    def forward(
        self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False
    ) -> Tensor:
        grid = self.patch_embed.grid_size(x.shape[-2:])
        x = self.patch_embed(x)  # (B, N, D)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, T, D)
        x = self.norm_pre(x + self._pos_embed_for(grid))
        for block in self.blocks:
            x = block(x, attn_mask, is_causal)
        return self.norm(x)  # (B, T, D)


_TRUNK_KEYS = {
    "width",
    "depth",
    "heads",
    "image_size",
    "patch_size",
    "patch_stride",
    "in_chans",
    "mlp_ratio",
    "qkv_bias",
    "class_token",
    "pre_norm",
    "final_norm",
    "patch_bias",
    "norm_eps",
    "act",
    "drop",
    "attn_drop",
    "drop_path",
    "bias_kv",
}
_ENCODER_KEYS = {"size", "pool", "output_dim"}


class VisionTransformer(Encoder):
    """``image/vit``: a ViT over ``inputs["pixels"]`` ``(B, C, H, W)``.

    Config: ``size`` (tiny, small, base, large, huge) or explicit ``width``/``depth``/``heads``
    (explicit keys override the preset), ``mlp_ratio`` (4), ``image_size`` (224),
    ``patch_size`` (16), ``patch_stride``, ``in_chans`` (3), ``pool`` ("cls" or "mean"),
    ``class_token`` (default: pool == "cls"), ``output_dim`` (a bias-free linear projection
    applied to tokens and pooled vector), ``pre_norm`` (CLIP's ln_pre), ``patch_bias``,
    ``qkv_bias``, ``norm_eps``, ``act``, ``drop``, ``attn_drop``, ``drop_path``, ``bias_kv``.
    """

    modality = "image"

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        unknown = set(config) - _TRUNK_KEYS - _ENCODER_KEYS
        if unknown:
            raise ConfigError(
                f"image/vit: unknown config keys {sorted(unknown)}; "
                f"known: {sorted(_TRUNK_KEYS | _ENCODER_KEYS)}"
            )
        trunk_cfg = dict(SIZES.get(config.get("size", "base"), {}))
        if "size" in config and config["size"] not in SIZES:
            raise ConfigError(
                f"image/vit: size must be one of {list(SIZES)}, got {config['size']!r}"
            )
        self.pool = config.get("pool", "cls")
        if self.pool not in ("cls", "mean"):
            raise ConfigError(f"image/vit: pool must be 'cls' or 'mean', got {self.pool!r}")
        trunk_cfg.setdefault("class_token", self.pool == "cls")
        trunk_cfg.update({k: v for k, v in config.items() if k in _TRUNK_KEYS})
        if self.pool == "cls" and not trunk_cfg["class_token"]:
            raise ConfigError("image/vit: pool='cls' needs class_token=True")
        self.trunk = ViTTrunk(**trunk_cfg)
        out = config.get("output_dim")
        self.proj = nn.Linear(self.trunk.width, out, bias=False) if out else None
        if self.proj is not None:
            nn.init.normal_(self.proj.weight, std=self.trunk.width**-0.5)
        self.width = int(out) if out else self.trunk.width

    def forward(self, inputs: Mapping[str, Tensor]) -> EncoderOutput:
        tokens = self.trunk(inputs["pixels"])  # (B, T, D)
        if self.pool == "cls":
            pooled = tokens[:, 0]
        else:
            pooled = tokens[:, self.trunk.num_prefix_tokens :].mean(dim=1)
        if self.proj is not None:
            tokens, pooled = self.proj(tokens), self.proj(pooled)
        return EncoderOutput(tokens=tokens, pooled=pooled)

    @classmethod
    def example_config(cls) -> dict[str, Any]:
        return {"width": 32, "depth": 2, "heads": 2, "image_size": 32, "patch_size": 8}

    def example_inputs(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        h, w = self.trunk.image_size
        c = self.trunk.patch_embed.in_chans
        return {"pixels": torch.randn(batch_size, c, h, w, generator=generator)}


def num_parameters(module: nn.Module) -> int:
    """Total parameter count (shared parameters counted once)."""
    return sum(p.numel() for p in module.parameters())
