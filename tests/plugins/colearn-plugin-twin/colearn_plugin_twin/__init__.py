"""A plugin that registers a name colearn-plugin-toy already owns."""

from colearn_core import hookimpl


@hookimpl
def register_methods(register):
    register("twin-only", object)


@hookimpl
def register_encoders(register):
    register("toy-vector/mlp", object)
