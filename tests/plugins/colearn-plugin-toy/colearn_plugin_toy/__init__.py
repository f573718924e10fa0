"""A tiny but real plugin used by colearn's core tests (hub, trainer, plugin system).

Registers the modality ``toy-vector``, the encoder ``toy-vector/mlp``, the method ``toy-clip``
(two towers over vectors, the core's symmetric InfoNCE), the task ``toy-retrieval`` and the
dataset builder ``toy-pairs``.
"""

from colearn_core import hookimpl


@hookimpl
def register_modalities(register):
    from .toy import VectorModality

    register("toy-vector", VectorModality)


@hookimpl
def register_encoders(register):
    from .toy import MLPEncoder

    register("toy-vector/mlp", MLPEncoder)


@hookimpl
def register_methods(register):
    from .toy import ToyCLIP

    register("toy-clip", ToyCLIP)


@hookimpl
def register_tasks(register):
    from .toy import ToyRetrieval

    register("toy-retrieval", ToyRetrieval)


@hookimpl
def register_datasets(register):
    from .toy import build_toy_pairs

    register("toy-pairs", build_toy_pairs)
