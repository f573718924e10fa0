"""Evaluation tasks for image-text models: ``zero-shot-classification`` and ``retrieval``.

Both work with any method whose ``embed(batch)`` returns unit-norm (or any) embeddings per
modality and whose ``modalities`` preprocess raw samples (CLIP, ImageBind, ...). ``data`` is an
iterable of collated batches ``{"image": {...}, "text": {...}, "label": (B,)}`` as the trainer
and ``colearn eval`` produce them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from colearn_core import Batch, ConfigError, Method, Task

from .prompts import resolve_class_names, resolve_templates

__all__ = [
    "Retrieval",
    "ZeroShotClassification",
    "class_embeddings",
    "model_device",
    "move_to",
    "positive_ints",
    "recall_at_k",
    "topk_accuracy",
]


def model_device(model: Method) -> torch.device:
    """The device of ``model``'s first parameter (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def move_to(value: Any, device: torch.device) -> Any:
    """``value`` on ``device``: a tensor or a (nested) mapping of them; other values as they are."""
    if isinstance(value, Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, Mapping):
        return {k: move_to(v, device) for k, v in value.items()}
    return value


def _preprocess(model: Method, tower: str, samples: Sequence[Any]) -> dict[str, Tensor]:
    modality = model.modalities.get(tower)
    if modality is None:
        raise ConfigError(
            f"the model has no {tower!r} modality (it has {sorted(model.modalities)}); set the "
            "task's tower names to match"
        )
    tokenize = getattr(modality, "tokenize", None)
    if tokenize is not None:
        return tokenize(list(samples))
    return modality.collate([modality.preprocess(s) for s in samples])


def positive_ints(name: str, values: Any) -> list[int]:
    """A task option that takes one positive int or a list of them (e.g. ``ks``), sorted and
    without repeats; :class:`ConfigError` naming ``name`` otherwise."""
    if isinstance(values, int) and not isinstance(values, bool):
        values = [values]
    if (
        not isinstance(values, Sequence)
        or not values
        or not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in values)
    ):
        raise ConfigError(f"{name} must be a positive int or a list of them, got {values!r}")
    return sorted(set(int(k) for k in values))


@torch.no_grad()
def class_embeddings(
    model: Method,
    class_names: Sequence[str],
    templates: Sequence[str],
    *,
    tower: str = "text",
    batch_size: int = 256,
) -> Tensor:
    """``(K, E)`` unit-norm class embeddings: for each class, the text embeddings of every
    template filled with its name, each L2-normalised, averaged and normalised again (CLIP's
    prompt ensembling)."""
    texts = [template.format(name) for name in class_names for template in templates]
    device = model_device(model)
    parts = []
    for i in range(0, len(texts), batch_size):
        batch = move_to(_preprocess(model, tower, texts[i : i + batch_size]), device)
        parts.append(model.embed({tower: batch})[tower].float())
    z = F.normalize(torch.cat(parts), dim=-1)  # (K * T, E)
    z = z.view(len(class_names), len(templates), -1).mean(dim=1)  # (K, E)
    return F.normalize(z, dim=-1)


def topk_accuracy(logits: Tensor, labels: Tensor, ks: Sequence[int]) -> dict[int, Tensor]:
    """Number of rows whose label is among the ``k`` highest logits, for each ``k``.

    A row's rank is the number of classes scoring strictly higher than its label, so ties
    count in the model's favour and the result does not depend on the sort order.
    """
    target = logits.gather(1, labels.view(-1, 1))  # (B, 1)
    rank = (logits > target).sum(dim=1)  # (B,)
    return {k: (rank < k).sum() for k in ks}


class ZeroShotClassification(Task):
    """``zero-shot-classification``: classify images by their nearest class embedding.

    Args:
        class_names: a list of names, or a preset name (``"fashion-mnist"``).
        templates: prompt templates with one ``{}`` for the class name, or a preset name
            (``"fashion-mnist-heldout"``, ``"fashion-mnist-train"``, ``"clip"``).
        image: the image tower's key in the batches; text: the text tower's name.
        label: the batches' label key.
        ks: accuracies to report, top-``k`` for each ``k`` (default 1 and 5).
        text_batch_size: prompts embedded at once.

    Returns ``{"top1": .., "top5": .., "n": number of images}`` (fractions in [0, 1]).
    """

    name = "zero-shot-classification"

    def __init__(
        self,
        class_names: Sequence[str] | str = "fashion-mnist",
        templates: Sequence[str] | str = "fashion-mnist-heldout",
        *,
        image: str = "image",
        text: str = "text",
        label: str = "label",
        ks: Sequence[int] | int = (1, 5),
        text_batch_size: int = 256,
    ) -> None:
        names = resolve_class_names(class_names)
        prompts = resolve_templates(templates)
        ks = positive_ints("zero-shot-classification: ks", ks)
        super().__init__(
            class_names=names,
            templates=prompts,
            image=image,
            text=text,
            label=label,
            ks=ks,
            text_batch_size=text_batch_size,
        )
        self.class_names, self.templates, self.ks = names, prompts, ks
        self.image, self.text, self.label = image, text, label
        self.text_batch_size = int(text_batch_size)

    @torch.no_grad()
    def evaluate(self, model: Method, data: Iterable[Batch]) -> dict[str, float]:
        classes = class_embeddings(
            model,
            self.class_names,
            self.templates,
            tower=self.text,
            batch_size=self.text_batch_size,
        )  # (K, E)
        device = classes.device
        hits = {k: 0 for k in self.ks}
        n = 0
        for i, batch in enumerate(data):
            if self.image not in batch or self.label not in batch:
                raise ConfigError(
                    f"zero-shot-classification: batch {i} has no {self.image!r} or "
                    f"{self.label!r} (keys: {sorted(batch)}); map the image column and set "
                    "the label column"
                )
            images = move_to(batch[self.image], device)
            labels = torch.as_tensor(batch[self.label], device=device).long().view(-1)
            if labels.numel() and (labels.min() < 0 or labels.max() >= len(self.class_names)):
                raise ConfigError(
                    f"zero-shot-classification: batch {i} has labels outside 0..."
                    f"{len(self.class_names) - 1} ({len(self.class_names)} class names)"
                )
            z = model.embed({self.image: images})[self.image].float()  # (B, E)
            logits = F.normalize(z, dim=-1) @ classes.T  # (B, K)
            for k, count in topk_accuracy(logits, labels, self.ks).items():
                hits[k] += int(count)
            n += labels.numel()
        if n == 0:
            raise ConfigError("zero-shot-classification: the evaluation data has no examples")
        out = {f"top{k}": hits[k] / n for k in self.ks}
        out["n"] = float(n)
        return out


def recall_at_k(
    queries: Tensor,
    targets: Tensor,
    ks: Sequence[int],
    *,
    query_ids: Tensor | None = None,
    target_ids: Tensor | None = None,
    chunk_size: int = 1024,
) -> dict[int, float]:
    """Fraction of queries with a matching target among their ``k`` most similar targets.

    ``queries`` ``(Nq, E)`` and ``targets`` ``(Nt, E)`` are compared by dot product. Without
    ids, query ``i`` matches target ``i`` (``Nq == Nt``); with ``query_ids``/``target_ids``
    (e.g. one image id per caption), a query matches every target with its id and the best
    ranked match counts. A rank is the number of non-matching targets scoring strictly higher
    than the best match (ties in the model's favour). Memory: ``chunk_size x Nt`` scores.
    """
    if query_ids is None or target_ids is None:
        if queries.shape[0] != targets.shape[0]:
            raise ValueError(
                f"recall_at_k: {queries.shape[0]} queries but {targets.shape[0]} targets; pass "
                "query_ids and target_ids to pair them"
            )
        query_ids = torch.arange(queries.shape[0], device=queries.device)
        target_ids = torch.arange(targets.shape[0], device=targets.device)
    hits = {k: 0 for k in ks}
    for start in range(0, queries.shape[0], chunk_size):
        scores = queries[start : start + chunk_size] @ targets.T  # (c, Nt)
        match = query_ids[start : start + chunk_size, None] == target_ids[None, :]  # (c, Nt)
        if not bool(match.any(dim=1).all()):
            row = start + int((~match.any(dim=1)).nonzero()[0])
            raise ValueError(f"recall_at_k: query {row} has no matching target")
        best = scores.masked_fill(~match, float("-inf")).amax(dim=1, keepdim=True)  # (c, 1)
        rank = ((scores > best) & ~match).sum(dim=1)  # (c,)
        for k in ks:
            hits[k] += int((rank < k).sum())
    n = max(queries.shape[0], 1)
    return {k: hits[k] / n for k in ks}


class Retrieval(Task):
    """``retrieval``: image->text and text->image recall@k over paired evaluation data.

    Example ``i`` of the data pairs image ``i`` with text ``i``; with ``group`` (a batch key
    holding an id per example, e.g. an image id shared by its captions) every example with the
    same id is a correct match, and each distinct image is a query once.

    Args:
        image, text: the two towers' keys in the batches; ks: recall levels (1, 5, 10);
        group: optional batch key of pair ids.

    Returns ``{"image_to_text_recall@k": .., "text_to_image_recall@k": .., "mean_recall": ..,
    "n": number of pairs}``.
    """

    name = "retrieval"

    def __init__(
        self,
        *,
        image: str = "image",
        text: str = "text",
        ks: Sequence[int] | int = (1, 5, 10),
        group: str | None = None,
    ) -> None:
        ks = positive_ints("retrieval: ks", ks)
        super().__init__(image=image, text=text, ks=ks, group=group)
        self.image, self.text, self.ks, self.group = image, text, ks, group

    @torch.no_grad()
    def evaluate(self, model: Method, data: Iterable[Batch]) -> dict[str, float]:
        images, texts, ids = [], [], []
        device = model_device(model)
        for i, batch in enumerate(data):
            if self.image not in batch or self.text not in batch:
                raise ConfigError(
                    f"retrieval: batch {i} lacks {self.image!r} or {self.text!r} (keys: "
                    f"{sorted(batch)}); map both columns in data.columns / --columns"
                )
            pair = {tower: move_to(batch[tower], device) for tower in (self.image, self.text)}
            z = model.embed(pair)
            images.append(F.normalize(z[self.image].float(), dim=-1))
            texts.append(F.normalize(z[self.text].float(), dim=-1))
            if self.group is not None:
                if self.group not in batch:
                    raise ConfigError(f"retrieval: batch {i} has no group key {self.group!r}")
                ids.append(torch.as_tensor(batch[self.group], device=device).view(-1))
        if not images:
            raise ConfigError("retrieval: the evaluation data has no examples")
        img, txt = torch.cat(images), torch.cat(texts)  # (N, E) each
        out: dict[str, float] = {}
        if self.group is None:
            i2t = recall_at_k(img, txt, self.ks)
            t2i = recall_at_k(txt, img, self.ks)
        else:
            pair_ids = torch.cat(ids)
            # one query per distinct image: the first example of each id
            first = _first_of_each(pair_ids)
            i2t = recall_at_k(
                img[first], txt, self.ks, query_ids=pair_ids[first], target_ids=pair_ids
            )
            t2i = recall_at_k(
                txt, img[first], self.ks, query_ids=pair_ids, target_ids=pair_ids[first]
            )
        for k in self.ks:
            out[f"image_to_text_recall@{k}"] = i2t[k]
            out[f"text_to_image_recall@{k}"] = t2i[k]
        out["mean_recall"] = (sum(i2t.values()) + sum(t2i.values())) / (2 * len(self.ks))
        out["n"] = float(img.shape[0])
        return out


def _first_of_each(ids: Tensor) -> Tensor:
    """Indices of the first occurrence of every distinct id, in order of appearance."""
    seen: set[int] = set()
    first = []
    for i, value in enumerate(ids.tolist()):
        if value not in seen:
            seen.add(value)
            first.append(i)
    return torch.tensor(first, dtype=torch.long, device=ids.device)
