"""Numerical faults: a NaN in a batch, or a loss term that overflows, stops the run at that
step with the offending input or term named; the last checkpoint stays intact (it holds the
very weights an unaffected run had at that step) and no model is written."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
import torch
import yaml
from colearn_plugin_toy.toy import ToyCLIP
from reliability_helpers import max_abs_diff
from safetensors.torch import load_file
from train_helpers import BASE

from colearn_core.cli import main
from colearn_core.registry import registries
from colearn_core.train.data import EpochSampler
from colearn_core.train.recipe import apply_overrides, parse_recipe
from colearn_core.train.trainer import CHECKPOINT_MARKER, find_checkpoints, train

STEPS = 10  # the same in every run here: the learning-rate schedule depends on it
N, BATCH = 64, 16


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An unaffected run with a checkpoint after every step."""
    from accelerate.state import AcceleratorState, GradientState

    run = tmp_path_factory.mktemp("clean") / "run"
    sets = (
        f"trainer.max_steps={STEPS}",
        "trainer.checkpoint_every=1",
        f"trainer.keep_last={STEPS}",
    )
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    try:
        train(parse_recipe(apply_overrides(BASE, sets)), output_dir=run)
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
    return run


def checkpoint_weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    folder = run / "checkpoints" / f"step_{step:08d}"
    assert (folder / CHECKPOINT_MARKER).is_file()
    return load_file(folder / "model.safetensors")


def write_recipe(tmp_path: Path, *sets: str) -> Path:
    path = tmp_path / "recipe.yaml"
    data = apply_overrides(BASE, [f"trainer.max_steps={STEPS}", *sets])
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def train_cli(capsys, recipe: Path, run: Path) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["train", str(recipe), "--output-dir", str(run)])
    return code, capsys.readouterr().err


def first_step_with(example: int, seed: int = 0) -> int:
    """The 1-based step whose batch first holds ``example`` (the trainer's data order)."""
    sampler = EpochSampler(N, seed)
    per_epoch = N // BATCH
    for epoch in range(STEPS):
        sampler.set_epoch(epoch)
        position = list(sampler).index(example)
        if position < per_epoch * BATCH:
            return epoch * per_epoch + position // BATCH + 1
    raise AssertionError("never used")


@pytest.mark.parametrize("accum", [1, 2], ids=["plain", "contrastive-accumulation"])
def test_a_nan_in_the_batch_stops_at_its_step_and_keeps_the_last_checkpoint(
    tmp_path, capsys, clean, accum
):
    # the example that the 4th step (the last of the first epoch) is the first to see
    sampler = EpochSampler(N, 0)
    victim = list(sampler)[3 * BATCH + 5]
    assert first_step_with(victim) == 4
    rows = registries.datasets.get("toy-pairs")(n=N, seed=0).to_dict()
    rows["a"][victim][2] = float("nan")
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "data"))
    recipe = write_recipe(
        tmp_path,
        f"data.dataset={tmp_path / 'data'}",
        "data.builder_args={}",
        "trainer.checkpoint_every=3",
        f"trainer.grad_accum_steps={accum}",
    )
    run = tmp_path / "run"
    code, err = train_cli(capsys, recipe, run)
    assert code == 1, err
    assert "colearn train: error: step 4: input `a` has non-finite values" in err, err
    assert f"The last good checkpoint is {run / 'checkpoints' / 'step_00000003'}" in err
    assert [s for s, _ in find_checkpoints(run / "checkpoints")] == [3]
    assert not (run / "model").exists()
    # steps 1-3 never saw the NaN: the checkpoint is the unaffected run's step 3
    tolerance = 0.0 if accum == 1 else 1e-5  # cached-feature accumulation reorders sums
    assert max_abs_diff(checkpoint_weights(run, 3), checkpoint_weights(clean, 3)) <= tolerance


class OverflowCLIP(ToyCLIP):
    """toy-clip plus a constant loss term ``energy`` = exp(10 x forward calls), which
    overflows float32 on the 9th call (exp(90) > 3.4e38). It adds nothing to the gradients, so
    until then the run is step for step the unaffected one."""

    contrastive = False
    calls = 0

    def forward(self, batch):
        out = super().forward(batch)
        type(self).calls += 1
        out.losses["energy"] = torch.exp(torch.tensor(10.0 * type(self).calls))
        return out


def test_a_loss_term_that_overflows_stops_the_run_naming_step_and_term(tmp_path, capsys, clean):
    registries.methods.names()  # load the plugins first: loading resets the registries
    registries.methods.register("test-overflow-clip", OverflowCLIP, plugin="tests")
    OverflowCLIP.calls = 0
    try:
        sets = ("method.name=test-overflow-clip", "trainer.checkpoint_every=4")
        recipe = write_recipe(tmp_path, *sets)
        run = tmp_path / "run"
        code, err = train_cli(capsys, recipe, run)
    finally:
        registries.methods.unregister("test-overflow-clip")
    assert code == 1, err
    assert "non-finite loss at step 9: 'energy' = inf" in err, err
    assert f"The last good checkpoint is {run / 'checkpoints' / 'step_00000008'}" in err
    assert "--resume" in err  # how to go on
    assert [s for s, _ in find_checkpoints(run / "checkpoints")] == [4, 8]
    assert not (run / "model").exists()
    assert max_abs_diff(checkpoint_weights(run, 8), checkpoint_weights(clean, 8)) == 0.0
