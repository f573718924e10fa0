"""Logistic regression and kNN against small hand-made cases."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from colearn_plugin_simclr.probes import (
    accuracy,
    fit_logistic_regression,
    knn_predict,
    select_l2,
)


def separable(n_per_class: int = 30, seed: int = 0):
    """Three well-separated clusters in 5-D (linearly separable)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor(
        [[4.0, 0, 0, 1, 0], [0, 4.0, 0, 0, 1], [0, 0, 4.0, -1, 0]], dtype=torch.float32
    )
    x = torch.cat([c + 0.5 * torch.randn(n_per_class, 5, generator=g) for c in centres])
    y = torch.arange(3).repeat_interleave(n_per_class)
    return x, y


def test_linearly_separable_data_is_classified_perfectly():
    x, y = separable()
    tx, ty = separable(seed=1)
    probe = fit_logistic_regression(x, y, l2=1e-4)
    assert accuracy(probe.predict(x), y) == 1.0
    assert accuracy(probe.predict(tx), ty) == 1.0


def test_xor_is_not_linearly_separable():
    x = torch.tensor([[0.0, 0], [1, 1], [0, 1], [1, 0]]).repeat(10, 1)
    y = torch.tensor([0, 0, 1, 1]).repeat(10)
    probe = fit_logistic_regression(x, y, l2=1e-3)
    assert accuracy(probe.predict(x), y) <= 0.75


def test_solution_is_the_regularised_optimum():
    # At the optimum the gradient of mean CE + l2/2 ||W||^2 vanishes (KKT for a smooth
    # convex problem): check it with autograd on the returned parameters.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=g)
    y = (x[:, 0] + 0.5 * torch.randn(200, generator=g) > 0).long() + (x[:, 1] > 1).long()
    l2 = 1e-2
    probe = fit_logistic_regression(
        x, y, l2=l2, max_iter=1000, tolerance=1e-10, dtype=torch.float64
    )
    w = probe.weight.clone().requires_grad_(True)
    b = probe.bias.clone().requires_grad_(True)
    z = (x.double() - probe.mean) / probe.std
    loss = F.cross_entropy(z @ w.T + b, y) + 0.5 * l2 * w.square().sum()
    gw, gb = torch.autograd.grad(loss, (w, b))
    assert gw.abs().max() < 1e-6 and gb.abs().max() < 1e-6
    assert probe.logits(x).shape == (200, 3)


def test_select_l2_prefers_less_regularisation_on_clean_data():
    x, y = separable(n_per_class=40)
    best, scores = select_l2(x, y, [1e-4, 100.0], val_fraction=0.25)
    assert set(scores) == {1e-4, 100.0}
    assert scores[1e-4] == 1.0
    assert best == 1e-4 or scores[100.0] == 1.0


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="labels must be"):
        fit_logistic_regression(torch.zeros(4, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN"):
        fit_logistic_regression(torch.full((2, 2), float("nan")), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="weighting"):
        knn_predict(torch.zeros(2, 2), torch.zeros(2), torch.zeros(1, 2), weighting="x")


# --- kNN ---------------------------------------------------------------------------------


def test_knn_on_hand_made_points():
    # Class 0 along +x, class 1 along +y; cosine similarity ignores length.
    train = torch.tensor([[1.0, 0.0], [2.0, 0.1], [5.0, -0.2], [0.0, 1.0], [0.1, 3.0]])
    labels = torch.tensor([0, 0, 0, 1, 1])
    test = torch.tensor([[10.0, 1.0], [0.2, 7.0], [1.0, 0.9]])
    for weighting in ("distance", "majority"):
        pred = knn_predict(train, labels, test, k=1, weighting=weighting)
        assert pred.tolist() == [0, 1, 0]


def test_weighted_vote_differs_from_majority_where_it_should():
    # Query along +y. Its 3 neighbours: one of class 1 almost identical (cos ~1), two of
    # class 0 at 60 degrees (cos 0.5). Majority says 0; InstDisc weighting with T=0.07 says 1
    # (exp(1/0.07) >> 2 exp(0.5/0.07)).
    train = torch.tensor([[0.01, 1.0], [0.866, 0.5], [-0.866, 0.5], [0.0, -1.0]])
    labels = torch.tensor([1, 0, 0, 2])
    q = torch.tensor([[0.0, 1.0]])
    assert knn_predict(train, labels, q, k=3, weighting="majority").item() == 0
    assert knn_predict(train, labels, q, k=3, weighting="distance").item() == 1
    # With a high temperature the weights flatten and the majority wins again.
    assert knn_predict(train, labels, q, k=3, weighting="distance", temperature=10.0).item() == 0


def test_majority_ties_go_to_the_nearer_class():
    train = torch.tensor([[1.0, 0.0], [1.0, 0.3], [1.0, -0.5], [1.0, 0.8]])
    labels = torch.tensor([1, 0, 0, 1])  # ranks for query +x: 1(cls1), 2(cls0), 3(cls0), 4(cls1)
    q = torch.tensor([[1.0, 0.0]])
    # Rank sums: class 1 -> 1 + 4 = 5, class 0 -> 2 + 3 = 5: a full tie; k=2 breaks by rank.
    assert knn_predict(train, labels, q, k=2, weighting="majority").item() == 1
    assert knn_predict(train, labels, q, k=3, weighting="majority").item() == 0


def test_knn_chunks_and_k_larger_than_the_bank():
    x, y = separable()
    tx, ty = separable(seed=2)
    a = knn_predict(x, y, tx, k=500, chunk_size=7)
    b = knn_predict(x, y, tx, k=90, chunk_size=1000)
    assert torch.equal(a, b)  # k is capped at the 90 training points
    assert accuracy(knn_predict(x, y, tx, k=5), ty) == 1.0
