"""Input corruption for ViLBERT's (and BERT's) pretraining tasks, driven by a torch.Generator.

- :func:`mask_tokens`: masked language modelling (BERT): each maskable token is selected with
  probability 15%; a selected token becomes [MASK] 80% of the time, a random token 10% and
  stays unchanged 10%; every selected token is predicted.
- :func:`mask_regions`: masked multimodal modelling (ViLBERT): each real region is selected
  with probability 15%; its features are zeroed 90% of the time and left unchanged 10%.
- :func:`swap_captions`: multimodal alignment: half of the examples get another example's
  caption; :func:`use_hard_negatives` turns some of those into the example's own hard
  negative (a caption of a slightly different scene, e.g. the same scene flipped upside down).
- :func:`segment_ids`: BERT token types from [SEP] positions (``[CLS] A [SEP] B [SEP]``).

All randomness comes from the ``generator`` argument (a CPU generator; results move to the
inputs' device), so a seed fixes the corruption exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "IGNORE_INDEX",
    "CaptionSwap",
    "mask_regions",
    "mask_tokens",
    "segment_ids",
    "same_captions",
    "swap_captions",
    "use_hard_negatives",
]

#: Label of tokens that are not predicted (what torch's cross_entropy ignores by default).
IGNORE_INDEX = -100


def _rand(shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
    return torch.rand(shape, generator=generator)


def mask_tokens(
    input_ids: Tensor,
    maskable: Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids: Iterable[int] = (),
    generator: torch.Generator | None = None,
    prob: float = 0.15,
    mask_frac: float = 0.8,
    random_frac: float = 0.1,
) -> tuple[Tensor, Tensor]:
    """BERT's masked-LM corruption.

    input_ids: ``(B, T)`` int; maskable: ``(B, T)`` bool, False for [CLS], [SEP], padding and
    anything else that must not be predicted. Random replacements are drawn uniformly from the
    vocabulary without ``special_ids``. Returns ``(corrupted_ids, labels)``: labels hold the
    original id where a token was selected and :data:`IGNORE_INDEX` elsewhere.
    """
    if not 0.0 <= prob <= 1.0 or mask_frac < 0 or random_frac < 0 or mask_frac + random_frac > 1:
        raise ValueError(
            f"masking fractions must satisfy 0<=prob<=1 and mask+random<=1; got prob={prob}, "
            f"mask_frac={mask_frac}, random_frac={random_frac}"
        )
    device = input_ids.device
    shape = tuple(input_ids.shape)
    selected = (_rand(shape, generator) < prob).to(device) & maskable.bool()
    action = _rand(shape, generator).to(device)
    to_mask = selected & (action < mask_frac)
    to_random = selected & (action >= mask_frac) & (action < mask_frac + random_frac)

    specials = set(int(i) for i in special_ids)
    allowed = torch.tensor([i for i in range(vocab_size) if i not in specials], dtype=torch.long)
    if allowed.numel() == 0:
        raise ValueError("mask_tokens: every vocabulary id is special; nothing to sample from")
    pick = torch.randint(0, allowed.numel(), shape, generator=generator)
    random_ids = allowed[pick].to(device=device, dtype=input_ids.dtype)

    corrupted = input_ids.clone()
    corrupted[to_mask] = mask_id
    corrupted[to_random] = random_ids[to_random]
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[selected] = input_ids[selected]
    return corrupted, labels


def mask_regions(
    features: Tensor,
    valid: Tensor,
    *,
    generator: torch.Generator | None = None,
    prob: float = 0.15,
    zero_frac: float = 0.9,
) -> tuple[Tensor, Tensor]:
    """ViLBERT's masked multimodal corruption of region features.

    features: ``(B, R, F)``; valid: ``(B, R)`` bool (False for padding). Returns
    ``(corrupted_features, selected)`` where ``selected`` ``(B, R)`` marks the regions whose
    class distribution is to be predicted (zeroed or not).
    """
    if not 0.0 <= prob <= 1.0 or not 0.0 <= zero_frac <= 1.0:
        raise ValueError(f"mask_regions: need 0<=prob<=1, 0<=zero_frac<=1; got {prob}, {zero_frac}")
    shape = tuple(features.shape[:2])
    selected = (_rand(shape, generator) < prob).to(features.device) & valid.bool()
    zero = selected & (_rand(shape, generator).to(features.device) < zero_frac)
    corrupted = features.masked_fill(zero.unsqueeze(-1), 0.0)
    return corrupted, selected


@dataclass
class CaptionSwap:
    """Which caption each example gets and whether it is its own.

    text_index: ``(B,)`` example i is paired with caption ``text_index[i]``; aligned: ``(B,)``
    long, 1 where the caption describes the image (also when a swapped-in caption is identical
    to the example's own).
    """

    text_index: Tensor
    aligned: Tensor


def swap_captions(
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
    fraction: float = 0.5,
) -> CaptionSwap:
    """Give ``fraction * B`` randomly chosen examples another example's caption (rounded up or
    down at random when not whole).

    The partner of a chosen example is drawn uniformly among the other B-1 examples.
    input_ids: ``(B, T)``; attention_mask: ``(B, T)`` (to compare captions, padding ignored).
    """
    b = input_ids.shape[0]
    device = input_ids.device
    index = torch.arange(b)
    if b >= 2 and fraction > 0:
        # fraction * B rounded up or down at random, so odd batches average exactly fraction
        exact = fraction * b
        n_swap = int(exact) + int(float(torch.rand((), generator=generator)) < exact - int(exact))
        chosen = torch.randperm(b, generator=generator)[:n_swap]
        offset = torch.randint(1, b, (n_swap,), generator=generator)
        index[chosen] = (chosen + offset) % b
    index = index.to(device)
    gathered = None if attention_mask is None else attention_mask[index]
    same = same_captions(input_ids[index], gathered, input_ids, attention_mask)
    return CaptionSwap(text_index=index, aligned=same.long())


def same_captions(
    a_ids: Tensor, a_mask: Tensor | None, b_ids: Tensor, b_mask: Tensor | None
) -> Tensor:
    """``(B,)`` bool: row i of ``a_ids`` is the same caption as row i of ``b_ids`` (``(B, T)``
    and ``(B, T')``, with their attention masks or None; padding ignored)."""
    if a_ids.shape[1] != b_ids.shape[1]:  # compare at a common length, padding masked
        length = max(a_ids.shape[1], b_ids.shape[1])
        a_mask = torch.ones_like(a_ids, dtype=torch.bool) if a_mask is None else a_mask.bool()
        b_mask = torch.ones_like(b_ids, dtype=torch.bool) if b_mask is None else b_mask.bool()
        a_ids, a_mask, b_ids, b_mask = (
            torch.nn.functional.pad(t, (0, length - t.shape[1]))
            for t in (a_ids, a_mask, b_ids, b_mask)
        )
    a = a_ids if a_mask is None else a_ids * a_mask.long()
    b = b_ids if b_mask is None else b_ids * b_mask.long()
    same = (a == b).all(dim=1)
    if a_mask is not None and b_mask is not None:
        same &= (a_mask.bool() == b_mask.bool()).all(dim=1)
    return same


def use_hard_negatives(
    swap: CaptionSwap, fraction: float, *, generator: torch.Generator | None = None
) -> Tensor:
    """Give each swapped example (``text_index[i] != i``) its own hard negative instead, with
    probability ``fraction``: the returned ``(B,)`` index points into the captions followed by
    the hard negatives (``B + i`` is example i's hard negative). Alignment labels must then be
    recomputed (a hard negative identical to its caption is aligned)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"use_hard_negatives: fraction must be in [0, 1], got {fraction}")
    b = swap.text_index.shape[0]
    own = torch.arange(b, device=swap.text_index.device)
    swapped = swap.text_index != own
    hard = swapped & (_rand((b,), generator).to(own.device) < fraction)
    return torch.where(hard, own + b, swap.text_index)


def segment_ids(input_ids: Tensor, sep_id: int) -> Tensor:
    """Token types for ``[CLS] A [SEP] B [SEP]``: 0 up to and including the first [SEP], then 1."""
    is_sep = (input_ids == sep_id).long()
    before = torch.cumsum(is_sep, dim=1) - is_sep  # separators strictly before each position
    return (before > 0).long()
