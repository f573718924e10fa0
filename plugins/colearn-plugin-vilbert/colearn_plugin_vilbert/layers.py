"""Small pieces shared by the co-attention blocks and the streams.

The transformer layers themselves are colearn-plugin-image's ``TransformerBlock`` (post-norm,
as BERT and the official ViLBERT); here only what they do not cover: cross-attention between
two sequences, BERT's initialisation and a masked mean.

Shapes: B batch, T query tokens, S key tokens, W attention width.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from colearn_core import ConfigError

__all__ = ["LN_EPS", "attend", "check_heads", "init_bert_weights", "masked_mean"]

#: BERT's LayerNorm epsilon (the official checkpoints were trained with it).
LN_EPS = 1e-12


def check_heads(width: int, heads: int, what: str) -> int:
    """The head size; a width not divisible by the head count is a ConfigError naming ``what``."""
    if heads <= 0 or width % heads:
        raise ConfigError(
            f"{what}: width {width} must be a positive multiple of the number of heads {heads}"
        )
    return width // heads


def attend(
    q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None, heads: int, dropout: float
) -> Tensor:
    """Multi-head scaled dot-product attention of projected queries over keys/values.

    q: ``(B, T, W)``, k and v: ``(B, S, W)``; key_mask: ``(B, S)`` bool, True where a key may
    be attended to. Returns ``(B, T, W)``.
    """
    b, t, w = q.shape
    s = k.shape[1]
    hd = w // heads
    q = q.view(b, t, heads, hd).transpose(1, 2)  # (B, H, T, hd)
    k = k.view(b, s, heads, hd).transpose(1, 2)  # (B, H, S, hd)
    v = v.view(b, s, heads, hd).transpose(1, 2)
    mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, S)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
    return out.transpose(1, 2).reshape(b, t, w)


def init_bert_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT's initialisation: normal(0, std) weights, zero biases, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``x`` ``(B, T, D)`` over the tokens where ``mask`` ``(B, T)`` is True."""
    if mask is None:
        return x.mean(dim=1)
    m = mask.to(x.dtype).unsqueeze(-1)  # (B, T, 1)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
