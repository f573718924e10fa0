"""Frozen-feature evaluation: multinomial logistic regression (linear probe) and kNN.

:func:`fit_logistic_regression` fits ``softmax(x W + b)`` on standardised features by
minimising ``mean cross-entropy + l2/2 * ||W||^2`` with full-batch L-BFGS (strong-Wolfe line
search): the same convex problem as scikit-learn's ``LogisticRegression(C=1/(l2 n))``
and deterministic, with no extra dependency. :func:`knn_predict` is cosine kNN with
InstDisc's weighted vote (Wu et al. 2018: each of the k neighbours votes
``exp(similarity / temperature)`` for its class) or a plain majority vote.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "LogisticRegression",
    "accuracy",
    "fit_logistic_regression",
    "knn_predict",
    "select_l2",
]


def _check_xy(x: Tensor, y: Tensor, what: str) -> None:
    if x.ndim != 2:
        raise ValueError(f"{what}: features must be (N, D), got shape {tuple(x.shape)}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"{what}: labels must be (N,) with N = {x.shape[0]} (one per feature row), "
            f"got shape {tuple(y.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{what}: no examples")
    if not torch.isfinite(x).all():
        raise ValueError(f"{what}: features contain NaN or inf")


@dataclass
class LogisticRegression:
    """A fitted probe: standardisation (``mean``, ``std``) then ``x @ weight.T + bias``."""

    weight: Tensor  # (K, D)
    bias: Tensor  # (K,)
    mean: Tensor  # (D,)
    std: Tensor  # (D,)
    l2: float
    iterations: int

    def logits(self, x: Tensor) -> Tensor:
        """``(N, D)`` features -> ``(N, K)`` class scores."""
        z = (x.to(self.mean) - self.mean) / self.std
        return z @ self.weight.T + self.bias

    def predict(self, x: Tensor) -> Tensor:
        """``(N, D)`` -> ``(N,)`` predicted class indices."""
        return self.logits(x).argmax(dim=1)


def fit_logistic_regression(
    x: Tensor,
    y: Tensor,
    *,
    l2: float = 1e-4,
    num_classes: int | None = None,
    max_iter: int = 500,
    tolerance: float = 1e-6,
    dtype: torch.dtype = torch.float32,
) -> LogisticRegression:
    """Fit a multinomial logistic regression (see the module docstring).

    Args:
        x: ``(N, D)`` features; y: ``(N,)`` integer labels in ``[0, K)``.
        l2: weight of ``||W||^2 / 2`` added to the mean cross-entropy (bias not penalised).
        num_classes: K (default ``y.max() + 1``).
        max_iter: L-BFGS iterations at most; tolerance: stop when the gradient's largest
            entry falls below it.
        dtype: the precision of the fit (float64 for tight tolerances).
    """
    _check_xy(x, y, "logistic regression")
    if l2 < 0:
        raise ValueError(f"logistic regression: l2 must be >= 0, got {l2}")
    x = x.detach().to(dtype)
    y = y.detach().long().to(x.device)
    k = int(num_classes if num_classes is not None else int(y.max()) + 1)
    mean = x.mean(dim=0)
    std = x.std(dim=0).clamp_min(1e-8)  # constant features (e.g. dead units) stay 0
    z = (x - mean) / std
    weight = torch.zeros(k, x.shape[1], dtype=x.dtype, device=x.device, requires_grad=True)
    bias = torch.zeros(k, dtype=x.dtype, device=x.device, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=tolerance,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z @ weight.T + bias, y) + 0.5 * l2 * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():  # callers (the trainer's evaluation) may run under no_grad
        optimizer.step(closure)
    iterations = int(optimizer.state[weight].get("n_iter", 0))
    return LogisticRegression(weight.detach(), bias.detach(), mean, std, float(l2), iterations)


def accuracy(predictions: Tensor, labels: Tensor) -> float:
    """Fraction of ``predictions`` equal to ``labels``."""
    if predictions.shape != labels.shape:
        raise ValueError(
            f"accuracy: shapes differ: {tuple(predictions.shape)} vs {tuple(labels.shape)}"
        )
    return float((predictions.cpu() == labels.cpu().long()).double().mean())


def select_l2(
    x: Tensor,
    y: Tensor,
    candidates: Sequence[float],
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    max_iter: int = 500,
) -> tuple[float, dict[float, float]]:
    """Pick the ``l2`` with the best accuracy on a random ``val_fraction`` of ``(x, y)`` held
    out from fitting. Returns the choice and every candidate's validation accuracy."""
    if len(candidates) == 1:
        return float(candidates[0]), {}
    _check_xy(x, y, "l2 selection")
    n = x.shape[0]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(round(n * val_fraction)))
    val, fit = order[:n_val], order[n_val:]
    k = int(y.max()) + 1
    scores: dict[float, float] = {}
    for l2 in candidates:
        probe = fit_logistic_regression(
            x[fit], y[fit], l2=float(l2), num_classes=k, max_iter=max_iter
        )
        scores[float(l2)] = accuracy(probe.predict(x[val]), y[val])
    best = max(scores, key=lambda c: (scores[c], c))  # ties: the stronger regulariser
    return best, scores


@torch.no_grad()
def knn_predict(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    *,
    k: int = 200,
    weighting: str = "distance",
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> Tensor:
    """Cosine kNN: the class of each test row from its ``k`` most similar training rows.

    ``weighting="distance"``: InstDisc's vote, neighbour j adds ``exp(s_j / temperature)`` to
    its class (s = cosine similarity). ``"majority"``: one vote each; a tie goes to the class
    whose neighbours have the smaller sum of similarity ranks (nearer on the whole).
    Computed in blocks of ``chunk_size`` test rows.
    """
    _check_xy(train_x, train_y, "kNN training set")
    if test_x.ndim != 2 or test_x.shape[1] != train_x.shape[1]:
        raise ValueError(
            f"kNN: test features must be (M, {train_x.shape[1]}), got {tuple(test_x.shape)}"
        )
    if weighting not in ("distance", "majority"):
        raise ValueError(f"kNN: weighting must be 'distance' or 'majority', got {weighting!r}")
    if k < 1:
        raise ValueError(f"kNN: k must be >= 1, got {k}")
    k = min(k, train_x.shape[0])
    classes = int(num_classes if num_classes is not None else int(train_y.max()) + 1)
    bank = F.normalize(train_x.float(), dim=1)
    labels = train_y.long().to(bank.device)
    out = []
    for start in range(0, test_x.shape[0], chunk_size):
        q = F.normalize(test_x[start : start + chunk_size].float().to(bank.device), dim=1)
        sim, idx = (q @ bank.T).topk(k, dim=1)  # (c, k), most similar first
        neighbours = labels[idx]  # (c, k)
        if weighting == "distance":
            votes = (sim.double() / temperature).exp()
        else:
            # One vote each plus a bonus < 1/k falling with rank: it only ever breaks ties.
            rank = torch.arange(k, device=sim.device, dtype=torch.float64)
            votes = (1.0 + (k - rank) / (k * k + 1.0)).expand(q.shape[0], k)
        scores = torch.zeros(q.shape[0], classes, dtype=torch.float64, device=q.device)
        scores.scatter_add_(1, neighbours, votes)
        out.append(scores.argmax(dim=1))
    return torch.cat(out)
