"""Plugin discovery and loading: entry points in the group ``colearn``, loaded once, lazily.

A plugin that fails to import, raises inside a hook or registers a taken name is recorded and
skipped with a warning; nothing it registered is kept. Environment:

- ``COLEARN_STRICT_PLUGINS=1``: any such failure raises :class:`PluginLoadError` instead.
- ``COLEARN_LOAD_PLUGINS=a,b``: load only these distributions (or entry-point names);
  set but empty loads none.
- ``COLEARN_DISABLE_PLUGINS=a,b``: never load these.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import threading
import traceback
import warnings
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .errors import DuplicateNameError, PluginLoadError
from .registry import KINDS, registries

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginInfo",
    "get_plugin_manager",
    "load_plugins",
    "plugin_report",
    "register_plugin",
    "reset_plugins",
]

ENTRY_POINT_GROUP = "colearn"
CORE = "colearn-core"

_lock = threading.RLock()
_loaded = False
_pm: pluggy.PluginManager | None = None
_report: list[PluginInfo] = []


@dataclass
class PluginInfo:
    """What happened to one plugin: where it came from, what it registered, or why it failed."""

    name: str
    distribution: str | None = None
    version: str | None = None
    module: str | None = None
    registered: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "status": "loaded" if self.ok else "failed",
            "registered": self.registered,
            "error": self.error,
        }


def _env_list(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {item.strip() for item in raw.split(",") if item.strip()}


def _strict() -> bool:
    return os.environ.get("COLEARN_STRICT_PLUGINS", "").strip().lower() in {"1", "true", "yes"}


def get_plugin_manager() -> pluggy.PluginManager:
    """The pluggy manager (plugins loaded)."""
    load_plugins()
    assert _pm is not None
    return _pm


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _fail(info: PluginInfo, what: str, exc: BaseException) -> None:
    info.error = f"{what}: {type(exc).__name__}: {exc}"
    info.traceback = "".join(traceback.format_exception(exc))
    who = info.distribution or info.name
    message = f"colearn plugin {who!r} (entry point {info.name!r}) {info.error}"
    if _strict():
        raise PluginLoadError(message + " [COLEARN_STRICT_PLUGINS=1]") from exc
    warnings.warn(message + "; skipped. Run `colearn plugins` for details.", stacklevel=3)


def _register(
    pm: pluggy.PluginManager, plugin: object, info: PluginInfo, name: str | None = None
) -> None:
    """Register one plugin object; all of its names, or none of them."""
    try:
        pm.register(plugin, name=name or info.name)
    except Exception as exc:  # invalid hookimpl signatures and the like
        _fail(info, "has invalid hooks", exc)
        return
    staged: list[tuple[str, str, Any]] = []
    try:
        for kind in KINDS:
            caller = getattr(pm.hook, f"register_{kind}")
            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin:
                    continue

                def register(name: str, obj: Any, _kind: str = kind) -> None:
                    registries[_kind].check_name(name)
                    staged.append((_kind, name, obj))

                impl.function(register=register)
    except Exception as exc:
        pm.unregister(plugin)
        _fail(info, "raised during registration", exc)
        return
    owner = info.distribution or info.name
    done: list[tuple[str, str]] = []
    try:
        for kind, name, obj in staged:
            registries[kind].register(name, obj, plugin=owner)
            done.append((kind, name))
    except DuplicateNameError as exc:
        for kind, name in done:
            registries[kind].unregister(name)
        pm.unregister(plugin)
        _fail(info, "registered a duplicate name", exc)
        return
    for kind, name in done:
        info.registered.setdefault(kind, []).append(name)


def _entry_points() -> list[md.EntryPoint]:
    eps = md.entry_points(group=ENTRY_POINT_GROUP)
    seen: set[tuple[str, str]] = set()
    unique = []
    for ep in sorted(eps, key=lambda e: ((e.dist.name if e.dist else ""), e.name)):
        key = (ep.name, ep.value)
        if key not in seen:  # the same dist on sys.path twice
            seen.add(key)
            unique.append(ep)
    return unique


def load_plugins(*, force: bool = False) -> list[PluginInfo]:
    """Discover and load plugins once (again with ``force=True``); returns the report."""
    global _loaded, _pm, _report
    with _lock:
        if _loaded and not force:
            return list(_report)
        registries.clear()
        _pm = _new_manager()
        _report = []
        _loaded = True  # set early so lookups from inside hooks don't recurse
        try:
            from ._builtin import CORE_HOOK_MODULES

            core = PluginInfo(CORE, CORE, _version(CORE), ", ".join(CORE_HOOK_MODULES))
            _report.append(core)
            for module_name in CORE_HOOK_MODULES:
                _register(_pm, importlib.import_module(module_name), core, name=module_name)

            allow = _env_list("COLEARN_LOAD_PLUGINS")
            block = _env_list("COLEARN_DISABLE_PLUGINS") or set()
            for ep in _entry_points():
                dist = ep.dist.name if ep.dist else None
                names = {ep.name, dist} - {None}
                if allow is not None and not names & allow:
                    continue
                if names & block:
                    continue
                info = PluginInfo(ep.name, dist, ep.dist.version if ep.dist else None, ep.value)
                _report.append(info)
                try:
                    plugin = ep.load()
                except Exception as exc:
                    _fail(info, "failed to import", exc)
                    continue
                _register(_pm, plugin, info)
        except BaseException:
            _loaded = False  # strict failure: a later call retries from scratch
            raise
        return list(_report)


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def plugin_report() -> list[PluginInfo]:
    """Every plugin considered so far, loaded or failed."""
    return list(_report) if _loaded else load_plugins()


def register_plugin(plugin: ModuleType | object, name: str | None = None) -> PluginInfo:
    """Register a plugin object by hand (notebooks, tests of plugins in development)."""
    with _lock:
        load_plugins()
        assert _pm is not None
        info = PluginInfo(name or getattr(plugin, "__name__", repr(plugin)))
        info.module = getattr(plugin, "__name__", None)
        _report.append(info)
        _register(_pm, plugin, info)
        return info


def reset_plugins() -> None:
    """Forget everything loaded; the next lookup discovers plugins again."""
    global _loaded, _pm, _report
    with _lock:
        registries.clear()
        _loaded, _pm, _report = False, None, []
