"""SIGKILL a training run at many points; resuming must always work and end where an
uninterrupted run ends.

Each case starts ``colearn train`` in a subprocess through ``crash_train.py``, which kills the
process with SIGKILL at one precise point (inside a step, or half-way through writing one file
of a checkpoint or of the final model). The run is then resumed with ``--resume latest`` and
its final weights and logged losses are compared with an uninterrupted run of the same recipe.

The recipe uses dropout and contrastive gradient accumulation, so a resume must restore the
RNG states and the position in the data, not only the weights; 12 steps of 16 examples over 64
cross two epoch boundaries.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
import yaml
from reliability_helpers import HERE, PYTHON, child_env, max_abs_diff, model_weights
from safetensors.torch import load_file
from train_helpers import BASE

from colearn_core.train.recipe import Recipe, apply_overrides, load_recipe
from colearn_core.train.trainer import CHECKPOINT_MARKER, find_checkpoints, latest_checkpoint, train

SETTINGS = (
    "trainer.max_steps=12",
    "trainer.checkpoint_every=2",
    "trainer.keep_last=2",
    "trainer.grad_accum_steps=2",
    "method.config.dropout=0.1",
)
STEPS = 12


def write_recipe(folder: Path, *extra: str) -> tuple[Path, Recipe]:
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(apply_overrides(BASE, [*SETTINGS, *extra])), encoding="utf-8")
    return path, load_recipe(path)


def logged_losses(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if "loss" in r]
    assert len(steps) == len(set(steps)), f"a step was logged twice: {steps}"
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def kill_run(recipe_path: Path, run: Path, fault: str, step: int, *extra: str) -> str:
    """Run training until ``crash_train.py`` SIGKILLs it at ``fault`` on ``step``."""
    command = [PYTHON, str(HERE / "crash_train.py"), fault, str(step), "--"]
    command += [str(recipe_path), "--output-dir", str(run), *extra]
    done = subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == -signal.SIGKILL, f"not killed (code {done.returncode}):\n{output}"
    return output


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Recipe]:
    """The reference: the same recipe run to the end without interruption."""
    from accelerate.state import AcceleratorState, GradientState

    folder = tmp_path_factory.mktemp("uninterrupted")
    path, recipe = write_recipe(folder)
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    try:
        train(recipe, output_dir=folder / "run")
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
    return folder / "run", recipe


# (fault, step, newest complete checkpoint left by the kill). Eight kinds of kill point on
# steps 1 to 12: inside a step, half-way through each file of a checkpoint, between a complete
# checkpoint and its publication, while pruning an old checkpoint and while writing the model.
CASES = [
    ("step", 1, None),
    ("weights", 2, None),
    ("optimizer", 4, 2),
    ("step", 5, 4),
    ("rng", 6, 4),
    ("step", 7, 6),
    ("marker", 8, 6),
    ("publish", 10, 8),
    ("prune", 10, 10),
    ("model", 12, 12),
]


IDS = [f"{fault}@{step}" for fault, step, _ in CASES]


@pytest.mark.parametrize(("fault", "step", "survivor"), CASES, ids=IDS)
def test_sigkill_then_resume_ends_with_the_uninterrupted_weights(
    tmp_path, uninterrupted, capsys, fault, step, survivor
):
    reference_run, _ = uninterrupted
    recipe_path, recipe = write_recipe(tmp_path)
    run = tmp_path / "run"
    kill_run(recipe_path, run, fault, step)

    checkpoints = run / "checkpoints"
    newest = latest_checkpoint(checkpoints)
    assert (newest.name if newest else None) == (f"step_{survivor:08d}" if survivor else None)
    assert not (run / "model").exists()
    if fault in ("weights", "optimizer", "rng", "marker", "publish"):
        # the interrupted checkpoint is on disk, half-written (or unpublished), and ignored
        partial = checkpoints / f".tmp-step_{step:08d}"
        assert partial.is_dir()
        assert (partial / CHECKPOINT_MARKER).is_file() == (fault == "publish")
    if newest is not None:  # what a resume picks loads
        assert load_file(newest / "model.safetensors")

    capsys.readouterr()
    result = train(recipe, output_dir=run, resume="latest")
    out = capsys.readouterr().out
    if survivor is None:
        assert "no checkpoint in" in out and "starting afresh" in out
    else:
        assert f"resumed from {checkpoints / f'step_{survivor:08d}'} (step {survivor})" in out

    assert result.step == STEPS
    assert max_abs_diff(model_weights(run), model_weights(reference_run)) <= 1e-6
    resumed, reference = logged_losses(run), logged_losses(reference_run)
    assert sorted(resumed) == list(range(1, STEPS + 1))
    assert resumed == pytest.approx(reference, abs=1e-6)
    assert not list(checkpoints.glob(".tmp-*")), "an interrupted checkpoint was left behind"
    assert [s for s, _ in find_checkpoints(checkpoints)][-1] == STEPS


def test_a_half_deleted_old_checkpoint_is_never_listed_as_complete(tmp_path):
    # Pruning deletes a checkpoint folder file by file; killed half-way, the folder may keep
    # its completion marker and lose its weights. It must not count as a checkpoint (a later
    # `--resume PATH` or a shorter keep_last could pick it).
    recipe_path, _ = write_recipe(tmp_path, "trainer.max_steps=4", "trainer.keep_last=1")
    run = tmp_path / "run"
    kill_run(recipe_path, run, "prune", 4)
    # the kill came half-way through deleting checkpoint 2 (under whatever name)
    [half] = [p for p in (run / "checkpoints").iterdir() if p.name.endswith("step_00000002")]
    assert not (half / "model.safetensors").exists()
    for _, folder in find_checkpoints(run / "checkpoints"):
        assert (folder / "model.safetensors").is_file(), (
            f"checkpoint {folder.name} is listed as complete but has no model.safetensors"
        )


def test_a_torn_last_log_line_does_not_block_the_resume(tmp_path, uninterrupted):
    # A run killed (or out of disk) while appending to metrics.jsonl leaves half a line.
    reference_run, _ = uninterrupted
    recipe_path, recipe = write_recipe(tmp_path)
    run = tmp_path / "run"
    kill_run(recipe_path, run, "step", 5)
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"step": 5, "epoch": 1, "loss": 2.3')
    result = train(recipe, output_dir=run, resume="latest")
    assert result.step == STEPS
    assert sorted(logged_losses(run)) == list(range(1, STEPS + 1))
    assert max_abs_diff(model_weights(run), model_weights(reference_run)) <= 1e-6


def test_a_damaged_checkpoint_is_named_when_resuming(tmp_path, capsys):
    # A checkpoint whose files were damaged after it was completed (disk, copy, quota): the
    # resume must say which checkpoint and which file, and how to go on.
    recipe_path, _ = write_recipe(tmp_path, "trainer.max_steps=4")
    run = tmp_path / "run"
    from colearn_core.cli import main

    assert main(["train", str(recipe_path), "--output-dir", str(run)]) == 0
    damaged = run / "checkpoints" / "step_00000004" / "model.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:100])
    capsys.readouterr()
    code = main(["train", str(recipe_path), "--output-dir", str(run), "--resume"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "colearn train: error:" in err
    assert str(damaged) in err or ("step_00000004" in err and "model.safetensors" in err), err
    assert "step_00000002" in err  # the previous checkpoint is offered
