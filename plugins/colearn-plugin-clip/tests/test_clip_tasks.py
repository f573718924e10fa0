"""zero-shot-classification and retrieval against small cases computed by hand."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from colearn_plugin_clip.prompts import (
    FASHION_MNIST_CLASS_NAMES,
    FASHION_MNIST_HELDOUT_TEMPLATES,
    FASHION_MNIST_TRAIN_TEMPLATES,
    resolve_templates,
)
from colearn_plugin_clip.tasks import (
    Retrieval,
    ZeroShotClassification,
    class_embeddings,
    recall_at_k,
    topk_accuracy,
)

from colearn_core import ConfigError, Method, Modality, registries


class LookupText(Modality):
    """Strings -> row indices of a fixed table (so embeddings are known exactly)."""

    name = "text"

    def __init__(self, vocabulary: Sequence[str]) -> None:
        super().__init__()
        self.index = {s: i for i, s in enumerate(vocabulary)}

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return {"row": torch.tensor([self.index[t] for t in texts])}


class Fixed(Method):
    """embed(): text rows come from ``table``; images are their own embeddings."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        super().__init__({})
        self.table = torch.tensor(list(table.values()))
        self.text = LookupText(list(table))
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    @property
    def modalities(self) -> dict[str, Modality]:
        return {"text": self.text}

    def embed(self, batch: Any) -> dict[str, torch.Tensor]:
        out = {}
        if "text" in batch:
            out["text"] = self.table[batch["text"]["row"]]
        if "image" in batch:
            out["image"] = batch["image"]["vec"]
        return out


def test_tasks_are_registered():
    assert registries.tasks.get("zero-shot-classification") is ZeroShotClassification
    assert registries.tasks.get("retrieval") is Retrieval


def test_topk_accuracy_counts_ties_for_the_model():
    logits = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.2, 0.6], [0.5, 0.5, 0.1], [0.1, 0.3, 0.2]])
    labels = torch.tensor([0, 1, 1, 0])
    # ranks (classes strictly above the label): 0, 1, 0 (tie), 2
    counts = topk_accuracy(logits, labels, [1, 2, 3])
    assert {k: int(v) for k, v in counts.items()} == {1: 2, 2: 3, 3: 4}


def test_class_embeddings_average_normalised_prompts():
    # two templates; class "b"'s first prompt is long, so averaging raw vectors would let it
    # dominate: normalising each prompt first is what CLIP does
    table = {
        "x a": [1.0, 0.0],
        "y a": [0.0, 1.0],
        "x b": [10.0, 0.0],
        "y b": [0.0, -1.0],
    }
    model = Fixed(table)
    z = class_embeddings(model, ["a", "b"], ["x {}", "y {}"])
    expected_a = F.normalize(torch.tensor([0.5, 0.5]), dim=0)
    expected_b = F.normalize(torch.tensor([0.5, -0.5]), dim=0)  # not (5, -0.5)
    assert torch.allclose(z[0], expected_a) and torch.allclose(z[1], expected_b)


def test_zero_shot_accuracy_on_a_hand_computed_case():
    # classes a, b, c along the axes (one template)
    model = Fixed({"<a>": [1.0, 0.0, 0.0], "<b>": [0.0, 1.0, 0.0], "<c>": [0.0, 0.0, 1.0]})
    images = torch.tensor(
        [
            [0.9, 0.1, 0.0],  # -> a (rank of a: 0)
            [0.9, 0.5, 0.1],  # label b: a above it -> rank 1
            [0.1, 0.2, 0.7],  # -> c, correct
            [0.5, 0.3, 0.4],  # label b: a and c above -> rank 2
            [2.0, 0.0, 0.0],  # -> a, correct (length does not matter)
        ]
    )
    labels = torch.tensor([0, 1, 2, 1, 0])
    data = [
        {"image": {"vec": images[:3]}, "label": labels[:3]},
        {"image": {"vec": images[3:]}, "label": labels[3:]},
    ]
    task = ZeroShotClassification(["a", "b", "c"], ["<{}>"], ks=[1, 2, 3])
    out = task.evaluate(model, data)
    assert out == {"top1": 3 / 5, "top2": 4 / 5, "top3": 1.0, "n": 5.0}


def test_zero_shot_errors_name_the_problem():
    model = Fixed({"<a>": [1.0, 0.0], "<b>": [0.0, 1.0]})
    task = ZeroShotClassification(["a", "b"], ["<{}>"])
    with pytest.raises(ConfigError, match="batch 0 has no 'image' or 'label'"):
        task.evaluate(model, [{"image": {"vec": torch.ones(1, 2)}}])
    with pytest.raises(ConfigError, match="labels outside"):
        task.evaluate(model, [{"image": {"vec": torch.ones(1, 2)}, "label": torch.tensor([2])}])
    with pytest.raises(ConfigError, match="no examples"):
        task.evaluate(model, [])
    with pytest.raises(ConfigError, match="exactly one"):
        ZeroShotClassification(["a"], ["no placeholder"])
    with pytest.raises(ConfigError, match="unknown preset"):
        ZeroShotClassification("imagenet-21k")


def test_recall_at_k_by_hand():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    t = torch.tensor([[0.9, 0.1], [0.8, 0.0], [0.0, 1.0]])
    # scores q @ t.T: row0 [0.9, 0.8, 0] -> own (0) rank 0
    #                 row1 [0.1, 0, 1]   -> own (1) has 0.1 and 1.0 above: rank 2
    #                 row2 [0.7, 0.56, 0.7] -> own (2) = 0.7 ties 0.7: rank 0
    assert recall_at_k(q, t, [1, 2, 3]) == {1: 2 / 3, 2: 2 / 3, 3: 1.0}
    # with ids: query 1 (id 7) matches targets 1 and 2 (id 7): best is target 2 -> rank 0
    ids_q = torch.tensor([0, 7, 5])
    ids_t = torch.tensor([0, 7, 7])
    with pytest.raises(ValueError, match="query 2 has no matching target"):
        recall_at_k(q, t, [1], query_ids=ids_q, target_ids=ids_t)
    out = recall_at_k(q[:2], t, [1], query_ids=ids_q[:2], target_ids=ids_t, chunk_size=1)
    assert out == {1: 1.0}


def test_retrieval_task_both_directions():
    # texts are looked up from the table; images given directly
    table = {"t0": [1.0, 0.0], "t1": [0.0, 1.0], "t2": [1.0, 1.0]}
    model = Fixed(table)
    images = torch.tensor([[1.0, 0.1], [1.0, 0.0], [0.6, 0.5]])
    # i2t: image0 -> scores [1, .1, 1.1]/.. normalised: t0 .995, t1 .0995, t2 .774 -> rank 0
    #      image1 -> t0 1, t1 0, t2 .707 -> own t1 rank 2
    #      image2 -> t0 .768, t1 .640, t2 .997 -> rank 0
    # t2i: t0 -> images .995, 1.0, .768 -> own image0 rank 1
    #      t1 -> .0995, 0, .640 -> own image1 (0) rank 2
    #      t2 -> .774, .707, .997 -> rank 0
    text = model.text.tokenize(["t0", "t1", "t2"])
    data = [{"image": {"vec": images}, "text": text}]
    out = Retrieval(ks=[1, 2]).evaluate(model, data)
    expected = {
        "image_to_text_recall@1": 2 / 3,
        "text_to_image_recall@1": 1 / 3,
        "image_to_text_recall@2": 2 / 3,
        "text_to_image_recall@2": 2 / 3,
    }
    for key, value in expected.items():
        assert math.isclose(out[key], value), key
    assert math.isclose(out["mean_recall"], (2 / 3 + 2 / 3 + 1 / 3 + 2 / 3) / 4)
    assert out["n"] == 3.0


def test_retrieval_with_groups_counts_each_image_once():
    # two captions of image A (id 0), one of image B (id 1)
    table = {"a1": [1.0, 0.0], "a2": [0.9, 0.2], "b": [0.0, 1.0]}
    model = Fixed(table)
    images = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.1, 1.0]])  # image A appears twice
    data = [
        {
            "image": {"vec": images},
            "text": model.text.tokenize(["a1", "a2", "b"]),
            "image_id": torch.tensor([0, 0, 1]),
        }
    ]
    out = Retrieval(ks=[1], group="image_id").evaluate(model, data)
    assert out["image_to_text_recall@1"] == 1.0 and out["text_to_image_recall@1"] == 1.0
    assert out["n"] == 3.0


def test_fashion_mnist_prompt_sets():
    assert len(FASHION_MNIST_CLASS_NAMES) == 10
    assert not set(FASHION_MNIST_TRAIN_TEMPLATES) & set(FASHION_MNIST_HELDOUT_TEMPLATES)
    assert resolve_templates("fashion-mnist-heldout") == list(FASHION_MNIST_HELDOUT_TEMPLATES)
    task = ZeroShotClassification()  # defaults: Fashion-MNIST with the held-out templates
    assert task.class_names == list(FASHION_MNIST_CLASS_NAMES)
    assert task.templates == list(FASHION_MNIST_HELDOUT_TEMPLATES)
    assert task.config["ks"] == [1, 5]
