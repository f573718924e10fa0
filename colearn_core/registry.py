"""Registries, one per noun. Each entry remembers the plugin that registered it."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import DuplicateNameError, UnknownNameError

__all__ = ["KINDS", "Entry", "Registry", "registries", "get_registry"]

T = TypeVar("T")

#: The registry kinds, in hook order; ``register_<kind>`` is the hook for each.
KINDS: tuple[str, ...] = (
    "modalities",
    "encoders",
    "fusions",
    "losses",
    "tasks",
    "methods",
    "commands",
    "datasets",
)
_SINGULAR = {k: k[:-1] if k.endswith("s") else k for k in KINDS}
_SINGULAR["modalities"] = "modality"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]*$")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object and the plugin (distribution) it came from."""

    name: str
    obj: T
    plugin: str


class Registry(Generic[T]):
    """Name -> object for one kind. Lookups load plugins on first use."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.singular = _SINGULAR.get(kind, kind)
        self._entries: dict[str, Entry[T]] = {}

    def check_name(self, name: str) -> None:
        """Raise ValueError unless ``name`` is a valid registry name."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(
                f"invalid {self.singular} name {name!r}: use letters, digits and _ . - /"
            )

    def register(self, name: str, obj: T, *, plugin: str = "__main__") -> None:
        """Add ``obj`` under ``name``; a taken name is an error naming both plugins."""
        self.check_name(name)
        if name in self._entries:
            other = self._entries[name].plugin
            raise DuplicateNameError(
                f"{self.singular} {name!r} registered by plugin {plugin!r} is already "
                f"registered by plugin {other!r}; uninstall or disable one of them "
                f"(COLEARN_DISABLE_PLUGINS={plugin})"
            )
        if hasattr(obj, "method_name") and self.kind == "methods":
            obj.method_name = name  # type: ignore[attr-defined]
        self._entries[name] = Entry(name, obj, plugin)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (used for rollback and tests)."""
        self._entries.pop(name, None)

    def _ensure_loaded(self) -> None:
        from .plugins import load_plugins

        load_plugins()

    def entry(self, name: str) -> Entry[T]:
        """The entry for ``name``; an unknown name lists close matches and installed plugins."""
        self._ensure_loaded()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self._unknown_message(name)) from None

    def get(self, name: str) -> T:
        """The object registered under ``name``."""
        return self.entry(name).obj

    def names(self) -> list[str]:
        """All registered names, sorted."""
        self._ensure_loaded()
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, Entry[T]]]:
        self._ensure_loaded()
        return iter(sorted(self._entries.items()))

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._entries

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._entries)

    def _unknown_message(self, name: str) -> str:
        from .plugins import plugin_report

        close = difflib.get_close_matches(str(name), list(self._entries), n=3, cutoff=0.5)
        lines = [f"unknown {self.singular} {name!r}."]
        if close:
            lines.append("Did you mean: " + ", ".join(repr(c) for c in close) + "?")
        known = ", ".join(sorted(self._entries)) or "none"
        lines.append(f"Registered {self.kind}: {known}.")
        report = plugin_report()
        loaded = [f"{p.distribution or p.name} {p.version or ''}".strip() for p in report if p.ok]
        failed = [f"{p.distribution or p.name} ({p.error})" for p in report if not p.ok]
        lines.append("Installed plugins: " + (", ".join(loaded) or "none") + ".")
        if failed:
            lines.append("Plugins that failed to load: " + "; ".join(failed) + ".")
        lines.append("Run `colearn plugins` for details.")
        return " ".join(lines)


class _Registries:
    """All registries as attributes: ``registries.encoders.get("image/vit")``."""

    def __init__(self) -> None:
        for kind in KINDS:
            setattr(self, kind, Registry[Any](kind))

    def __getitem__(self, kind: str) -> Registry[Any]:
        if kind not in KINDS:
            raise KeyError(f"unknown registry {kind!r}; registries: {', '.join(KINDS)}")
        return getattr(self, kind)

    def clear(self) -> None:
        for kind in KINDS:
            self[kind]._entries.clear()

    modalities: Registry[Any]
    encoders: Registry[Any]
    fusions: Registry[Any]
    losses: Registry[Any]
    tasks: Registry[Any]
    methods: Registry[Any]
    commands: Registry[Any]
    datasets: Registry[Any]


registries = _Registries()


def get_registry(kind: str) -> Registry[Any]:
    """The registry for ``kind`` (one of :data:`KINDS`)."""
    return registries[kind]
