"""Evaluations of a ``vilbert`` model (registered tasks).

- ``vilbert-pretraining``: on held-out pairs, with a fixed seed per batch: alignment prediction
  accuracy (half the captions swapped, as in training), the masked-region KL of the model
  against the KL of a unigram baseline (the mean detector distribution of the evaluated
  regions, the best constant guess), and masked-LM accuracy.
- ``vilbert-retrieval``: caption -> image retrieval by alignment score over ``max_images``
  held-out pairs: every caption is scored against every image; R@1/5/10.
- ``vilbert-vqa``: answer accuracy of a model fine-tuned with ``objective: vqa``, overall and
  per question type.
- ``vilbert-text-pretraining``: masked-LM and next-sentence accuracy of ``vilbert-text``.

``data`` is an iterable of collated batches (``{"text": ..., "regions": ..., "label"}``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from colearn_core import Batch, ConfigError, Task

from .masking import IGNORE_INDEX, same_captions

__all__ = [
    "PretrainingEval",
    "RetrievalTask",
    "TextPretrainingEval",
    "VQATask",
    "concat_batches",
]


def _check_method(model: Any, task: str) -> None:
    if not hasattr(model, "prepare_pretraining"):
        raise ConfigError(f"task {task!r} evaluates a 'vilbert' model, got {type(model).__name__}")


class PretrainingEval(Task):
    """Alignment accuracy, masked-region KL vs a unigram baseline, masked-LM accuracy.

    Alignment is measured as published (half the captions swapped with other examples'), also
    for models trained with hard negatives; when the batches carry ``hard_negative`` captions,
    ``hard_negative_accuracy`` is the fraction of those (the ones that differ from the image's
    own caption) classified as not aligned.

    Config: ``seed`` (0); ``repeats`` (4): each batch is corrupted that many times with
    different seeds (more masked regions, less noise); ``max_batches`` (all).
    """

    name = "vilbert-pretraining"

    def __init__(self, seed: int = 0, repeats: int = 4, max_batches: int | None = None) -> None:
        if repeats < 1:
            raise ConfigError(f"vilbert-pretraining: repeats must be >= 1, got {repeats}")
        super().__init__(seed=seed, repeats=repeats, max_batches=max_batches)

    @torch.no_grad()
    def evaluate(self, model: Any, data: Iterable[Batch]) -> dict[str, float]:
        _check_method(model, self.name)
        correct = pairs = mlm_correct = mlm_total = hard_correct = hard_total = 0
        targets: list[Tensor] = []
        log_preds: list[Tensor] = []
        prob_sum: Tensor | None = None
        regions_seen = 0
        repeats = int(self.config["repeats"])
        for i, batch in enumerate(data):
            if self.config["max_batches"] is not None and i >= self.config["max_batches"]:
                break
            regions = batch["regions"]
            has_probs = "class_probs" in regions
            if has_probs:
                probs = regions["class_probs"].float()
                valid = regions.get("mask")
                valid = torch.ones(probs.shape[:2], dtype=torch.bool) if valid is None else valid
                total = probs[valid.bool()].sum(0).cpu()
                prob_sum = total if prob_sum is None else prob_sum + total
                regions_seen += int(valid.sum())
            if "hard_negative" in batch:
                hard, text = batch["hard_negative"], batch["text"]
                differs = ~same_captions(
                    hard["input_ids"],
                    hard.get("attention_mask"),
                    text["input_ids"],
                    text.get("attention_mask"),
                )
                pred = model.alignment_logits(hard, regions).argmax(-1)
                hard_correct += int(((pred == 0) & differs).sum())
                hard_total += int(differs.sum())
            for r in range(repeats):
                seed = (int(self.config["seed"]) * 100_003 + i) * repeats + r
                prepared = model.prepare_pretraining(
                    batch, torch.Generator().manual_seed(seed), hard_negatives=False
                )
                out = model.pretraining_outputs(batch, prepared)
                align = out.logits["alignment"].argmax(-1)
                correct += int((align == prepared.aligned).sum())
                pairs += len(align)
                selected = prepared.mlm_labels != IGNORE_INDEX
                mlm_pred = out.logits["masked_lm"].argmax(-1)
                mlm_correct += int((mlm_pred[selected] == prepared.mlm_labels[selected]).sum())
                mlm_total += int(selected.sum())
                if has_probs:
                    sel = prepared.region_selected
                    targets.append(regions["class_probs"][sel].float().cpu())
                    log_preds.append(F.log_softmax(out.logits["regions"][sel].float(), -1).cpu())
        if pairs == 0:
            raise ValueError("vilbert-pretraining: the evaluation data is empty")
        metrics = {"alignment_accuracy": correct / pairs, "pairs": float(pairs // repeats)}
        if hard_total:
            metrics["hard_negative_accuracy"] = hard_correct / hard_total
        if mlm_total:
            metrics["masked_lm_accuracy"] = mlm_correct / mlm_total
        if prob_sum is not None and targets:
            p = torch.cat(targets)  # (N, C)
            log_q = torch.cat(log_preds)
            unigram = (prob_sum / max(regions_seen, 1)).clamp_min(1e-12)  # (C,)
            kl_model = F.kl_div(log_q, p, reduction="none").sum(-1)
            kl_unigram = F.kl_div(unigram.log().expand_as(p), p, reduction="none").sum(-1)
            metrics.update(
                masked_region_kl=float(kl_model.mean()),
                unigram_kl=float(kl_unigram.mean()),
                masked_regions=float(len(p)),
            )
        return metrics


def _pad_cat(tensors: Sequence[Tensor], value: float | int | bool = 0) -> Tensor:
    """Concatenate ``(B_i, L_i, ...)`` tensors along dim 0, padding dim 1 to the longest."""
    length = max(t.shape[1] for t in tensors)
    padded = []
    for t in tensors:
        if t.shape[1] < length:
            pad = t.new_full((t.shape[0], length - t.shape[1], *t.shape[2:]), value)
            t = torch.cat([t, pad], dim=1)
        padded.append(t)
    return torch.cat(padded)


def concat_batches(batches: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    """Merge collated batches (padding text and regions to the longest)."""
    out: dict[str, Any] = {}
    for key in keys:
        parts = [b[key] for b in batches]
        if isinstance(parts[0], Mapping):
            out[key] = {k: _pad_cat([p[k] for p in parts]) for k in parts[0]}
        else:
            out[key] = torch.cat(parts)
    return out


def _take(part: Mapping[str, Tensor], index: Tensor) -> dict[str, Tensor]:
    return {k: v[index] for k, v in part.items()}


class RetrievalTask(Task):
    """Caption -> image retrieval ranked by the alignment head's log-odds.

    Config: ``max_images`` (100): the first N pairs of the evaluation data form the gallery;
    ``chunk`` (256): pairs per forward pass; ``ks`` ([1, 5, 10]).
    """

    name = "vilbert-retrieval"

    def __init__(
        self, max_images: int = 100, chunk: int = 256, ks: Sequence[int] = (1, 5, 10)
    ) -> None:
        super().__init__(max_images=max_images, chunk=chunk, ks=list(ks))

    @torch.no_grad()
    def scores(self, model: Any, data: Iterable[Batch]) -> Tensor:
        """``(N, N)`` alignment scores: caption i (row) against image j (column)."""
        batches, n = [], 0
        for batch in data:
            batches.append(batch)
            n += len(batch["text"]["input_ids"])
            if n >= self.config["max_images"]:
                break
        if not batches:
            raise ValueError("vilbert-retrieval: the evaluation data is empty")
        merged = concat_batches(batches, ["text", "regions"])
        n = min(n, self.config["max_images"])
        text = {k: v[:n] for k, v in merged["text"].items()}
        regions = {k: v[:n] for k, v in merged["regions"].items()}
        captions = torch.arange(n).repeat_interleave(n)  # pair p: caption p // n
        images = torch.arange(n).repeat(n)  # image p % n
        out = []
        for start in range(0, n * n, self.config["chunk"]):
            c = captions[start : start + self.config["chunk"]]
            i = images[start : start + self.config["chunk"]]
            out.append(model.alignment_score(_take(text, c), _take(regions, i)))
        return torch.cat(out).view(n, n).float().cpu()

    def evaluate(self, model: Any, data: Iterable[Batch]) -> dict[str, float]:
        _check_method(model, self.name)
        s = self.scores(model, data)
        n = s.shape[0]
        own = s.diagonal().unsqueeze(1)  # (N, 1)
        # rank of the true image: how many images score strictly higher (ties favour it)
        rank = (s > own).sum(dim=1)
        metrics = {f"R@{k}": float((rank < k).float().mean()) for k in self.config["ks"]}
        metrics["images"] = float(n)
        metrics["median_rank"] = float(rank.float().median() + 1)
        return metrics


class VQATask(Task):
    """Accuracy of the VQA answer classifier (``batch["label"]`` holds the answer index),
    overall and per question type.

    Config: ``type_column`` (optional): a dataset column naming each question's type, which
    the recipe passes to the eval batches with ``data.eval_columns`` (fashion-scenes:
    ``question_type``). Then ``accuracy_<type>`` and ``questions_<type>`` are reported for
    every type that occurs.
    """

    name = "vilbert-vqa"

    def __init__(self, type_column: str | None = None) -> None:
        if type_column is not None and not isinstance(type_column, str):
            raise ConfigError(
                f"vilbert-vqa: type_column must be a column name (string), got {type_column!r}"
            )
        super().__init__(type_column=type_column)
        self.type_column = type_column

    def _types(self, batch: Batch, n: int) -> list[str]:
        if self.type_column is None:
            return ["all"] * n
        types = batch.get("columns", {}).get(self.type_column)
        if types is None:
            raise ConfigError(
                f"vilbert-vqa: type_column {self.type_column!r} is not in the eval batches; "
                f"list it in the recipe's data.eval_columns"
            )
        return [str(t) for t in types]

    @torch.no_grad()
    def evaluate(self, model: Any, data: Iterable[Batch]) -> dict[str, float]:
        if getattr(model, "vqa_head", None) is None:
            raise ConfigError("vilbert-vqa evaluates a vilbert model with objective 'vqa'")
        correct: dict[str, int] = {}
        total: dict[str, int] = {}
        for batch in data:
            answer = batch.get("label", batch.get("answer"))
            if answer is None:
                raise KeyError("vilbert-vqa: batches need the answer index as 'label'")
            logits = model(batch).logits["vqa"]
            hits = (logits.argmax(-1) == answer).cpu().tolist()
            for qtype, hit in zip(self._types(batch, len(hits)), hits):
                correct[qtype] = correct.get(qtype, 0) + int(hit)
                total[qtype] = total.get(qtype, 0) + 1
        n = sum(total.values())
        if n == 0:
            raise ValueError("vilbert-vqa: the evaluation data is empty")
        metrics = {"accuracy": sum(correct.values()) / n, "questions": float(n)}
        if self.type_column is not None:
            for qtype in sorted(total):
                metrics[f"accuracy_{qtype}"] = correct[qtype] / total[qtype]
                metrics[f"questions_{qtype}"] = float(total[qtype])
        return metrics


class TextPretrainingEval(Task):
    """Masked-LM and next-sentence accuracy of a ``vilbert-text`` model on held-out pairs.

    Config: ``seed`` (0): the token masking of batch i uses seed ``seed * 100003 + i``.
    """

    name = "vilbert-text-pretraining"

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed=seed)

    @torch.no_grad()
    def evaluate(self, model: Any, data: Iterable[Batch]) -> dict[str, float]:
        if not hasattr(model, "nsp_head"):
            raise ConfigError(f"task {self.name!r} evaluates a 'vilbert-text' model")
        mlm_correct = mlm_total = nsp_correct = nsp_total = 0
        for i, batch in enumerate(data):
            out = model(dict(batch, seed=int(self.config["seed"]) * 100_003 + i))
            labels = out.logits["mlm_labels"]
            selected = labels != IGNORE_INDEX
            pred = out.logits["masked_lm"].argmax(-1)
            mlm_correct += int((pred[selected] == labels[selected]).sum())
            mlm_total += int(selected.sum())
            is_next = batch.get("label", batch.get("is_next"))
            if is_next is not None:
                nsp = out.logits["next_sentence"].argmax(-1)
                nsp_correct += int((nsp == is_next).sum())
                nsp_total += len(is_next)
        metrics = {"masked_lm_accuracy": mlm_correct / max(mlm_total, 1)}
        if nsp_total:
            metrics["next_sentence_accuracy"] = nsp_correct / nsp_total
        return metrics
