"""Registries: duplicates name both plugins, unknown names suggest close matches."""

from __future__ import annotations

import pytest

from colearn_core import (
    DuplicateNameError,
    UnknownNameError,
    hookimpl,
    plugin_report,
    register_plugin,
    registries,
)
from colearn_core.registry import Registry


def test_duplicate_registration_names_both_plugins():
    reg: Registry[object] = Registry("encoders")
    reg.register("image/vit", object, plugin="colearn-plugin-image")
    with pytest.raises(DuplicateNameError) as err:
        reg.register("image/vit", object, plugin="colearn-plugin-other")
    assert "colearn-plugin-image" in str(err.value) and "colearn-plugin-other" in str(err.value)


@pytest.mark.parametrize("bad", ["", " spaced", "UPPER case", None, "/leading"])
def test_invalid_names_are_rejected(bad):
    with pytest.raises(ValueError, match="invalid encoder name"):
        Registry("encoders").register(bad, object)


def test_unknown_name_lists_close_matches_and_installed_plugins(fresh_plugins):
    with pytest.raises(UnknownNameError) as err:
        registries.methods.get("toy-clp")
    message = str(err.value)
    assert "unknown method 'toy-clp'" in message
    suggestions = message.split("Did you mean: ")[1].split("?")[0]
    assert "'toy-clip'" in suggestions
    assert "colearn-plugin-toy 0.1.0" in message
    with pytest.raises(LookupError):  # usable as a plain LookupError too
        registries.encoders.get("nothing-like-it")


def test_register_plugin_by_hand_is_all_or_nothing(fresh_plugins):
    class Good:
        @hookimpl
        def register_losses(self, register):
            register("hand-made", object)

    class Clash:
        @hookimpl
        def register_losses(self, register):
            register("hand-made-2", object)
            register("hand-made", object)

    assert register_plugin(Good(), name="good").ok
    assert registries.losses.entry("hand-made").plugin == "good"
    with pytest.warns(UserWarning, match="already registered by plugin 'good'"):
        info = register_plugin(Clash(), name="clash")
    assert not info.ok
    assert "hand-made-2" not in registries.losses
    assert [p.name for p in plugin_report()][-2:] == ["good", "clash"]


def test_method_registration_sets_method_name(fresh_plugins):
    assert registries.methods.get("toy-clip").method_name == "toy-clip"
