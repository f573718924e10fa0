"""colearn-plugin-simclr: the ``simclr`` method, the ``image/simclr-cnn`` encoder, the
``linear-probe`` and ``knn`` evaluation tasks, the ``fashion-mnist`` dataset builder and the
``lars`` optimiser option.

Importing this package imports nothing heavy; each hook imports what it registers.
"""

from __future__ import annotations

from colearn_core import hookimpl

__version__ = "0.1.0"
__all__ = ["register_datasets", "register_encoders", "register_methods", "register_tasks"]


@hookimpl
def register_encoders(register):  # type: ignore[no-untyped-def]
    from .encoder import SimCLRCNN

    register("image/simclr-cnn", SimCLRCNN)


@hookimpl
def register_methods(register):  # type: ignore[no-untyped-def]
    from .lars import register_lars
    from .method import SimCLR

    register("simclr", SimCLR)
    # Optimisers have no registry of their own: the trainer keeps a table, filled here so
    # that `optim.optimizer: lars` works whenever the method is available.
    register_lars()


@hookimpl
def register_tasks(register):  # type: ignore[no-untyped-def]
    from .tasks import KNNTask, LinearProbeTask

    register("linear-probe", LinearProbeTask)
    register("knn", KNNTask)


@hookimpl
def register_datasets(register):  # type: ignore[no-untyped-def]
    from .data import build_fashion_mnist

    register("fashion-mnist", build_fashion_mnist)
