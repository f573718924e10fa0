"""The core's own registrations, made through the same hooks as any plugin."""

from __future__ import annotations

from .hookspecs import Register, hookimpl

#: Modules of colearn-core that implement hooks. They load with the core (even when
#: COLEARN_LOAD_PLUGINS selects no plugin) and are reported as the plugin "colearn-core".
#: A core subsystem that registers something adds its module here.
CORE_HOOK_MODULES: tuple[str, ...] = (
    "colearn_core._builtin",
    "colearn_core.train.cli",
    "colearn_core.losses",
    "colearn_core.hub.cli",
    "colearn_core.scaffold",
    "colearn_core.embed",
)


@hookimpl
def register_fusions(register: Register) -> None:
    from .fusion import LateFusion

    register("late", LateFusion)


@hookimpl
def register_commands(register: Register) -> None:
    from .cli import PLUGINS_COMMAND

    register("plugins", PLUGINS_COMMAND)
