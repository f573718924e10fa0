"""Evaluation tasks for models with one embedding space over many modalities.

- ``imagebind-zero-shot``: classify any modality (image, audio, depth, ...) by its nearest
  class embedding, each class described by text prompts.
- ``emergent-zero-shot``: the same between two modalities that were never paired in training
  (neither is the model's anchor), e.g. audio -> text when only image-text and image-audio
  pairs were trained; that the pair is emergent is checked, not assumed.
- ``cross-modal-retrieval``: recall@k from one modality to another, matching either the paired
  example (``match: pair``) or any example of the same class (``match: label``).
- ``embedding-arithmetic``: the sum of two modalities' embeddings (e.g. an image and an audio
  clip) retrieves the matching text: same-class sums and two-class compositions.

``data`` is an iterable of collated batches ``{tower: {...}, "label": (B,)}`` as the trainer
and ``colearn eval`` produce them; rows whose ``"present"`` mask is False are left out. The
CLIP plugin's helpers (prompt ensembling, top-k, recall@k, presets) are reused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from colearn_plugin_clip.prompts import resolve_class_names, resolve_templates
from colearn_plugin_clip.tasks import (
    class_embeddings,
    model_device,
    move_to,
    positive_ints,
    recall_at_k,
    topk_accuracy,
)
from torch import Tensor

from colearn_core import Batch, ConfigError, Method, Task

from .missing import presence, split_presence

__all__ = [
    "CrossModalRetrieval",
    "EmbeddingArithmetic",
    "EmergentZeroShot",
    "ZeroShot",
    "collect_embeddings",
]


@torch.no_grad()
def collect_embeddings(
    model: Method,
    data: Iterable[Batch],
    towers: Sequence[str],
    *,
    label: str | None = "label",
    task: str = "task",
) -> tuple[dict[str, Tensor], Tensor | None]:
    """Unit-norm embeddings ``(N, E)`` of ``towers`` over all of ``data``, and the labels.

    Only rows where every tower in ``towers`` is present are kept (the presence masks of
    :mod:`colearn_plugin_imagebind.missing`), so row ``i`` of each output is one example.
    """
    device = model_device(model)
    parts: dict[str, list[Tensor]] = {t: [] for t in towers}
    labels: list[Tensor] = []
    for i, batch in enumerate(data):
        missing = [t for t in towers if t not in batch]
        if missing or (label is not None and label not in batch):
            needs = list(towers) + ([label] if label is not None else [])
            raise ConfigError(
                f"{task}: batch {i} lacks {missing or [label]} (keys: {sorted(batch)}); it needs "
                f"{needs}: map those columns in data.columns (and data.label_column)"
            )
        n = _rows(batch[towers[0]])
        keep = torch.ones(n, dtype=torch.bool, device=device)
        for t in towers:
            keep &= presence(batch, t, n, device)
        if not bool(keep.any()):
            continue
        z = model.embed({t: move_to(batch[t], device) for t in towers})
        for t in towers:
            parts[t].append(F.normalize(z[t].float()[keep], dim=-1))
        if label is not None:
            labels.append(torch.as_tensor(batch[label], device=device).long().view(-1)[keep])
    if not parts[towers[0]]:
        raise ConfigError(f"{task}: the evaluation data has no example with {list(towers)}")
    out = {t: torch.cat(p) for t, p in parts.items()}
    return out, (torch.cat(labels) if label is not None else None)


def _rows(inputs: Mapping[str, Tensor]) -> int:
    tensors, present = split_presence(inputs)
    if present is not None:
        return int(present.shape[0])
    return int(next(iter(tensors.values())).shape[0])


def _check_labels(task: str, labels: Tensor, classes: int) -> None:
    if labels.numel() and (labels.min() < 0 or labels.max() >= classes):
        raise ConfigError(
            f"{task}: labels run {int(labels.min())}..{int(labels.max())}, outside "
            f"0..{classes - 1} ({classes} class names)"
        )


class ZeroShot(Task):
    """``imagebind-zero-shot``: classify examples of ``modality`` with text prompts.

    Args:
        class_names: names or a preset (``"fashion-mnist"``); templates: prompt templates with
            one ``{}`` or a preset (``"fashion-mnist-heldout"``, ``"clip"``, ``"identity"``).
        modality: the tower whose examples are classified (``image``, ``audio``, ...).
        text: the tower that embeds the prompts; label: the batches' label key.
        ks: top-k accuracies to report.

    Returns ``{"top1": .., "top5": .., "n": examples}``.
    """

    name = "imagebind-zero-shot"

    def __init__(
        self,
        class_names: Sequence[str] | str = "fashion-mnist",
        templates: Sequence[str] | str = "fashion-mnist-heldout",
        *,
        modality: str = "image",
        text: str = "text",
        label: str = "label",
        ks: Sequence[int] | int = (1, 5),
        text_batch_size: int = 256,
    ) -> None:
        names = resolve_class_names(class_names)
        prompts = resolve_templates(templates)
        ks = positive_ints(f"{self.name}: ks", ks)
        if modality == text:
            raise ConfigError(f"{self.name}: modality and text are both {modality!r}")
        super().__init__(
            class_names=names,
            templates=prompts,
            modality=modality,
            text=text,
            label=label,
            ks=ks,
            text_batch_size=text_batch_size,
        )
        self.class_names, self.templates, self.ks = names, prompts, ks
        self.modality, self.text, self.label = modality, text, label
        self.text_batch_size = int(text_batch_size)

    def classes(self, model: Method) -> Tensor:
        """``(K, E)`` unit class embeddings (prompt ensembles)."""
        return class_embeddings(
            model,
            self.class_names,
            self.templates,
            tower=self.text,
            batch_size=self.text_batch_size,
        )

    @torch.no_grad()
    def evaluate(self, model: Method, data: Iterable[Batch]) -> dict[str, float]:
        classes = self.classes(model)
        z, labels = collect_embeddings(
            model, data, [self.modality], label=self.label, task=self.name
        )
        assert labels is not None
        _check_labels(self.name, labels, len(self.class_names))
        logits = z[self.modality] @ classes.T  # (N, K)
        n = labels.numel()
        out = {f"top{k}": int(c) / n for k, c in topk_accuracy(logits, labels, self.ks).items()}
        out["n"] = float(n)
        return out


class EmergentZeroShot(ZeroShot):
    """``emergent-zero-shot``: :class:`ZeroShot` between two towers that no loss ever paired.

    The method binds every tower to its anchor only (``model.anchor``, "image"), so a pair of
    two non-anchor towers (audio and text) is emergent; naming the anchor is a ConfigError.
    Arguments as :class:`ZeroShot` (``modality`` defaults to ``audio``).
    """

    name = "emergent-zero-shot"

    def __init__(self, *args: Any, modality: str = "audio", **kwargs: Any) -> None:
        super().__init__(*args, modality=modality, **kwargs)

    @torch.no_grad()
    def evaluate(self, model: Method, data: Iterable[Batch]) -> dict[str, float]:
        anchor = getattr(model, "anchor", None)
        if anchor is None:
            raise ConfigError(
                f"{self.name}: the model ({type(model).__name__}) has no anchor modality, so "
                "which pairs were trained is unknown; use imagebind-zero-shot"
            )
        if anchor in (self.modality, self.text):
            raise ConfigError(
                f"{self.name}: {self.modality!r} -> {self.text!r} involves the anchor {anchor!r}, "
                "a pair the model was trained on; use imagebind-zero-shot for it"
            )
        return super().evaluate(model, data)


class CrossModalRetrieval(Task):
    """``cross-modal-retrieval``: recall@k from ``query`` to ``target`` examples (and back).

    Args:
        query, target: towers; ks: recall levels.
        match: ``"pair"``: example ``i``'s target is the only match of its query; ``"label"``:
            every target with the query's label matches (for class-level data such as a spoken
            class name, where any image of the class is correct).
        both_directions: also report ``target -> query``.

    Returns ``{"<query>_to_<target>_recall@k": .., ["<target>_to_<query>_recall@k": ..],
    "n": examples}``.
    """

    name = "cross-modal-retrieval"

    def __init__(
        self,
        *,
        query: str = "audio",
        target: str = "image",
        ks: Sequence[int] | int = (1, 5, 10),
        match: str = "label",
        label: str = "label",
        both_directions: bool = True,
    ) -> None:
        ks = positive_ints(f"{self.name}: ks", ks)
        if match not in ("pair", "label"):
            raise ConfigError(f"{self.name}: match must be 'pair' or 'label', got {match!r}")
        if query == target:
            raise ConfigError(f"{self.name}: query and target are both {query!r}")
        super().__init__(
            query=query,
            target=target,
            ks=ks,
            match=match,
            label=label,
            both_directions=both_directions,
        )
        self.query, self.target, self.ks, self.match = query, target, ks, match
        self.label, self.both_directions = label, bool(both_directions)

    @torch.no_grad()
    def evaluate(self, model: Method, data: Iterable[Batch]) -> dict[str, float]:
        label = self.label if self.match == "label" else None
        z, labels = collect_embeddings(
            model, data, [self.query, self.target], label=label, task=self.name
        )
        q, t = z[self.query], z[self.target]
        ids = {} if labels is None else {"query_ids": labels, "target_ids": labels}
        out: dict[str, float] = {}
        for k, v in recall_at_k(q, t, self.ks, **ids).items():
            out[f"{self.query}_to_{self.target}_recall@{k}"] = v
        if self.both_directions:
            for k, v in recall_at_k(t, q, self.ks, **ids).items():
                out[f"{self.target}_to_{self.query}_recall@{k}"] = v
        out["n"] = float(q.shape[0])
        return out


class EmbeddingArithmetic(Task):
    """``embedding-arithmetic``: the sum of two towers' unit embeddings retrieves text.

    ImageBind composes modalities by adding embeddings. For every example ``i`` (with label
    ``y_i``), the ``first`` tower's embedding of ``i`` is added to the ``second`` tower's
    embedding of another example:

    - ``same_class_top1``: one of the same class (drawn with ``seed``, never ``i`` itself when
      the class has another example); top-1 accuracy of the sum against the class prompts.
    - ``composition_top2``: one of a different class ``y_j``; the fraction of sums whose two
      best classes are exactly ``{y_i, y_j}``.
    - ``<first>_top1``, ``<second>_top1``: each tower alone, for comparison.

    Class prompts as :class:`ZeroShot`. Returns those metrics and ``"n"``.
    """

    name = "embedding-arithmetic"

    def __init__(
        self,
        class_names: Sequence[str] | str = "fashion-mnist",
        templates: Sequence[str] | str = "fashion-mnist-heldout",
        *,
        first: str = "image",
        second: str = "audio",
        text: str = "text",
        label: str = "label",
        seed: int = 0,
        text_batch_size: int = 256,
    ) -> None:
        names = resolve_class_names(class_names)
        prompts = resolve_templates(templates)
        if len({first, second, text}) != 3:
            raise ConfigError(
                f"{self.name}: first, second and text must be three different towers, got "
                f"{first!r}, {second!r}, {text!r}"
            )
        super().__init__(
            class_names=names,
            templates=prompts,
            first=first,
            second=second,
            text=text,
            label=label,
            seed=seed,
            text_batch_size=text_batch_size,
        )
        self.class_names, self.templates = names, prompts
        self.first, self.second, self.text, self.label = first, second, text, label
        self.seed, self.text_batch_size = int(seed), int(text_batch_size)

    @torch.no_grad()
    def evaluate(self, model: Method, data: Iterable[Batch]) -> dict[str, float]:
        classes = class_embeddings(
            model,
            self.class_names,
            self.templates,
            tower=self.text,
            batch_size=self.text_batch_size,
        )  # (K, E)
        z, labels = collect_embeddings(
            model, data, [self.first, self.second], label=self.label, task=self.name
        )
        assert labels is not None
        _check_labels(self.name, labels, len(self.class_names))
        a, b = z[self.first], z[self.second]
        same, other = partners(labels, seed=self.seed)
        out: dict[str, float] = {}
        for tower, emb in ((self.first, a), (self.second, b)):
            out[f"{tower}_top1"] = _top1(emb @ classes.T, labels)
        out["same_class_top1"] = _top1((a + b[same]) @ classes.T, labels)
        valid = other >= 0
        if bool(valid.any()):
            scores = (a[valid] + b[other[valid]]) @ classes.T  # (M, K)
            top2 = scores.topk(2, dim=1).indices.sort(dim=1).values
            want = torch.stack([labels[valid], labels[other[valid]]], dim=1).sort(dim=1).values
            out["composition_top2"] = float((top2 == want).all(dim=1).float().mean())
        out["n"] = float(labels.numel())
        return out


def _top1(logits: Tensor, labels: Tensor) -> float:
    return float(topk_accuracy(logits, labels, [1])[1]) / max(labels.numel(), 1)


def partners(labels: Tensor, *, seed: int = 0) -> tuple[Tensor, Tensor]:
    """For each example, a random other example of the same class (itself when it is the only
    one) and one of a different class (-1 when there is none), drawn with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    cpu = labels.cpu()
    n = cpu.numel()
    same = torch.empty(n, dtype=torch.long)
    other = torch.full((n,), -1, dtype=torch.long)
    for i in range(n):
        pool = (cpu == cpu[i]).nonzero().flatten()
        pool = pool[pool != i] if pool.numel() > 1 else pool
        same[i] = pool[torch.randint(pool.numel(), (1,), generator=gen)]
        rest = (cpu != cpu[i]).nonzero().flatten()
        if rest.numel():
            other[i] = rest[torch.randint(rest.numel(), (1,), generator=gen)]
    return same.to(labels.device), other.to(labels.device)
