"""A plugin that registers one name, then raises inside the hook: nothing of it may be kept."""

from colearn_core import hookimpl


@hookimpl
def register_encoders(register):
    register("hookfail/first", object)
    raise ValueError("hookfail exploded while registering")
