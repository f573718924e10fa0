"""colearn core: interfaces, registries, plugin loading, trainer and Hub layer.

Importing this package imports no plugin; plugins load on the first registry lookup.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (
    ColearnError,
    ConfigError,
    DuplicateNameError,
    PluginLoadError,
    UnknownNameError,
)
from .hookspecs import hookimpl
from .interfaces import (
    Batch,
    Encoder,
    EncoderOutput,
    Fusion,
    Loss,
    Method,
    Modality,
    ModelOutput,
    Task,
)
from .plugins import load_plugins, plugin_report, register_plugin
from .registry import get_registry, registries

__all__ = [
    "Batch",
    "ColearnError",
    "ConfigError",
    "DuplicateNameError",
    "Encoder",
    "EncoderOutput",
    "Fusion",
    "Loss",
    "Method",
    "Modality",
    "ModelOutput",
    "PluginLoadError",
    "Task",
    "UnknownNameError",
    "__version__",
    "get_registry",
    "hookimpl",
    "load_plugins",
    "plugin_report",
    "register_plugin",
    "registries",
]
