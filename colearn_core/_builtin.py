"""The core's own registrations, made through the same hooks as any plugin."""

from __future__ import annotations

from .hookspecs import Register, hookimpl


@hookimpl
def register_fusions(register: Register) -> None:
    from .fusion import LateFusion

    register("late", LateFusion)


@hookimpl
def register_commands(register: Register) -> None:
    from .cli import PLUGINS_COMMAND

    register("plugins", PLUGINS_COMMAND)
