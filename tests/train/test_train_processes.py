"""Runs in separate processes: two processes under `accelerate launch`, and a run killed with
SIGKILL then resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from colearn_core.train.trainer import latest_checkpoint, train

ENV = {
    **os.environ,
    "COLEARN_LOAD_PLUGINS": "colearn-plugin-toy",  # start faster: only what the recipe needs
    "OMP_NUM_THREADS": "1",
    "PYTHONUNBUFFERED": "1",
}


def losses(run: Path) -> dict[int, float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if "loss" in r}


def max_diff(run_a: Path, run_b: Path) -> float:
    a = load_file(run_a / "model" / "model.safetensors")
    b = load_file(run_b / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.mark.parametrize(
    "accum",
    [
        2,  # contrastive accumulation: cached features, gradients averaged by the trainer
        pytest.param(1, marks=pytest.mark.slow),  # one micro-batch: DDP averages gradients
    ],
)
def test_two_processes_match_one_process_on_the_same_global_batch(make_recipe, tmp_path, accum):
    path, recipe = make_recipe("trainer.checkpoint_every=6")
    single = tmp_path / "single"
    train(recipe, output_dir=single)

    double = tmp_path / "double"
    # On a machine without GPUs, `--multi_gpu` starts the processes with torchrun and the
    # trainer makes them one gloo (CPU) group. (`--cpu --num_processes 2` starts one process
    # unless MPI is installed.)
    command = [
        *(sys.executable, "-m", "accelerate.commands.launch"),
        *("--multi_gpu", "--num_processes", "2", "--num_machines", "1"),
        *("--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"),
        *("-m", "colearn", "train", str(path), "--output-dir", str(double)),
        *("--set", f"trainer.grad_accum_steps={accum}"),
    ]
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(2 process(es)" in done.stdout, done.stdout
    checkpoint = double / "checkpoints" / "step_00000006"
    assert json.loads((checkpoint / "trainer_state.json").read_text())["processes"] == 2
    assert (checkpoint / "random_states_1.pkl").is_file()  # the second process's RNG

    one, two = losses(single), losses(double)
    assert sorted(two) == [1, 2, 3, 4, 5, 6]
    for step in two:
        assert two[step] == pytest.approx(one[step], abs=1e-4), step
    assert max_diff(single, double) <= 1e-5


def test_sigkilled_run_resumes_to_the_same_weights(make_recipe, tmp_path):
    # Dropout + contrastive accumulation: the RNG states and the data position must both
    # be restored. 12 steps of 16 over 64 examples: three epochs.
    sets = (
        "trainer.max_steps=12",
        "trainer.checkpoint_every=2",
        "trainer.keep_last=2",
        "trainer.grad_accum_steps=2",
        "method.config.dropout=0.1",
    )
    path, recipe = make_recipe(*sets)
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "colearn", "train", str(path), "--output-dir", str(killed)]
    # 0.05 s per embed call (4 per step) keeps the run going long enough to be killed.
    command += ["--set", "method.config.sleep=0.05"]
    proc = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    marker = killed / "checkpoints" / "step_00000004" / "trainer_state.json"
    deadline = time.monotonic() + 240
    while not marker.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    output = proc.communicate()[0].decode(errors="replace")
    assert proc.returncode == -signal.SIGKILL, output[-3000:]
    assert marker.is_file() and not (killed / "model").exists()
    stopped_at = int(latest_checkpoint(killed / "checkpoints").name.split("_")[1])
    assert 4 <= stopped_at < 12

    result = train(recipe, output_dir=killed, resume="latest")
    assert result.step == 12
    whole = tmp_path / "whole"
    train(recipe, output_dir=whole)
    assert max_diff(killed, whole) <= 1e-6
    resumed, reference = losses(killed), losses(whole)
    assert sorted(resumed) == list(range(1, 13))
    assert resumed == pytest.approx(reference, abs=1e-6)
