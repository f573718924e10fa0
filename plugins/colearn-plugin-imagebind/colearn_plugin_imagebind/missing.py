"""Examples that lack some modalities: a presence mask travels with every collated tower.

ImageBind's data pairs images with *one or more* other modalities, so a row of a training table
may have a caption but no audio, or the reverse. A missing value (``None`` in the dataset
column) goes through :class:`OptionalModality`, which wraps the real modality:

- ``preprocess(None)`` returns ``{}`` instead of failing;
- ``collate`` fills the missing rows with zeros shaped like a present sample, so every tensor
  keeps one row per example (the trainer splits batches into micro-batches by rows), and adds
  ``batch[PRESENT]``, a ``(B,)`` bool mask; when no example of the batch has the modality the
  collated tower holds only the mask.

The method encodes only the present rows and its loss uses only pairs whose two rows are
present. Everything else (config, assets, ``tokenize``, ...) is the wrapped modality's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from colearn_core import Modality

__all__ = ["PRESENT", "OptionalModality", "presence", "split_presence"]

#: Key of the ``(B,)`` bool presence mask in a collated tower.
PRESENT = "present"


class OptionalModality(Modality):
    """A modality whose samples may be missing (``None``); see the module docstring."""

    def __init__(self, inner: Modality) -> None:
        # No super().__init__: config, name and assets are the wrapped modality's own.
        self.inner = inner
        self.config = inner.config
        self.name = inner.name  # type: ignore[misc]
        self.feature_types = inner.feature_types  # type: ignore[misc]

    def __getattr__(self, attr: str) -> Any:
        # Only reached for attributes not found normally: tokenize, vocab_size, options, ...
        if attr == "inner":  # not set yet (copy/pickle): avoid infinite recursion
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    def __repr__(self) -> str:
        return f"OptionalModality({self.inner!r})"

    def preprocess(self, sample: Any, **kwargs: Any) -> dict[str, Tensor]:
        """``None`` -> ``{}`` (missing); anything else goes to the wrapped modality."""
        if sample is None:
            return {}
        return self.inner.preprocess(sample, **kwargs)

    def collate(self, samples: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
        """Collate present samples with zero placeholders for missing ones, plus the mask."""
        if not samples:
            raise ValueError(f"modality {self.name!r}: cannot collate an empty list of samples")
        present = torch.tensor([bool(s) for s in samples], dtype=torch.bool)
        if not bool(present.any()):
            return {PRESENT: present}
        template = next(s for s in samples if s)
        blank = {key: torch.zeros_like(value) for key, value in template.items()}
        batch = self.inner.collate([s if s else blank for s in samples])
        batch[PRESENT] = present
        return batch

    def augment(
        self, batch: Mapping[str, Tensor], *, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        tensors, present = split_presence(batch)
        if not tensors:
            return dict(batch)
        out = self.inner.augment(tensors, generator=generator)
        if present is not None:
            out[PRESENT] = present
        return out

    def save_assets(self, folder: Path) -> None:
        self.inner.save_assets(folder)

    def load_assets(self, folder: Path) -> None:
        self.inner.load_assets(folder)

    def example_samples(self, n: int) -> list[Any]:  # type: ignore[override]
        """The wrapped modality's examples with every third one missing."""
        samples = type(self.inner).example_samples(n)
        return [None if i % 3 == 2 else s for i, s in enumerate(samples)]


def split_presence(inputs: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], Tensor | None]:
    """A collated tower -> (its tensors without the mask, the mask or None)."""
    tensors = {k: v for k, v in inputs.items() if k != PRESENT}
    return tensors, inputs.get(PRESENT)


def presence(batch: Mapping[str, Any] | None, tower: str, rows: int, device: Any) -> Tensor:
    """The ``(rows,)`` bool presence mask of ``tower`` in ``batch`` (all True without one)."""
    inputs = batch.get(tower) if batch is not None else None
    mask = inputs.get(PRESENT) if isinstance(inputs, Mapping) else None
    if mask is None:
        return torch.ones(rows, dtype=torch.bool, device=device)
    mask = torch.as_tensor(mask, device=device).bool().view(-1)
    if mask.shape[0] != rows:
        raise ValueError(
            f"imagebind: batch[{tower!r}][{PRESENT!r}] has {mask.shape[0]} rows but the "
            f"embeddings have {rows}"
        )
    return mask
