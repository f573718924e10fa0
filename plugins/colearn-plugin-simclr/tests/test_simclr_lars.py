"""LARS against its formula (SimCLR's lars_optimizer.py, classic momentum)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from colearn_plugin_simclr.lars import LARS, build_lars


def reference_steps(w, grads, *, lr, momentum, decay, eta, adapt):
    """The update written out with Python floats, one step per gradient."""
    w = [float(v) for v in w]
    v = [0.0] * len(w)
    for g in grads:
        g = [float(gi) + decay * wi for gi, wi in zip(g, w)]
        w_norm = sum(x * x for x in w) ** 0.5
        g_norm = sum(x * x for x in g) ** 0.5
        trust = eta * w_norm / g_norm if adapt and w_norm > 0 and g_norm > 0 else 1.0
        v = [momentum * vi + lr * trust * gi for vi, gi in zip(v, g)]
        w = [wi - vi for wi, vi in zip(w, v)]
    return w


@pytest.mark.parametrize("adapt", [True, False])
def test_matches_the_formula_over_three_steps(adapt):
    w0 = torch.tensor([0.5, -1.0, 2.0])
    grads = [
        torch.tensor([0.1, 0.2, -0.3]),
        torch.tensor([1.0, -2.0, 0.5]),
        torch.tensor([0.0, 0.3, 0.1]),
    ]
    p = torch.nn.Parameter(w0.clone())
    opt = LARS([{"params": [p], "adapt": adapt}], lr=0.8, momentum=0.9, weight_decay=0.01, eta=0.02)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    expected = reference_steps(w0, grads, lr=0.8, momentum=0.9, decay=0.01, eta=0.02, adapt=adapt)
    assert p.detach().tolist() == pytest.approx(expected, rel=1e-5)


def test_trust_ratio_is_one_for_a_zero_parameter():
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.tensor([1.0, 2.0, 3.0])
    LARS([p], lr=0.1, momentum=0.0).step()
    assert p.detach().tolist() == pytest.approx([-0.1, -0.2, -0.3])


def test_layerwise_scale_makes_the_step_size_independent_of_the_gradient_scale():
    # trust = eta ||w|| / ||g||, so lr * trust * g has norm lr * eta * ||w|| for any ||g||.
    for scale in (1e-3, 1.0, 1e3):
        p = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
        p.grad = torch.tensor([1.0, -1.0]) * scale
        LARS([p], lr=2.0, momentum=0.0, eta=0.01).step()
        step = (torch.tensor([3.0, 4.0]) - p.detach()).norm()
        assert step.item() == pytest.approx(2.0 * 0.01 * 5.0, rel=1e-5)


def test_build_lars_from_the_trainers_groups():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    groups = [
        {"params": [model[0].weight], "weight_decay": 1e-6, "name": "decay"},
        {
            "params": [model[0].bias, model[1].weight, model[1].bias],
            "weight_decay": 0.0,
            "name": "no_decay",
        },
    ]
    cfg = SimpleNamespace(lr=0.3, betas=(0.8, 0.999), weight_decay=1e-6)
    opt = build_lars(groups, cfg)
    assert [g["adapt"] for g in opt.param_groups] == [True, False]
    assert all(g["momentum"] == 0.8 for g in opt.param_groups)
    assert opt.param_groups[1]["weight_decay"] == 0.0


def test_registered_as_a_recipe_optimizer():
    optim = pytest.importorskip("colearn_core.train.optim")
    from colearn_core import registries

    registries.methods.get("simclr")  # loads the plugins, which registers lars
    assert optim.OPTIMIZERS["lars"] is build_lars


@pytest.mark.parametrize(
    "kwargs", [{"lr": -1.0}, {"lr": 0.1, "momentum": 1.0}, {"lr": 0.1, "eta": 0.0}]
)
def test_bad_hyperparameters_are_rejected(kwargs):
    with pytest.raises(ValueError, match="LARS"):
        LARS([torch.nn.Parameter(torch.ones(1))], **kwargs)
