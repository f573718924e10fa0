"""ViLBERT's pretraining objectives as functions and as registered :class:`Loss` modules.

- masked LM: cross-entropy over the selected tokens (labels :data:`IGNORE_INDEX` elsewhere);
- masked multimodal modelling: KL(detector distribution || predicted distribution) averaged
  over the selected regions, as the paper trains it (official code: ``KLDivLoss`` on
  ``log_softmax`` of the region head);
- alignment: cross-entropy of the aligned / not aligned classifier.

Each returns a scalar that stays connected to the graph (0 when nothing was selected).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from colearn_core import Loss

from .masking import IGNORE_INDEX

__all__ = [
    "AlignmentLoss",
    "MaskedLMLoss",
    "MaskedRegionKLLoss",
    "alignment_loss",
    "masked_lm_loss",
    "masked_region_kl",
]


def masked_lm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """logits ``(B, T, V)``, labels ``(B, T)`` with :data:`IGNORE_INDEX` where not predicted."""
    selected = labels != IGNORE_INDEX
    if not bool(selected.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[selected], labels[selected])


def masked_region_kl(logits: Tensor, target: Tensor, selected: Tensor) -> Tensor:
    """Mean over selected regions of ``KL(target || softmax(logits))``.

    logits: ``(B, R, C)`` region-head outputs; target: ``(B, R, C)`` the detector's class
    distribution per region; selected: ``(B, R)`` bool.
    """
    if not bool(selected.any()):
        return logits.sum() * 0.0
    log_q = F.log_softmax(logits[selected], dim=-1)  # (N, C)
    p = target[selected].to(log_q.dtype)
    # kl_div(log q, p) = p * (log p - log q), 0 where p == 0
    return F.kl_div(log_q, p, reduction="none").sum(dim=-1).mean()


def alignment_loss(logits: Tensor, aligned: Tensor) -> Tensor:
    """logits ``(B, 2)`` (index 1 = aligned), aligned ``(B,)`` long 0/1."""
    return F.cross_entropy(logits, aligned.long())


class MaskedLMLoss(Loss):
    """``(logits (B, T, V), labels (B, T)) -> scalar``; see :func:`masked_lm_loss`."""

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return masked_lm_loss(logits, labels)

    def example_inputs(self, batch_size: int, generator: torch.Generator | None = None):
        logits = torch.randn(batch_size, 6, 11, generator=generator)
        labels = torch.randint(0, 11, (batch_size, 6), generator=generator)
        labels[:, ::2] = IGNORE_INDEX
        return logits, labels


class MaskedRegionKLLoss(Loss):
    """``(logits (B, R, C), target (B, R, C), selected (B, R)) -> scalar``."""

    def forward(self, logits: Tensor, target: Tensor, selected: Tensor) -> Tensor:
        return masked_region_kl(logits, target, selected)

    def example_inputs(self, batch_size: int, generator: torch.Generator | None = None):
        logits = torch.randn(batch_size, 5, 7, generator=generator)
        target = torch.softmax(torch.randn(batch_size, 5, 7, generator=generator), dim=-1)
        selected = torch.zeros(batch_size, 5, dtype=torch.bool)
        selected[:, 1] = True
        return logits, target, selected


class AlignmentLoss(Loss):
    """``(logits (B, 2), aligned (B,)) -> scalar``."""

    def forward(self, logits: Tensor, aligned: Tensor) -> Tensor:
        return alignment_loss(logits, aligned)

    def example_inputs(self, batch_size: int, generator: torch.Generator | None = None):
        logits = torch.randn(batch_size, 2, generator=generator)
        aligned = torch.arange(batch_size) % 2
        return logits, aligned
