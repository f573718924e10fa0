"""Training: YAML recipes, the Accelerate-based trainer and the ``colearn train`` command.

``from colearn_core.train import load_recipe, train`` then ``train(load_recipe("r.yaml"))``.
Names load lazily so that registering the command stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ConfigError",
    "NonFiniteLossError",
    "Recipe",
    "TrainResult",
    "Trainer",
    "load_recipe",
    "parse_recipe",
    "train",
]

_WHERE = {
    "ConfigError": "..errors",
    "NonFiniteLossError": ".trainer",
    "Recipe": ".recipe",
    "TrainResult": ".trainer",
    "Trainer": ".trainer",
    "load_recipe": ".recipe",
    "parse_recipe": ".recipe",
    "train": ".trainer",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name], __name__), name)
