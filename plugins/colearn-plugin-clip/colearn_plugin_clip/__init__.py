"""colearn-plugin-clip: the ``clip`` method, the ``zero-shot-classification`` and ``retrieval``
tasks, the ``fashion-mnist-captions`` dataset builder and the command ``colearn convert``
with its ``open_clip`` converter.

Importing this package imports nothing heavy; each hook imports what it registers.
"""

from __future__ import annotations

from colearn_core import hookimpl

__version__ = "0.1.0"
__all__ = ["register_commands", "register_datasets", "register_methods", "register_tasks"]


@hookimpl
def register_methods(register):  # type: ignore[no-untyped-def]
    from .model import CLIP

    register("clip", CLIP)


@hookimpl
def register_tasks(register):  # type: ignore[no-untyped-def]
    from .tasks import Retrieval, ZeroShotClassification

    register("zero-shot-classification", ZeroShotClassification)
    register("retrieval", Retrieval)


@hookimpl
def register_datasets(register):  # type: ignore[no-untyped-def]
    from .data import build_fashion_mnist_captions

    register("fashion-mnist-captions", build_fashion_mnist_captions)


@hookimpl
def register_commands(register):  # type: ignore[no-untyped-def]
    from .cli import CONVERT_OPEN_CLIP_COMMAND

    # The core's CLI runs a command named `convert/<kind>` as `colearn convert <kind>`.
    register("convert/open_clip", CONVERT_OPEN_CLIP_COMMAND)
