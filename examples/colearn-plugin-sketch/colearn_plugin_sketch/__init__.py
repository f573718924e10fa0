"""colearn-plugin-sketch: the ``sketch`` modality (edge maps of images) and ``sketch/cnn``.

An example of a third-party plugin: it lives outside colearn's own ``plugins/`` folder, is
found through its ``colearn`` entry point, and depends on nothing but colearn-core, torch,
numpy and Pillow. Hooks import the modules they register when the plugin loads.
"""

from __future__ import annotations

from colearn_core import hookimpl

__version__ = "0.1.0"
__all__ = ["register_encoders", "register_modalities"]


@hookimpl
def register_modalities(register):  # type: ignore[no-untyped-def]
    from .modality import SketchModality

    register("sketch", SketchModality)


@hookimpl
def register_encoders(register):  # type: ignore[no-untyped-def]
    from .encoder import SketchCNN

    register("sketch/cnn", SketchCNN)
