"""`colearn new-plugin`: names, refusals, and generated plugins that install and pass tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from colearn_core import ConfigError
from colearn_core.cli import main
from colearn_core.scaffold import KINDS, MAX_NAME_LENGTH, new_plugin, plugin_names, validate_name

EXPECTED_FILES = {
    "modality": {
        "README.md",
        "pyproject.toml",
        "colearn_plugin_{slug}/__init__.py",
        "colearn_plugin_{slug}/modality.py",
        "colearn_plugin_{slug}/encoder.py",
        "tests/test_{slug}_contract.py",
        "tests/test_{slug}_behaviour.py",
    },
    "method": {
        "README.md",
        "pyproject.toml",
        "colearn_plugin_{slug}/__init__.py",
        "colearn_plugin_{slug}/method.py",
        "colearn_plugin_{slug}/loss.py",
        "colearn_plugin_{slug}/vector.py",
        "tests/test_{slug}_contract.py",
        "tests/test_{slug}_method.py",
    },
}


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", ["imu", "eeg-signal", "a", "lidar2", "x" * MAX_NAME_LENGTH])
def test_valid_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "Imu", "2d", "eeg_signal", "eeg--signal", "-imu", "imu-", "imu.x", "x" * 25, "é"],
)
def test_invalid_names_are_refused_with_the_rule(name):
    with pytest.raises(ConfigError, match="lowercase letters, digits and single hyphens"):
        validate_name(name)


def test_prefixed_name_suggests_the_short_name():
    with pytest.raises(ConfigError, match="without the 'colearn-plugin-' prefix.*new-plugin imu"):
        validate_name("colearn-plugin-imu")


def test_derived_names():
    names = plugin_names("eeg-signal")
    assert names["dist"] == "colearn-plugin-eeg-signal"
    assert names["module"] == "colearn_plugin_eeg_signal"
    assert names["slug"] == "eeg_signal"
    assert names["Class"] == "EegSignal"


@pytest.mark.parametrize("kind", KINDS)
def test_generated_tree(tmp_path, kind):
    path = new_plugin("eeg-signal", kind, tmp_path / "out")
    assert path == tmp_path / "out" / "colearn-plugin-eeg-signal"
    expected = {f.format(slug="eeg_signal") for f in EXPECTED_FILES[kind]}
    assert files_under(path) == expected
    for rel in expected:
        text = (path / rel).read_text()
        assert "{{" not in text and "__module__" not in text, f"placeholder left in {rel}"
    pyproject = (path / "pyproject.toml").read_text()
    assert 'name = "colearn-plugin-eeg-signal"' in pyproject
    assert 'eeg-signal = "colearn_plugin_eeg_signal"' in pyproject
    assert '"colearn-core>=0.1"' in pyproject
    # Nothing else was left in the parent folder (the staging folder is renamed into place).
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["colearn-plugin-eeg-signal"]


def test_refuses_to_overwrite(tmp_path):
    existing = tmp_path / "colearn-plugin-imu"
    existing.mkdir()
    (existing / "mine.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="colearn-plugin-imu already exists"):
        new_plugin("imu", "modality", tmp_path)
    assert files_under(existing) == {"mine.txt"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["colearn-plugin-imu"]


def test_unknown_kind(tmp_path):
    with pytest.raises(ConfigError, match="unknown plugin kind 'task'.*modality, method"):
        new_plugin("imu", "task", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cli(tmp_path, capsys):
    assert main(["new-plugin", "imu", "--kind", "method", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"created {tmp_path / 'colearn-plugin-imu'}" in out
    assert "pip install -e" in out
    assert (tmp_path / "colearn-plugin-imu" / "colearn_plugin_imu" / "method.py").is_file()
    assert main(["new-plugin", "imu", "--dir", str(tmp_path)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["new-plugin", "Imu", "--dir", str(tmp_path)]) == 1
    assert "invalid plugin name 'Imu'" in capsys.readouterr().err


def test_generated_code_is_lint_clean(tmp_path):
    """Generated files pass ruff with their own config, for the shortest and longest names."""
    for kind in KINDS:
        for name in ("x", "a-" * 11 + "bc", "y" * MAX_NAME_LENGTH):
            new_plugin(name, kind, tmp_path / kind)
    ruff = [sys.executable, "-m", "ruff"]
    for plugin in sorted(p for k in KINDS for p in (tmp_path / k).iterdir()):
        check = subprocess.run([*ruff, "check", "."], cwd=plugin, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        fmt = subprocess.run(
            [*ruff, "format", "--check", "."], cwd=plugin, capture_output=True, text=True
        )
        assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_generated_plugins_install_and_pass_their_tests(tmp_path):
    """pip-install both kinds (real entry points) and run their own tests, unedited."""
    modality = new_plugin("scaffold-sensor", "modality", tmp_path / "src")
    method = new_plugin("scaffold-pair", "method", tmp_path / "src")
    site = tmp_path / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
        + ["--target", str(site), str(modality), str(method)],
        capture_output=True,
        text=True,
    )
    assert pip.returncode == 0, pip.stderr
    assert (site / "colearn_plugin_scaffold_sensor" / "encoder.py").is_file()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLEARN_")}
    env["PYTHONPATH"] = str(site)
    # Only the generated plugins load: their tests must not depend on anything else.
    env["COLEARN_LOAD_PLUGINS"] = "colearn-plugin-scaffold-sensor,colearn-plugin-scaffold-pair"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        + [str(modality / "tests"), str(method / "tests")],
        cwd=tmp_path,  # not the plugin folder: the package must come from the installed copy
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout
