"""pluggy hook specifications: one hook per registry, each handed a ``register`` callback.

A plugin implements any of these with ``@colearn_core.hookimpl``::

    @hookimpl
    def register_encoders(register):
        register("image/vit", VisionTransformer)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

__all__ = ["PROJECT", "hookimpl", "hookspec", "Register"]

PROJECT = "colearn"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: ``register(name, obj)``: the callback each hook receives.
Register = Callable[[str, Any], None]


@hookspec
def register_modalities(register: Register) -> None:
    """Register :class:`~colearn_core.interfaces.Modality` subclasses by name (``"image"``)."""


@hookspec
def register_encoders(register: Register) -> None:
    """Register :class:`~colearn_core.interfaces.Encoder` subclasses as ``"<modality>/<arch>"``."""


@hookspec
def register_fusions(register: Register) -> None:
    """Register :class:`~colearn_core.interfaces.Fusion` subclasses (``"late"``, ...)."""


@hookspec
def register_losses(register: Register) -> None:
    """Register :class:`~colearn_core.interfaces.Loss` subclasses (``"infonce"``, ...)."""


@hookspec
def register_tasks(register: Register) -> None:
    """Register :class:`~colearn_core.interfaces.Task` subclasses (``"zero-shot"``, ...)."""


@hookspec
def register_methods(register: Register) -> None:
    """Register :class:`~colearn_core.interfaces.Method` subclasses (``"clip"``, ...)."""


@hookspec
def register_commands(register: Register) -> None:
    """Register CLI sub-commands: ``register("convert", Command(...))``."""


@hookspec
def register_datasets(register: Register) -> None:
    """Register dataset builders: ``register("fashion-mnist", build_fn)``."""
