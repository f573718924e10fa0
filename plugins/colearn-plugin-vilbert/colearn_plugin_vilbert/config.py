"""JSON configs with defaults: merge, reject unknown keys, check types, name the bad key."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from colearn_core import ConfigError

__all__ = ["merge_config"]


def merge_config(
    config: Mapping[str, Any] | None, defaults: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """``defaults`` overridden by ``config``, recursively; unknown keys and wrong kinds fail.

    A default of ``None`` accepts anything; a dict default must be overridden by a dict; numbers
    accept ints for floats. Errors name the dotted key and what was expected.
    """
    out = copy.deepcopy(dict(defaults))
    for key, value in (config or {}).items():
        path = f"{where}.{key}"
        if key not in defaults:
            known = ", ".join(sorted(defaults))
            raise ConfigError(f"unknown config key {path!r}; known keys here: {known}")
        default = defaults[key]
        if isinstance(default, Mapping) and default:
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key {path!r} must be a mapping, got {value!r}")
            out[key] = merge_config(value, default, path)
        else:
            out[key] = _check_kind(value, default, path)
    return out


def _check_kind(value: Any, default: Any, path: str) -> Any:
    if default is None or value is None:
        return copy.deepcopy(value)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
        value = list(value) if ok else value
    elif isinstance(default, Mapping):  # an empty mapping default: free-form
        ok = isinstance(value, Mapping)
    else:
        ok = True
    if not ok:
        raise ConfigError(
            f"config key {path!r} must be of type {type(default).__name__}, got {value!r}"
        )
    return copy.deepcopy(value)
