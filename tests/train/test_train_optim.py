"""Optimiser parameter groups and the warmup + cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from colearn_core.errors import ConfigError
from colearn_core.registry import registries
from colearn_core.train.optim import build_optimizer, build_scheduler, lr_factor, param_groups
from colearn_core.train.recipe import OptimConfig


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.cls_token = nn.Parameter(torch.zeros(4))
        self.proj = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.bn = nn.BatchNorm1d(4)
        self.logit_scale = nn.Parameter(torch.tensor(2.0))
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)
        self.special = nn.Parameter(torch.zeros(3, 3))

    def no_weight_decay(self) -> set[str]:
        return {"special"}


def test_no_decay_on_biases_norms_1d_params_and_temperatures():
    model = Net()
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {g["name"]: g for g in param_groups(model, weight_decay=0.3)}
    decay = sorted(names[id(p)] for p in groups["decay"]["params"])
    no_decay = sorted(names[id(p)] for p in groups["no_decay"]["params"])
    assert decay == ["embed.weight", "proj.weight"]
    assert no_decay == [
        "bn.bias",
        "bn.weight",
        "cls_token",
        "logit_scale",
        "norm.bias",
        "norm.weight",
        "proj.bias",
        "special",
    ]
    assert groups["decay"]["weight_decay"] == 0.3 and groups["no_decay"]["weight_decay"] == 0.0


def test_toy_clip_temperature_is_not_decayed():
    model = registries.methods.get("toy-clip").from_config({"width": 16})
    optimizer = build_optimizer(model, OptimConfig(weight_decay=0.5))
    decayed = [p for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]]
    assert all(p is not model.logit_scale for p in decayed)
    assert decayed and all(p.ndim == 2 for p in decayed)
    counted = sum(len(g["params"]) for g in optimizer.param_groups)
    assert counted == len(list(model.parameters()))
    assert isinstance(optimizer, torch.optim.AdamW)


def test_unknown_optimizer_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown optimizer 'sgdx'; available: .*adamw"):
        build_optimizer(Net(), OptimConfig(optimizer="sgdx"))


def reference_lr(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


def test_warmup_then_cosine_as_the_scheduler_applies_it():
    param = nn.Parameter(torch.zeros(2))
    cfg = OptimConfig(lr=0.5, warmup_steps=4, weight_decay=0.0)
    optimizer = torch.optim.AdamW([param], lr=cfg.lr)
    scheduler = build_scheduler(optimizer, cfg, total_steps=20)
    seen = []
    for _ in range(20):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [0.5 * reference_lr(s, 4, 20) for s in range(20)]
    assert seen == pytest.approx(expected, abs=1e-12)
    assert seen[0] == pytest.approx(0.125) and seen[3] == pytest.approx(0.5)
    assert seen[4] == pytest.approx(0.5) and seen[-1] < 0.01

    # the state dict is plain numbers: nothing that needs pickled code
    def plain(x):
        if isinstance(x, dict):
            return all(isinstance(k, str) and plain(v) for k, v in x.items())
        if isinstance(x, list):
            return all(plain(v) for v in x)
        return x is None or isinstance(x, (bool, int, float, str))

    assert plain(scheduler.state_dict())


def test_constant_schedule_and_no_warmup():
    assert [lr_factor(s, warmup_steps=0, total_steps=5, schedule="constant") for s in range(5)] == [
        1.0
    ] * 5
    assert lr_factor(0, warmup_steps=0, total_steps=10, schedule="cosine") == 1.0
    assert lr_factor(10, warmup_steps=0, total_steps=10, schedule="cosine") == pytest.approx(0.0)
