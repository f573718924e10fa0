"""Discovery through real entry points, failure isolation, strict mode, allow/block lists."""

from __future__ import annotations

import json
import subprocess
import sys

from core_cli_helpers import run_colearn


def report(result) -> dict[str, dict]:
    assert result.returncode == 0, result.stderr
    return {p["distribution"]: p for p in json.loads(result.stdout)}


def test_the_test_plugin_is_discovered_with_what_it_registered():
    plugins = report(run_colearn("plugins", "--json"))
    toy = plugins["colearn-plugin-toy"]
    assert toy["status"] == "loaded"
    assert toy["version"] == "0.1.0"
    assert toy["registered"]["methods"] == ["toy-clip"]
    assert toy["registered"]["encoders"] == ["toy-vector/mlp"]
    assert toy["registered"]["modalities"] == ["toy-vector"]
    assert plugins["colearn-core"]["registered"]["fusions"] == ["late"]


def test_failing_plugins_are_reported_and_the_others_load(bad_plugins_path):
    result = run_colearn("plugins", "--json", extra_path=bad_plugins_path)
    plugins = report(result)
    assert plugins["colearn-plugin-toy"]["status"] == "loaded"

    broken = plugins["colearn-plugin-broken"]
    assert broken["status"] == "failed"
    assert "failed to import" in broken["error"] and "boom" in broken["error"]

    hookfail = plugins["colearn-plugin-hookfail"]
    assert hookfail["status"] == "failed"
    assert "raised during registration" in hookfail["error"]
    assert "hookfail exploded" in hookfail["error"]
    assert hookfail["registered"] == {}  # the name it registered before raising was dropped

    twin = plugins["colearn-plugin-twin"]
    assert twin["status"] == "failed"
    assert "colearn-plugin-twin" in twin["error"] and "colearn-plugin-toy" in twin["error"]
    assert "toy-vector/mlp" in twin["error"]
    assert twin["registered"] == {}  # all or nothing: "twin-only" was not kept either
    # Each failure is also a warning on stderr.
    assert "colearn-plugin-broken" in result.stderr and "skipped" in result.stderr


def test_human_readable_listing_shows_failures(bad_plugins_path):
    result = run_colearn("plugins", extra_path=bad_plugins_path)
    assert result.returncode == 0
    assert "colearn-plugin-broken 0.0.1  FAILED: failed to import: RuntimeError: boom" in (
        result.stdout
    )
    assert "methods: toy-clip" in result.stdout


def test_strict_mode_stops_with_the_plugin_name(bad_plugins_path):
    result = run_colearn(
        "plugins",
        extra_path=bad_plugins_path,
        COLEARN_STRICT_PLUGINS="1",
        COLEARN_DISABLE_PLUGINS="colearn-plugin-hookfail,colearn-plugin-twin",
    )
    assert result.returncode != 0
    assert "colearn-plugin-broken" in result.stderr
    assert "COLEARN_STRICT_PLUGINS" in result.stderr


def test_strict_mode_also_covers_hooks_and_duplicates(bad_plugins_path):
    for name in ("colearn-plugin-hookfail", "colearn-plugin-twin"):
        result = run_colearn(
            "plugins",
            extra_path=bad_plugins_path,
            COLEARN_STRICT_PLUGINS="1",
            COLEARN_LOAD_PLUGINS=f"colearn-plugin-toy,{name}",
        )
        assert result.returncode != 0 and name in result.stderr


def test_allow_list_loads_only_the_named_distributions(bad_plugins_path):
    plugins = report(
        run_colearn(
            "plugins",
            "--json",
            extra_path=bad_plugins_path,
            COLEARN_LOAD_PLUGINS="colearn-plugin-toy",
        )
    )
    assert set(plugins) == {"colearn-core", "colearn-plugin-toy"}


def test_empty_allow_list_loads_no_plugin_but_the_core():
    plugins = report(run_colearn("plugins", "--json", COLEARN_LOAD_PLUGINS=""))
    assert set(plugins) == {"colearn-core"}


def test_block_list(bad_plugins_path):
    plugins = report(
        run_colearn(
            "plugins",
            "--json",
            extra_path=bad_plugins_path,
            COLEARN_DISABLE_PLUGINS="colearn-plugin-broken, twin",
        )  # dist or entry name
    )
    assert "colearn-plugin-broken" not in plugins and "colearn-plugin-twin" not in plugins
    assert plugins["colearn-plugin-hookfail"]["status"] == "failed"
    assert plugins["colearn-plugin-toy"]["status"] == "loaded"


def test_importing_the_core_imports_no_plugin():
    code = (
        "import colearn_core, sys; "
        "print([m for m in sys.modules if m.startswith('colearn_plugin')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_loading_is_lazy_and_happens_once():
    code = (
        "import sys, colearn_core\n"
        "from colearn_core import registries\n"
        "assert 'colearn_plugin_toy' not in sys.modules\n"
        "first = registries.methods.get('toy-clip')\n"
        "assert 'colearn_plugin_toy' in sys.modules\n"
        "report = colearn_core.load_plugins()\n"
        "assert registries.methods.get('toy-clip') is first\n"
        "assert colearn_core.load_plugins() == report\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_version_and_help():
    assert run_colearn("--version").stdout.strip() == "colearn 0.1.0"
    result = run_colearn("--help")
    assert result.returncode == 0 and "plugins" in result.stdout


def test_group_commands_run_as_subcommands():
    result = run_colearn("convert")
    assert result.returncode == 2
    assert "usage: colearn convert" in result.stdout
    assert "open_clip" in result.stdout and "imagebind" in result.stdout
    assert "convert/open_clip" not in run_colearn("--help").stdout


def test_a_command_clashing_with_a_group_is_named(fresh_plugins):
    from colearn_core import ColearnError, hookimpl, register_plugin
    from colearn_core.cli import Command, build_parser

    class Clash:
        @hookimpl
        def register_commands(self, register):
            register("convert", Command("clash", lambda p: None, lambda a: 0))

    register_plugin(Clash(), name="clash-plugin")
    import pytest

    with pytest.raises(ColearnError, match="'convert' from plugin 'clash-plugin' clashes"):
        build_parser()
