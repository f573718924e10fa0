"""Fixtures for the trainer tests: tiny toy-clip recipes written to files, fresh accelerate
state between in-process runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from train_helpers import BASE

from colearn_core.train.recipe import Recipe, apply_overrides, load_recipe


@pytest.fixture(autouse=True)
def _fresh_accelerate() -> Iterator[None]:
    """Accelerate keeps process-wide singletons; each test starts from none."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


@pytest.fixture
def make_recipe(tmp_path: Path) -> Callable[..., tuple[Path, Recipe]]:
    """``make_recipe(*sets, name="r")``: the base recipe with ``--set`` style overrides,
    written to ``tmp_path/<name>.yaml``; returns ``(path, Recipe)``."""

    def make(*sets: str, name: str = "recipe") -> tuple[Path, Recipe]:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(apply_overrides(BASE, sets)), encoding="utf-8")
        return path, load_recipe(path)

    return make
