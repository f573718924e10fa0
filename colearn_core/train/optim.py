"""Optimisers and learning-rate schedules.

Weight decay is applied only to weight matrices: every parameter with fewer than two
dimensions (biases, norm scales, 1-D embeddings such as a class token, temperatures like
``logit_scale``) and every parameter of a normalisation layer goes to a group without decay.
A method can name more parameters to exempt with ``no_weight_decay() -> set[str]`` (timm's
convention).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .recipe import OptimConfig

__all__ = [
    "OPTIMIZERS",
    "build_optimizer",
    "build_scheduler",
    "lr_factor",
    "param_groups",
    "register_optimizer",
]

_NORMS = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.modules.batchnorm._NormBase,  # BatchNorm*, InstanceNorm*, SyncBatchNorm
)
_NO_DECAY_NAMES = ("logit_scale", "logit_bias", "temperature")


def _exempt(model: nn.Module) -> set[str]:
    names = set(getattr(model, "no_weight_decay", lambda: ())())
    for module_name, module in model.named_modules():
        if isinstance(module, _NORMS) or type(module).__name__.endswith("RMSNorm"):
            for param_name, _ in module.named_parameters(recurse=False):
                names.add(f"{module_name}.{param_name}" if module_name else param_name)
    return names


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups, ``decay`` and ``no_decay`` (see the module docstring); frozen parameters
    (``requires_grad=False``) are left out."""
    exempt = _exempt(model)
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        leaf = name.rsplit(".", 1)[-1]
        if param.ndim < 2 or name in exempt or leaf in _NO_DECAY_NAMES or leaf == "bias":
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]
    return [g for g in groups if g["params"]]


def _adamw(groups: list[dict[str, Any]], cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)


#: name -> ``build(param_groups, optim_config) -> Optimizer``. Add more with
#: :func:`register_optimizer` (e.g. LARS for SimCLR).
OPTIMIZERS: dict[str, Callable[[list[dict[str, Any]], OptimConfig], torch.optim.Optimizer]] = {
    "adamw": _adamw,
}


def register_optimizer(
    name: str, build: Callable[[list[dict[str, Any]], OptimConfig], torch.optim.Optimizer]
) -> None:
    """Make ``optim.optimizer: <name>`` available to recipes."""
    if name in OPTIMIZERS and OPTIMIZERS[name] is not build:
        raise ConfigError(f"optimizer {name!r} is already registered")
    OPTIMIZERS[name] = build


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """The recipe's optimiser over :func:`param_groups`."""
    try:
        build = OPTIMIZERS[cfg.optimizer]
    except KeyError:
        raise ConfigError(
            f"key 'optim.optimizer': unknown optimizer {cfg.optimizer!r}; "
            f"available: {', '.join(sorted(OPTIMIZERS))}"
        ) from None
    groups = param_groups(model, cfg.weight_decay)
    if not groups:
        raise ConfigError("the model has no trainable parameters")
    return build(groups, cfg)


def lr_factor(step: int, *, warmup_steps: int, total_steps: int, schedule: str) -> float:
    """Multiplier of the base lr for optimiser step ``step`` (0-based).

    Linear warmup ``(step + 1) / warmup_steps``, then constant or a cosine from 1 down to 0
    at ``total_steps``.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` over :func:`lr_factor`. Its state dict holds only numbers (the lambda
    is a plain function), so it saves and loads without pickling code."""

    def factor(step: int) -> float:
        return lr_factor(
            step,
            warmup_steps=cfg.warmup_steps,
            total_steps=total_steps,
            schedule=cfg.schedule,
        )

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
