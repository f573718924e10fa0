"""colearn core: interfaces, registries, plugin loading, trainer and Hub layer.

Importing this package imports no plugin; plugins load on the first registry lookup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

from .errors import (
    ColearnError,
    ConfigError,
    DuplicateNameError,
    InputError,
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

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence
    from typing import Any

    import torch

__all__ = [
    "Batch",
    "ColearnError",
    "ConfigError",
    "DuplicateNameError",
    "Encoder",
    "EncoderOutput",
    "Fusion",
    "InputError",
    "Loss",
    "Method",
    "Modality",
    "ModelOutput",
    "PluginLoadError",
    "Task",
    "UnknownNameError",
    "__version__",
    "from_hub",
    "get_registry",
    "hookimpl",
    "load_plugins",
    "plugin_report",
    "register_plugin",
    "registries",
]


def from_hub(
    repo_id_or_path: str | os.PathLike[str],
    revision: str | None = None,
    *,
    modalities: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    **hub_kwargs: Any,
) -> Method:
    """Load a model from a Hub repo id or a local folder, in eval mode (imports the Hub layer
    on first use); see :func:`colearn_core.hub.from_hub`."""
    from .hub.pretrained import from_hub as _from_hub

    return _from_hub(  # type: ignore[return-value]
        repo_id_or_path, revision, modalities=modalities, device=device, **hub_kwargs
    )
