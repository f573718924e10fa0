"""The training loop in one process: outputs, checkpoints, resuming, evaluation, errors."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest
import torch
from colearn_plugin_toy.toy import ToyCLIP
from safetensors.torch import load_file

from colearn_core.cli import main
from colearn_core.errors import ConfigError
from colearn_core.registry import registries
from colearn_core.train.trainer import (
    CHECKPOINT_MARKER,
    NonFiniteLossError,
    Trainer,
    TrainingError,
    find_checkpoints,
    latest_checkpoint,
    train,
)


def rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def weights(run):
    return load_file(run / "model" / "model.safetensors")


def test_a_run_writes_metrics_checkpoints_eval_and_the_model(make_recipe, tmp_path):
    _, recipe = make_recipe(
        "trainer.max_steps=8",
        "trainer.checkpoint_every=2",
        "trainer.keep_last=2",
        "trainer.eval_every=4",
        "trainer.log_every=3",
        "eval=[{task: toy-retrieval, query: a, target: b}]",
    )
    run = tmp_path / "run"
    result = train(recipe, output_dir=run)
    assert result.step == 8 and result.run_dir == run
    logged = rows(run)
    losses = [r for r in logged if "loss" in r]
    assert [r["step"] for r in losses] == [3, 6, 8]
    first = losses[0]
    assert {"loss", "loss/contrastive", "lr", "grad_norm", "samples_per_s", "epoch"} <= set(first)
    assert losses[-1]["loss"] < first["loss"]  # it learns
    assert [r["step"] for r in logged if "eval/toy-retrieval/recall@1" in r] == [4, 8]

    evaluation = json.loads((run / "eval.json").read_text())
    assert evaluation["step"] == 8 and [h["step"] for h in evaluation["history"]] == [4, 8]
    assert 0 <= evaluation["results"]["toy-retrieval"]["recall@1"] <= 1
    assert result.eval == evaluation["results"]

    assert [s for s, _ in find_checkpoints(run / "checkpoints")] == [6, 8]  # keep_last=2
    final = load_file(run / "checkpoints" / "step_00000008" / "model.safetensors")
    model = weights(run)
    assert model.keys() == final.keys() and all(torch.equal(model[k], final[k]) for k in model)
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["method"] == "toy-clip"
    assert (run / "recipe.yaml").is_file()


def test_keep_last_and_incomplete_checkpoints(make_recipe, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / ".tmp-step_00000003").mkdir(parents=True)  # a crashed save
    _, recipe = make_recipe("trainer.checkpoint_every=1", "trainer.keep_last=3")
    train(recipe, output_dir=run)
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["step_00000004", "step_00000005", "step_00000006"]

    # a folder without the completion marker is never picked up
    (run / "checkpoints" / "step_00000009").mkdir()
    assert latest_checkpoint(run / "checkpoints").name == "step_00000006"
    with pytest.raises(ConfigError, match="not a complete checkpoint folder"):
        Trainer(recipe, output_dir=run, resume=run / "checkpoints" / "step_00000009").fit()


def test_a_used_run_folder_needs_resume(make_recipe, tmp_path):
    _, recipe = make_recipe("trainer.max_steps=2")
    train(recipe, output_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match="already has checkpoints.*pass --resume"):
        train(recipe, output_dir=tmp_path / "run")


def test_resume_from_a_checkpoint_reproduces_the_uninterrupted_run(make_recipe, tmp_path):
    # Dropout and contrastive accumulation: RNG and data position must both be restored;
    # 6 steps of 16 over 64 examples crosses an epoch boundary.
    _, recipe = make_recipe(
        "trainer.checkpoint_every=3",
        "trainer.grad_accum_steps=2",
        "trainer.keep_last=5",
        "method.config.dropout=0.2",
    )
    whole = tmp_path / "whole"
    train(recipe, output_dir=whole)

    part = tmp_path / "part"
    shutil.copytree(whole / "checkpoints" / "step_00000003", part / "checkpoints" / "step_00000003")
    metrics = rows(whole)
    (part / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))
    result = train(recipe, output_dir=part, resume="latest")
    assert result.step == 6
    a, b = weights(whole), weights(part)
    assert max((a[k] - b[k]).abs().max().item() for k in a) == 0.0
    resumed = rows(part)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6]  # no duplicated lines
    assert [r["loss"] for r in resumed] == [r["loss"] for r in metrics]


def test_resume_loads_nothing_with_unrestricted_pickle(make_recipe, tmp_path, monkeypatch):
    _, recipe = make_recipe(
        "trainer.max_steps=2", "trainer.checkpoint_every=1", "method.config.dropout=0.1"
    )
    run = tmp_path / "run"
    train(recipe, output_dir=run)
    for path in (run / "checkpoints" / "step_00000001").iterdir():
        assert path.suffix in {".safetensors", ".bin", ".pkl", ".json"}, path

    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    trainer = Trainer(recipe, output_dir=run, resume=run / "checkpoints" / "step_00000001")
    rng_before = torch.get_rng_state()
    assert trainer._start() == 1
    assert calls and all(flag is True for flag in calls)  # optimizer, scheduler, RNG
    assert not torch.equal(rng_before, torch.get_rng_state())  # the RNG state was restored


class SpikingCLIP(ToyCLIP):
    """toy-clip whose forward adds a NaN loss term from its fifth call on."""

    contrastive = False
    calls = 0

    def forward(self, batch):
        out = super().forward(batch)
        type(self).calls += 1
        if type(self).calls >= 5:
            out.losses["spike"] = torch.tensor(float("nan"))
        return out


def test_non_finite_loss_stops_with_step_and_term_and_keeps_the_last_checkpoint(
    make_recipe, tmp_path
):
    registries.methods.names()  # load plugins first: loading clears the registries
    registries.methods.register("test-spiking-clip", SpikingCLIP, plugin="tests")
    SpikingCLIP.calls = 0
    try:
        _, recipe = make_recipe(
            "method.name=test-spiking-clip", "trainer.checkpoint_every=2", "trainer.keep_last=5"
        )
        run = tmp_path / "run"
        trainer = Trainer(recipe, output_dir=run)
        with pytest.raises(NonFiniteLossError) as err:
            trainer.fit()
    finally:
        registries.methods.unregister("test-spiking-clip")
    message = str(err.value)
    assert "non-finite loss at step 5: 'spike' = nan" in message
    assert "step_00000004" in message
    assert [s for s, _ in find_checkpoints(run / "checkpoints")] == [2, 4]
    assert max(r["step"] for r in rows(run)) == 4
    assert not (run / "model").exists()
    # the weights were not updated by the bad step
    saved = load_file(run / "checkpoints" / "step_00000004" / "model.safetensors")
    for name, value in trainer.method.state_dict().items():
        assert torch.equal(saved[name], value), name


class NaNFeaturesCLIP(ToyCLIP):
    """toy-clip whose embeddings turn NaN on the third call of embed()."""

    calls = 0

    def embed(self, batch):
        out = super().embed(batch)
        type(self).calls += 1
        return {k: v * float("nan") for k, v in out.items()} if type(self).calls == 3 else out


def test_an_error_inside_a_step_names_the_step(make_recipe, tmp_path):
    registries.methods.names()
    registries.methods.register("test-nan-features-clip", NaNFeaturesCLIP, plugin="tests")
    NaNFeaturesCLIP.calls = 0
    try:
        _, recipe = make_recipe("method.name=test-nan-features-clip")
        with pytest.raises(TrainingError) as err:
            train(recipe, output_dir=tmp_path / "run")
    finally:
        registries.methods.unregister("test-nan-features-clip")
    message = str(err.value)
    assert message.startswith("step 3: input `a` has non-finite values")  # the loss's check
    assert "No checkpoint was written before it" in message


def test_epochs_set_the_number_of_steps(make_recipe, tmp_path):
    _, recipe = make_recipe("trainer.max_steps=null", "trainer.epochs=2", "trainer.log_every=4")
    result = train(recipe, output_dir=tmp_path / "run")
    assert result.step == 8  # 64 examples / 16 per batch x 2 epochs
    assert [(r["step"], r["epoch"]) for r in rows(tmp_path / "run")] == [(4, 0), (8, 1)]


def test_command_line(make_recipe, tmp_path, capsys):
    path, _ = make_recipe("trainer.max_steps=2")
    code = main(["train", str(path), "--output-dir", str(tmp_path / "run"), "--set", "optim.lr=0"])
    out = capsys.readouterr().out
    assert code == 0 and "done at step 2" in out
    assert (tmp_path / "run" / "recipe.yaml").read_text().count("lr: 0.0") == 1
    assert main(["train", str(path), "--set", "trainer.batch_size=x"]) == 1
    err = capsys.readouterr().err
    assert "colearn train: error:" in err and "key 'trainer.batch_size': expected int" in err
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    usage = capsys.readouterr().out
    for option in ("RECIPE.yaml", "--set KEY=VALUE", "--resume [latest|PATH]", "--output-dir DIR"):
        assert option in usage
    assert "accelerate launch" in usage and "metrics.jsonl" in usage


def test_trackers_and_mixed_precision_settings(make_recipe, tmp_path):
    _, recipe = make_recipe("trainer.trackers=[nosuchtracker]")
    with pytest.raises(ConfigError, match="unknown tracker 'nosuchtracker'"):
        Trainer(recipe, output_dir=tmp_path / "a")
    _, recipe = make_recipe("trainer.mixed_precision=bf16", "trainer.max_steps=1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = Trainer(recipe, output_dir=tmp_path / "b")
    assert any("training in fp32" in str(w.message) for w in caught)
    assert trainer.accelerator.mixed_precision == "no"


def test_marker_is_written_last(make_recipe, tmp_path):
    _, recipe = make_recipe("trainer.max_steps=1")
    train(recipe, output_dir=tmp_path / "run")
    folder = tmp_path / "run" / "checkpoints" / "step_00000001"
    state = json.loads((folder / CHECKPOINT_MARKER).read_text())
    assert state == {
        "step": 1,
        "epoch": 0,
        "steps_per_epoch": 4,
        "batch_size": 16,
        "processes": 1,
    }
    newest = max(p.stat().st_mtime_ns for p in folder.iterdir())
    assert (folder / CHECKPOINT_MARKER).stat().st_mtime_ns == newest


def test_eval_command_reproduces_the_final_evaluation(make_recipe, tmp_path, capsys):
    path, recipe = make_recipe("trainer.max_steps=3", "eval=[{task: toy-retrieval}]")
    run = tmp_path / "run"
    result = train(recipe, output_dir=run)
    capsys.readouterr()
    saved = tmp_path / "eval.json"
    assert main(["eval", str(path), "--output-dir", str(run), "--save", str(saved)]) == 0
    assert json.loads(capsys.readouterr().out) == result.eval == json.loads(saved.read_text())
    assert main(["eval", str(path), "--set", "eval=[]"]) == 1
    assert "has no eval tasks" in capsys.readouterr().err
