"""Fixtures for the plugin-system tests: misbehaving plugins installed for real with pip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from colearn_core.plugins import reset_plugins

HERE = Path(__file__).resolve().parent
TEST_PLUGINS = HERE.parent / "plugins"
MISBEHAVING = ["colearn-plugin-broken", "colearn-plugin-hookfail", "colearn-plugin-twin"]


@pytest.fixture(scope="session")
def bad_plugins_path(tmp_path_factory) -> Path:
    """A folder holding the misbehaving test distributions, pip-installed with entry points.

    They are kept out of the main environment so that only these tests see them.
    """
    target = tmp_path_factory.mktemp("bad-plugins")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            *[str(TEST_PLUGINS / name) for name in MISBEHAVING],
        ],
        check=True,
        capture_output=True,
    )
    return target


@pytest.fixture
def fresh_plugins(monkeypatch):
    """Forget loaded plugins before and after a test that changes what loads."""
    for var in ("COLEARN_LOAD_PLUGINS", "COLEARN_DISABLE_PLUGINS", "COLEARN_STRICT_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    reset_plugins()
    yield
    reset_plugins()
