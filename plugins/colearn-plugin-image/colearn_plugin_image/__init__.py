"""colearn-plugin-image: the ``image`` modality and the ``image/vit`` and ``image/resnet``
encoders.

Importing this package imports nothing heavy; the hooks import the modules that define what
they register when the plugin is loaded.
"""

from __future__ import annotations

from colearn_core import hookimpl

__version__ = "0.1.0"
__all__ = ["register_encoders", "register_modalities"]


@hookimpl
def register_modalities(register):  # type: ignore[no-untyped-def]
    from .modality import ImageModality

    register("image", ImageModality)


@hookimpl
def register_encoders(register):  # type: ignore[no-untyped-def]
    from .resnet import ResNetEncoder
    from .vit import VisionTransformer

    register("image/vit", VisionTransformer)
    register("image/resnet", ResNetEncoder)
