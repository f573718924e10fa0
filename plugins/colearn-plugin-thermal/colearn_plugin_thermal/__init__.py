"""colearn thermal plugin: the ``thermal`` modality and the ``thermal/vit`` encoder.

The ViT trunk and single-channel decoding come from colearn-plugin-depth. Heavy modules are
imported inside the hooks, so importing this package registers names only.
"""

from __future__ import annotations

from colearn_core import hookimpl

__version__ = "0.1.0"
__all__ = ["register_encoders", "register_modalities"]


@hookimpl
def register_modalities(register):
    from .thermal import ThermalModality

    register("thermal", ThermalModality)


@hookimpl
def register_encoders(register):
    from .thermal import ThermalViT

    register("thermal/vit", ThermalViT)
