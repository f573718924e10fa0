"""The evaluation tasks against hand-made embeddings whose answers are worked out by hand.

A fake method looks each example's embedding up by id, so every score is known in advance:
the class prompts embed to the basis vectors e_0..e_3 (template "{}"), and each case places
the other modalities' vectors relative to them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from colearn_plugin_imagebind.missing import PRESENT
from colearn_plugin_imagebind.tasks import (
    CrossModalRetrieval,
    EmbeddingArithmetic,
    EmergentZeroShot,
    ZeroShot,
    partners,
)

from colearn_core import ConfigError, Method, Modality, registries

CLASSES = ["cat", "dog", "bird", "fish"]
E = torch.eye(4)


class _Prompts(Modality):
    """Strings -> ids in a fixed list of prompts."""

    name = "text"

    def __init__(self, prompts: Sequence[str]) -> None:
        super().__init__()
        self.ids = {p: i for i, p in enumerate(prompts)}

    def preprocess(self, sample: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        return {"id": torch.tensor(self.ids[sample])}


class FakeBind(Method):
    """``embed`` returns ``table[tower][ids]``; the text tower knows the class names."""

    anchor = "image"

    def __init__(self, table: Mapping[str, torch.Tensor]) -> None:
        super().__init__({})
        self.table = {"text": E.clone(), **table}
        self.text = _Prompts(CLASSES)
        self.dummy = torch.nn.Parameter(torch.zeros(()))  # a device for the tasks

    @property
    def modalities(self) -> dict[str, Modality]:
        return {"text": self.text}

    def embed(self, batch):  # noqa: ANN001
        return {t: self.table[t][batch[t]["id"]] for t in self.table if t in batch}


def batches(labels: Sequence[int], towers: Sequence[str], size: int = 3, missing=None):
    """Example i has id i in every tower; ``missing``: {tower: [rows without it]}."""
    out = []
    for start in range(0, len(labels), size):
        rows = list(range(start, min(start + size, len(labels))))
        batch: dict[str, Any] = {"label": torch.tensor([labels[i] for i in rows])}
        for t in towers:
            batch[t] = {"id": torch.tensor(rows)}
            if missing and t in missing:
                batch[t][PRESENT] = torch.tensor([i not in missing[t] for i in rows])
        out.append(batch)
    return out


def unit(*rows: list[float]) -> torch.Tensor:
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_tasks_are_registered():
    for name, cls in (
        ("imagebind-zero-shot", ZeroShot),
        ("emergent-zero-shot", EmergentZeroShot),
        ("cross-modal-retrieval", CrossModalRetrieval),
        ("embedding-arithmetic", EmbeddingArithmetic),
    ):
        assert registries.tasks.get(name) is cls


def test_zero_shot_classifies_any_modality_by_the_nearest_prompt():
    # audio 0, 1: clearly their class; 2: closer to "dog" than its class "bird";
    # 3: a tie between "fish" (its class) and "cat": ties count for the model.
    audio = unit([1, 0.2, 0, 0], [0.1, 1, 0, 0], [0, 0.9, 0.5, 0], [1, 0, 0, 1])
    model = FakeBind({"audio": audio})
    task = ZeroShot(CLASSES, "identity", modality="audio", ks=(1, 2))
    got = task.evaluate(model, batches([0, 1, 2, 3], ["audio"]))
    assert got == {"top1": 0.75, "top2": 1.0, "n": 4.0}
    # rows without audio are left out: only examples 0 and 2 remain
    got = task.evaluate(model, batches([0, 1, 2, 3], ["audio"], missing={"audio": [1, 3]}))
    assert got == {"top1": 0.5, "top2": 1.0, "n": 2.0}
    # prompt ensembling: two templates average their unit embeddings
    assert task.classes(model).shape == (4, 4)
    with pytest.raises(ConfigError, match="lacks"):
        task.evaluate(model, batches([0, 1], ["image"]))


def test_emergent_zero_shot_refuses_pairs_with_the_anchor():
    audio = unit([0, 0, 1, 0.3], [0, 1, 0, 0])
    model = FakeBind({"audio": audio, "image": unit([1, 0, 0, 0], [1, 0, 0, 0])})
    got = EmergentZeroShot(CLASSES, "identity").evaluate(model, batches([2, 3], ["audio"]))
    assert got == {"top1": 0.5, "top5": 1.0, "n": 2.0}
    with pytest.raises(ConfigError, match="involves the anchor 'image'"):
        EmergentZeroShot(CLASSES, "identity", modality="image").evaluate(
            model, batches([0, 1], ["image"])
        )

    class Anchorless(FakeBind):
        anchor = None

    with pytest.raises(ConfigError, match="no anchor"):
        EmergentZeroShot(CLASSES, "identity").evaluate(
            Anchorless({"audio": audio}), batches([2, 3], ["audio"])
        )


def test_cross_modal_retrieval_by_pair_and_by_label():
    # 4 examples, labels 0, 0, 1, 1. Query (audio) i is closest to target (image):
    # q0 -> t1 (same label, not its pair), q1 -> t1, q2 -> t3 then t2, q3 -> t0 (wrong label)
    image = unit([1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1])
    audio = unit([0.1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0.8, 1], [1, 0, 0, 0.5])
    model = FakeBind({"image": image, "audio": audio})
    labels = [0, 0, 1, 1]
    by_label = CrossModalRetrieval(query="audio", target="image", ks=(1, 2), match="label")
    got = by_label.evaluate(model, batches(labels, ["audio", "image"]))
    assert got["audio_to_image_recall@1"] == 0.75  # q3's best target t0 has label 0
    assert got["audio_to_image_recall@2"] == 1.0  # ... t3 is second
    # image -> audio: t0 -> q3 (wrong), t1 -> q0/q1 ok, t2 -> q2 ok, t3 -> q2 ok
    assert got["image_to_audio_recall@1"] == 0.75
    by_pair = CrossModalRetrieval(
        query="audio", target="image", ks=(1,), match="pair", both_directions=False
    )
    got = by_pair.evaluate(model, batches(labels, ["audio", "image"]))
    # pairs: q0's best is t1 (miss), q1 -> t1 (hit), q2 -> t3 (miss), q3 -> t0 (miss)
    assert got == {"audio_to_image_recall@1": 0.25, "n": 4.0}
    with pytest.raises(ConfigError, match="match must be"):
        CrossModalRetrieval(match="nearest")


def test_partners_are_same_class_others_and_other_classes():
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    same, other = partners(labels, seed=3)
    for i in range(6):
        assert labels[same[i]] == labels[i]
        assert same[i] != i or int((labels == labels[i]).sum()) == 1
        assert labels[other[i]] != labels[i]
    assert same[5] == 5  # the only example of class 2
    again = partners(labels, seed=3)
    assert torch.equal(again[0], same) and torch.equal(again[1], other)
    assert partners(torch.tensor([1, 1]))[1].tolist() == [-1, -1]  # no other class


def test_embedding_arithmetic_adds_two_modalities():
    # Each class c: image = e_c leaning towards e_(c+1), audio = e_c leaning towards e_(c-1).
    # Alone, each is nearer the wrong class; summed, the leanings split and e_c wins.
    labels = [0, 0, 1, 1, 2, 2, 3, 3]
    image = torch.stack([F.normalize(E[c] + 1.2 * E[(c + 1) % 4], dim=0) for c in labels])
    audio = torch.stack([F.normalize(E[c] + 1.2 * E[(c - 1) % 4], dim=0) for c in labels])
    model = FakeBind({"image": image, "audio": audio})
    task = EmbeddingArithmetic(CLASSES, "identity", first="image", second="audio", seed=0)
    got = task.evaluate(model, batches(labels, ["image", "audio"]))
    assert got["image_top1"] == 0.0 and got["audio_top1"] == 0.0
    assert got["same_class_top1"] == 1.0
    # composition: image of a + audio of b. The top two classes are {a, b} exactly when the
    # leanings land on them; computed here directly from the definition.
    lab = torch.tensor(labels)
    _, other = partners(lab, seed=0)
    hits = 0
    for i, j in enumerate(other.tolist()):
        scores = image[i] + audio[j]  # against e_0..e_3
        hits += set(scores.topk(2).indices.tolist()) == {labels[i], labels[j]}
    assert got["composition_top2"] == pytest.approx(hits / len(labels))
    # with clean embeddings every composition is found
    clean = torch.stack([E[c] for c in labels])
    got = task.evaluate(
        FakeBind({"image": clean, "audio": clean}), batches(labels, ["image", "audio"])
    )
    assert got["composition_top2"] == 1.0 and got["same_class_top1"] == 1.0
    with pytest.raises(ConfigError, match="three different towers"):
        EmbeddingArithmetic(first="image", second="image")
