"""The three objectives against their definitions, and the plugin's contract checks."""

import math

import torch
from colearn_plugin_vilbert.losses import alignment_loss, masked_lm_loss, masked_region_kl
from colearn_plugin_vilbert.masking import IGNORE_INDEX

from colearn_core import registries
from colearn_core.testing import check_loss, check_plugin


def test_masked_region_kl_matches_the_direct_formula():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 5, generator=g)
    target = torch.softmax(torch.randn(3, 4, 5, generator=g) * 2, dim=-1)
    target[0, 1] = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0])  # zeros: 0 * log 0 = 0
    selected = torch.zeros(3, 4, dtype=torch.bool)
    selected[0, 1] = selected[1, 3] = selected[2, 0] = True

    expected, n = 0.0, 0
    for b in range(3):
        for r in range(4):
            if not selected[b, r]:
                continue
            q = [math.exp(v) for v in logits[b, r].tolist()]
            q = [v / sum(q) for v in q]
            p = target[b, r].tolist()
            expected += sum(pc * (math.log(pc) - math.log(qc)) for pc, qc in zip(p, q) if pc > 0)
            n += 1
    value = masked_region_kl(logits, target, selected)
    assert abs(value.item() - expected / n) < 1e-5


def test_masked_region_kl_is_zero_for_a_perfect_prediction_and_empty_selection():
    target = torch.softmax(torch.randn(2, 3, 4), dim=-1)
    selected = torch.ones(2, 3, dtype=torch.bool)
    assert masked_region_kl(target.log(), target, selected).abs().item() < 1e-6
    logits = torch.randn(2, 3, 4, requires_grad=True)
    empty = masked_region_kl(logits, target, torch.zeros(2, 3, dtype=torch.bool))
    assert empty.item() == 0.0
    empty.backward()  # still part of the graph
    assert logits.grad is not None


def test_masked_lm_loss_is_cross_entropy_over_selected_tokens_only():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 5, 7, generator=g)
    labels = torch.full((2, 5), IGNORE_INDEX)
    labels[0, 1], labels[1, 4] = 3, 6
    expected = (
        -(torch.log_softmax(logits[0, 1], -1)[3] + torch.log_softmax(logits[1, 4], -1)[6]) / 2
    )
    assert torch.allclose(masked_lm_loss(logits, labels), expected)


def test_alignment_loss_is_binary_cross_entropy_over_two_logits():
    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0]])
    aligned = torch.tensor([1, 0])
    p1 = 1 / (1 + math.exp(-2.0))
    p0 = 1 / (1 + math.exp(-2.0))
    assert abs(alignment_loss(logits, aligned).item() - (-(math.log(p1) + math.log(p0)) / 2)) < 1e-6


def test_registered_losses_pass_the_contract():
    for name in ("vilbert-masked-lm", "vilbert-masked-region-kl", "vilbert-alignment"):
        check_loss(registries.losses.get(name)())


def test_plugin_contract():
    checked = check_plugin("colearn-plugin-vilbert")
    assert set(checked["losses"]) == {
        "vilbert-alignment",
        "vilbert-masked-lm",
        "vilbert-masked-region-kl",
    }
    assert checked["modalities"] == ["regions"]
    for kind, name in (
        ("methods", "vilbert"),
        ("methods", "vilbert-text"),
        ("fusions", "co-attention"),
        ("tasks", "vilbert-retrieval"),
        ("tasks", "vilbert-vqa"),
        ("tasks", "vilbert-pretraining"),
        ("datasets", "fashion-scenes"),
    ):
        assert registries[kind].entry(name).plugin == "colearn-plugin-vilbert"
