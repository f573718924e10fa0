"""LARS (You et al. 2017) as SimCLR uses it, and its ``optim.optimizer: lars`` recipe option.

For every parameter ``w`` with gradient ``g`` in a group with ``adapt=True``::

    g     <- g + weight_decay * w
    trust  = eta * ||w|| / ||g||    (1 when ||w|| or ||g|| is 0)
    v     <- momentum * v + lr * trust * g
    w     <- w - v

Groups with ``adapt=False`` (SimCLR: biases and batch-norm parameters, which also get no
weight decay) use ``trust = 1``, i.e. plain SGD with momentum. This is the update of SimCLR's
reference ``lars_optimizer.py`` with ``classic_momentum=True`` and no Nesterov.

Why not a library: ``lightly.utils.lars.LARS`` pulls in lightly and PyTorch Lightning;
``torchlars`` wraps another optimiser and needs a CUDA build. The update is a few lines.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

__all__ = ["LARS", "build_lars", "register_lars"]


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling with classic momentum (see the module docstring).

    Args:
        params: parameters or parameter groups; a group may set ``adapt`` (bool).
        lr: base learning rate (SimCLR: ``0.3 * batch_size / 256``).
        momentum: 0.9 in SimCLR.
        weight_decay: added to the gradient before the trust ratio (SimCLR: 1e-6).
        eta: trust coefficient (SimCLR: 0.001).
        adapt: default for groups that do not set it.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.001,
        adapt: bool = True,
    ) -> None:
        if lr < 0:
            raise ValueError(f"LARS: lr must be >= 0, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"LARS: momentum must be in [0, 1), got {momentum}")
        if weight_decay < 0:
            raise ValueError(f"LARS: weight_decay must be >= 0, got {weight_decay}")
        if eta <= 0:
            raise ValueError(f"LARS: eta must be > 0, got {eta}")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "eta": eta,
            "adapt": adapt,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum, decay, eta = (
                group["lr"],
                group["momentum"],
                group["weight_decay"],
                group["eta"],
            )
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if decay:
                    g = g.add(p, alpha=decay)
                scaled = lr
                if group["adapt"]:
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                    trust = torch.where(
                        (w_norm > 0) & (g_norm > 0), eta * w_norm / g_norm, torch.ones_like(w_norm)
                    )
                    scaled = trust * lr
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                v = state["momentum_buffer"]
                v.mul_(momentum).add_(g * scaled)
                p.sub_(v)
        return loss


def build_lars(groups: list[dict[str, Any]], cfg: Any) -> LARS:
    """The trainer's ``optim.optimizer: lars``: momentum is ``optim.betas[0]`` (the recipe has
    no separate momentum key); the ``no_decay`` group (biases, norms) gets no adaptation."""
    for group in groups:
        group.setdefault("adapt", group.get("name") != "no_decay")
    return LARS(groups, lr=cfg.lr, momentum=cfg.betas[0], weight_decay=cfg.weight_decay)


def register_lars() -> bool:
    """Make ``optim.optimizer: lars`` available when colearn's trainer is installed."""
    try:
        from colearn_core.train.optim import OPTIMIZERS, register_optimizer
    except ImportError:
        return False
    if OPTIMIZERS.get("lars") is not build_lars:
        register_optimizer("lars", build_lars)
    return True
