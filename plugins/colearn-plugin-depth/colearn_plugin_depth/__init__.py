"""colearn depth plugin: the ``depth`` modality and the ``depth/vit`` encoder.

It also holds what the single-channel modalities share: :mod:`.vit` (ImageBind's modality trunk
on colearn-plugin-image's ViT, used by ``thermal/vit`` and ``audio/ast``) and
:mod:`.single_channel` (decoding and resizing of single-channel maps, ``SampleError``).
Heavy modules are imported inside the hooks, so importing this package registers names only.
"""

from __future__ import annotations

from colearn_core import hookimpl

__version__ = "0.1.0"
__all__ = ["register_encoders", "register_modalities"]


@hookimpl
def register_modalities(register):
    from .modality import DepthModality

    register("depth", DepthModality)


@hookimpl
def register_encoders(register):
    from .vit import DepthViT

    register("depth/vit", DepthViT)
