"""The Hugging Face Hub layer: ``save_pretrained``, ``push_to_hub``, ``from_hub``, model cards
and the model zoo. Submodules import ``huggingface_hub`` only when used."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "FORMAT_VERSION",
    "WeightsError",
    "build_config",
    "download",
    "from_hub",
    "load_pretrained",
    "make_card",
    "push_folder",
    "push_to_hub",
    "read_config",
    "resolve_model_dir",
    "save_pretrained",
]

_WHERE = {
    "FORMAT_VERSION": "config",
    "build_config": "config",
    "read_config": "config",
    "make_card": "card",
}


def __getattr__(name: str) -> Any:
    if name in __all__:
        module = importlib.import_module(f".{_WHERE.get(name, 'pretrained')}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
