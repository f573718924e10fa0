"""colearn-plugin-imagebind: the ``imagebind`` method, its evaluation tasks, the
``fashion-speech`` dataset builder and ``colearn convert imagebind``.

Importing this package imports nothing heavy; each hook imports what it registers.
"""

from __future__ import annotations

from colearn_core import hookimpl

__version__ = "0.1.0"
__all__ = ["register_commands", "register_datasets", "register_methods", "register_tasks"]


@hookimpl
def register_methods(register):  # type: ignore[no-untyped-def]
    from .model import ImageBind

    register("imagebind", ImageBind)


@hookimpl
def register_tasks(register):  # type: ignore[no-untyped-def]
    from .tasks import CrossModalRetrieval, EmbeddingArithmetic, EmergentZeroShot, ZeroShot

    register("imagebind-zero-shot", ZeroShot)
    register("cross-modal-retrieval", CrossModalRetrieval)
    register("emergent-zero-shot", EmergentZeroShot)
    register("embedding-arithmetic", EmbeddingArithmetic)


@hookimpl
def register_datasets(register):  # type: ignore[no-untyped-def]
    from .speech import build_fashion_speech

    register("fashion-speech", build_fashion_speech)


@hookimpl
def register_commands(register):  # type: ignore[no-untyped-def]
    from .cli import CONVERT_IMAGEBIND_COMMAND

    register("convert/imagebind", CONVERT_IMAGEBIND_COMMAND)
