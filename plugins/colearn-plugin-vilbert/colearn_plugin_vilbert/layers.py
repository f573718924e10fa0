"""BERT-style building blocks shared by ViLBERT's two streams.

Post-LayerNorm transformer layers as in BERT (and in the official ViLBERT code), so that BERT
and ViLBERT checkpoints map onto them one tensor for one tensor. Attention runs through
:func:`torch.nn.functional.scaled_dot_product_attention` with a boolean key mask.

Shapes: B batch, T query tokens, S key tokens, D width, H heads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from colearn_core import ConfigError

__all__ = ["FeedForward", "MultiHeadAttention", "TransformerLayer", "attend", "check_heads"]

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
    """Multi-head scaled dot-product attention.

    q: ``(B, T, W)``, k and v: ``(B, S, W)`` already projected; key_mask: ``(B, S)`` bool, True
    where a key may be attended to. Returns ``(B, T, W)``.
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


class MultiHeadAttention(nn.Module):
    """Self-attention projections ``query/key/value`` and the output projection ``out``."""

    def __init__(self, width: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        check_heads(width, heads, "attention")
        self.heads = heads
        self.dropout = dropout
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.out = nn.Linear(width, width)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        p = self.dropout if self.training else 0.0
        ctx = attend(self.query(x), self.key(x), self.value(x), mask, self.heads, p)
        return self.out(ctx)


class FeedForward(nn.Module):
    """``fc2(gelu(fc1(x)))``, BERT's intermediate and output dense layers."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class TransformerLayer(nn.Module):
    """A BERT layer (post-norm): ``x = LN(x + Attn(x)); x = LN(x + FFN(x))``."""

    def __init__(self, width: int, heads: int, ffn: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(width, heads, dropout)
        self.attention_norm = nn.LayerNorm(width, eps=LN_EPS)
        self.ffn = FeedForward(width, ffn)
        self.ffn_norm = nn.LayerNorm(width, eps=LN_EPS)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: ``(B, T, D)``; mask: ``(B, T)`` bool, True for real tokens."""
        x = self.attention_norm(x + self.drop(self.attention(x, mask)))
        return self.ffn_norm(x + self.drop(self.ffn(x)))


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


def as_bool_mask(mask: Tensor | None) -> Tensor | None:
    """Attention masks come as 0/1 integers from tokenizers; attention wants bool."""
    return None if mask is None else mask.to(torch.bool)
