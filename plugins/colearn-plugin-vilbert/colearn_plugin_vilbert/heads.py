"""Prediction heads: BERT's masked-LM head (decoder tied to the word embeddings), the region
class head, and the VQA answer classifier."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import LN_EPS

__all__ = ["AnswerHead", "LMHead", "RegionHead"]


class LMHead(nn.Module):
    """``dense -> gelu -> LayerNorm``, then logits against the word-embedding matrix + bias.

    The decoder weight is the text stream's word embedding, passed in at call time, so the tie
    holds without two names for one tensor in the state dict.
    """

    def __init__(self, width: int, vocab_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width, eps=LN_EPS)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, x: Tensor, word_embeddings: Tensor) -> Tensor:
        """x ``(..., D)``, word_embeddings ``(V, D)`` -> logits ``(..., V)``."""
        return F.linear(self.norm(F.gelu(self.dense(x))), word_embeddings, self.bias)


class RegionHead(nn.Module):
    """``dense -> gelu -> LayerNorm -> decoder``: logits over the detector's classes."""

    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.dense = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width, eps=LN_EPS)
        self.decoder = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.norm(F.gelu(self.dense(x))))


class AnswerHead(nn.Sequential):
    """The VQA classifier of the official code: ``Linear(W, 2W), GELU, LayerNorm, Linear``."""

    def __init__(self, width: int, num_answers: int) -> None:
        super().__init__(
            nn.Linear(width, 2 * width),
            nn.GELU(),
            nn.LayerNorm(2 * width, eps=LN_EPS),
            nn.Linear(2 * width, num_answers),
        )
