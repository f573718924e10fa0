"""Exception types. Every colearn error derives from :class:`ColearnError`."""

from __future__ import annotations

__all__ = [
    "ColearnError",
    "ConfigError",
    "DuplicateNameError",
    "InputError",
    "PluginLoadError",
    "UnknownNameError",
]


class ColearnError(Exception):
    """Base class of every error colearn raises on purpose."""


class ConfigError(ColearnError, ValueError):
    """A recipe, config or argument is invalid; the message names the key and the fix."""


class InputError(ColearnError, ValueError):
    """A raw sample cannot be used; the message names the modality, the example index and
    what was expected. Modality plugins raise this (or a subclass) for bad input."""


class UnknownNameError(ColearnError, LookupError):
    """A registry lookup found nothing under that name."""


class DuplicateNameError(ColearnError):
    """Two plugins registered the same name in one registry."""


class PluginLoadError(ColearnError):
    """A plugin failed to import or to register (raised in strict mode)."""
