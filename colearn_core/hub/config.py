"""``config.json``: what a saved model needs to be rebuilt, and its validation on load.

Schema (format version 1)::

    {
      "format_version": 1,                       # int; a newer one needs a newer colearn
      "library_name": "colearn",
      "colearn_version": "0.1.0",                # the colearn-core that wrote it
      "method": "clip",                          # registered method name
      "config": {...},                           # the method's own config (model.config)
      "modalities": {"image": {"modality": "image", "config": {...}}, ...},  # preprocessing
      "embed_dim": 512,                          # or null
      "required_plugins": {"colearn-plugin-clip": ">=0.1.0,<0.2", ...}
    }
"""

from __future__ import annotations

import importlib.metadata as md
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from .. import __version__
from ..errors import ConfigError, UnknownNameError
from ..registry import registries

__all__ = [
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "build_config",
    "check_plugins",
    "read_config",
    "required_plugins",
    "resolve_method",
    "validate_config",
    "version_range",
]

CONFIG_NAME = "config.json"
#: Bumped when a saved model can no longer be read by an older colearn.
FORMAT_VERSION = 1
_CORE = "colearn-core"
_NOT_PLUGINS = {_CORE, "__main__"}

# field -> (required, accepted types, description for the error)
_FIELDS: dict[str, tuple[bool, tuple[type, ...], str]] = {
    "format_version": (True, (int,), "an integer"),
    "method": (True, (str,), "a method name (string)"),
    "config": (True, (dict,), "an object (the method's config)"),
    "required_plugins": (False, (dict,), "an object {distribution: version range}"),
    "colearn_version": (False, (str,), "a version string"),
    "modalities": (False, (dict,), "an object {name: {modality, config}}"),
    "embed_dim": (False, (int, type(None)), "an integer or null"),
    "library_name": (False, (str,), "a string"),
}


def version_range(version: str) -> str:
    """The compatible range for a plugin version: same minor for 0.x, same major after."""
    try:
        v = Version(version)
    except InvalidVersion:
        return f"=={version}"
    upper = f"0.{v.minor + 1}" if v.major == 0 else f"{v.major + 1}"
    return f">={v.base_version},<{upper}"


def _installed_version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def required_plugins(model: Any) -> dict[str, str]:
    """Distributions providing the model's method, its registered submodule classes (encoders,
    fusions, losses) and its modalities, each with a compatible version range.

    A plugin registered by hand (no installed distribution) is recorded with an empty range.
    """
    owners: set[str] = set()
    method = getattr(type(model), "method_name", "")
    if method:
        owners.add(registries.methods.entry(method).plugin)
    classes: dict[type, str] = {}
    for kind in ("encoders", "fusions", "losses", "modalities"):
        for _, entry in registries[kind].items():
            if isinstance(entry.obj, type):
                classes.setdefault(entry.obj, entry.plugin)
    for module in model.modules():
        if type(module) in classes:
            owners.add(classes[type(module)])
    for modality in model.modalities.values():
        if type(modality) in classes:
            owners.add(classes[type(modality)])
        elif getattr(modality, "name", "") in registries.modalities:
            owners.add(registries.modalities.entry(modality.name).plugin)
    result = {}
    for owner in sorted(owners - _NOT_PLUGINS):
        version = _installed_version(owner)
        result[owner] = version_range(version) if version else ""
    return result


def build_config(model: Any) -> dict[str, Any]:
    """The ``config.json`` content for ``model`` (a registered :class:`~colearn_core.Method`)."""
    method = getattr(type(model), "method_name", "")
    if not method:
        raise ConfigError(
            f"{type(model).__name__} is not a registered method (method_name is empty); "
            "register it with a plugin's register_methods hook before saving it"
        )
    config = dict(model.config)
    try:
        json.dumps(config)
    except TypeError as exc:
        raise ConfigError(
            f"method {method!r}: model.config is not JSON-serialisable ({exc}); "
            "keep only numbers, strings, lists and dicts in it"
        ) from None
    embed_dim = config.get("embed_dim")
    return {
        "format_version": FORMAT_VERSION,
        "library_name": "colearn",
        "colearn_version": __version__,
        "method": method,
        "config": config,
        "modalities": {
            name: {"modality": getattr(m, "name", ""), "config": dict(getattr(m, "config", {}))}
            for name, m in model.modalities.items()
        },
        "embed_dim": embed_dim if isinstance(embed_dim, int) else None,
        "required_plugins": required_plugins(model),
    }


def validate_config(data: Any, source: str) -> dict[str, Any]:
    """Check the schema of a loaded ``config.json``; ``source`` names the file in errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
    version = data.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise ConfigError(
            f"{source}: field 'format_version' is {version}, but this colearn ({__version__}) "
            f"reads format versions up to {FORMAT_VERSION}; this model needs a newer colearn: "
            "pip install -U colearn-core"
        )
    for name, (required, types, what) in _FIELDS.items():
        if name not in data:
            if required:
                raise ConfigError(
                    f"{source}: missing field {name!r} ({what}); was this folder written by "
                    "colearn's save_pretrained?"
                )
            continue
        value = data[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ConfigError(
                f"{source}: field {name!r} must be {what}, got {type(value).__name__} {value!r:.80}"
            )
    if data["format_version"] < 1:
        raise ConfigError(
            f"{source}: field 'format_version' must be >= 1, got {data['format_version']}"
        )
    for dist, spec in data.get("required_plugins", {}).items():
        if not isinstance(spec, str):
            raise ConfigError(
                f"{source}: field 'required_plugins' entry {dist!r} must be a version range "
                f"string such as '>=0.1.0,<0.2', got {spec!r}"
            )
        try:
            SpecifierSet(spec)
        except InvalidSpecifier:
            raise ConfigError(
                f"{source}: field 'required_plugins' entry {dist!r} has an invalid version range "
                f"{spec!r}; use e.g. '>=0.1.0,<0.2'"
            ) from None
    return data


def read_config(folder: str | Path) -> dict[str, Any]:
    """Read and validate ``folder/config.json`` (schema only; see :func:`check_plugins`)."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise ConfigError(
            f"no {CONFIG_NAME} in {folder}: not a colearn model folder (save_pretrained writes "
            f"{CONFIG_NAME}, model.safetensors and README.md)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    return validate_config(data, str(path))


def _pip_hint(dist: str, spec: str) -> str:
    return f"pip install '{dist}{spec}'" if spec else f"pip install {dist}"


def check_plugins(config: Mapping[str, Any], source: str) -> None:
    """Every required plugin is installed in a compatible version, or a ConfigError says which
    ``pip install`` fixes it."""
    problems = []
    for dist, spec in config.get("required_plugins", {}).items():
        version = _installed_version(dist)
        if version is None:
            problems.append(f"{dist} is not installed: {_pip_hint(dist, spec)}")
        elif spec and not SpecifierSet(spec).contains(version, prereleases=True):
            problems.append(
                f"{dist} {version} is installed but the model needs {spec}: {_pip_hint(dist, spec)}"
            )
    if problems:
        raise ConfigError(
            f"{source}: field 'required_plugins': this model (method {config.get('method')!r}) "
            "needs plugins that are missing or incompatible. " + "; ".join(problems)
        )


def resolve_method(config: Mapping[str, Any], source: str) -> Any:
    """The registered method class named in ``config``, after checking the required plugins."""
    check_plugins(config, source)
    name = config["method"]
    try:
        return registries.methods.get(name)
    except UnknownNameError as exc:
        hint = ""
        if not config.get("required_plugins"):
            hint = f" If a plugin provides it: pip install colearn-plugin-{name.split('/')[0]}."
        raise ConfigError(f"{source}: field 'method': {exc}{hint}") from None
