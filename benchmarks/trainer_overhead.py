"""Throughput of colearn's training loop against a hand-written PyTorch loop, on CPU.

    python benchmarks/trainer_overhead.py --steps 60 --repeats 3

Both loops train the same model (the test plugin's ``toy-clip``, two MLP towers, widened
with ``--width``) on the same data (``toy-pairs`` vectors read from a ``datasets.Dataset``
through the same preprocessing and collation) with the same optimiser (AdamW, warmup +
cosine, gradient clipping). The hand-written loop is the textbook one: DataLoader, forward,
``backward``, ``clip_grad_norm_``, ``step``, the loss read back every ``--log-every`` steps.
colearn's loop is ``Trainer.fit()`` with checkpoints and evaluation switched off: it adds
accelerate's wrappers, the per-step loss reduction and NaN check, metrics.jsonl, the progress
bar and the lr schedule bookkeeping.

Time is counted from the end of step ``--log-every`` to the last step, so start-up and the
first steps' warm-up are left out; the final checkpoint and model save of ``fit()`` come after
the last step and are not counted. The time between consecutive log points (every
``--log-every`` steps) is one sample; each loop runs ``--repeats`` times, alternating, and the
median sample of each loop is reported. On a shared machine the process's CPU time (one torch
thread, no DataLoader workers) is what is compared; wall-clock numbers are printed too.

Prints one JSON document on stdout; needs ``pip install -e tests/plugins/colearn-plugin-toy``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch


def recipe_data(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "method": {
            "name": "toy-clip",
            "config": {"dim": args.dim, "width": args.width, "embed_dim": args.embed_dim},
        },
        "data": {
            "dataset": "toy-pairs",
            "builder_args": {"n": args.batch_size * (args.steps + 1), "dim": args.dim},
            "columns": {"a": "a", "b": "b"},
        },
        "optim": {"lr": 1.0e-3, "warmup_steps": 5, "weight_decay": 0.1, "clip_grad_norm": 1.0},
        "trainer": {
            "max_steps": args.steps,
            "batch_size": args.batch_size,
            "log_every": args.log_every,
            "trackers": [],
            "seed": 0,
        },
    }


def run_trainer(args: argparse.Namespace) -> list[dict[str, float]]:
    from accelerate.state import AcceleratorState, GradientState

    from colearn_core.train.recipe import parse_recipe
    from colearn_core.train.trainer import Trainer

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(parse_recipe(recipe_data(args), "benchmark"), output_dir=Path(tmp))
        marks: list[tuple[int, float, float]] = []
        log = trainer._log

        def timed_log(step: int, epoch: int, values: Any) -> None:
            log(step, epoch, values)
            marks.append((step, time.process_time(), time.perf_counter()))

        trainer._log = timed_log  # type: ignore[method-assign]
        trainer.fit()
    return intervals(marks, args.batch_size)


def intervals(marks: list[tuple[int, float, float]], batch_size: int) -> list[dict[str, float]]:
    """Samples, CPU and wall seconds between consecutive log points."""
    return [
        {"samples": (s1 - s0) * batch_size, "cpu_s": c1 - c0, "wall_s": w1 - w0}
        for (s0, c0, w0), (s1, c1, w1) in zip(marks, marks[1:])
    ]


def run_pytorch(args: argparse.Namespace) -> list[dict[str, float]]:
    from torch.utils.data import DataLoader

    from colearn_core import registries
    from colearn_core.train.data import Collate, Examples
    from colearn_core.train.optim import lr_factor, param_groups

    torch.manual_seed(0)
    recipe = recipe_data(args)
    model = registries.methods.get("toy-clip").from_config(recipe["method"]["config"])
    dataset = registries.datasets.get("toy-pairs")(**recipe["data"]["builder_args"])
    examples = Examples(dataset, {"a": "a", "b": "b"}, model.modalities)
    loader = DataLoader(
        examples,
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        collate_fn=Collate(examples.modalities),
    )
    optimizer = torch.optim.AdamW(param_groups(model, 0.1), lr=1.0e-3, betas=(0.9, 0.999))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_factor(s, warmup_steps=5, total_steps=args.steps, schedule="cosine"),
    )
    model.train()
    step, marks = 0, []
    while step < args.steps:
        for batch in loader:
            loss = model(batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            if step % args.log_every == 0 or step == args.steps:
                loss.item()
                marks.append((step, time.process_time(), time.perf_counter()))
            if step == args.steps:
                break
    return intervals(marks, args.batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--dim", type=int, default=64, help="input vector length")
    parser.add_argument("--width", type=int, default=512, help="MLP width of each tower")
    parser.add_argument("--embed-dim", type=int, default=128)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    runs: dict[str, list[dict[str, float]]] = {"colearn": [], "pytorch": []}
    for i in range(args.repeats):
        for name, run in (("pytorch", run_pytorch), ("colearn", run_trainer)):
            parts = run(args)
            runs[name] += parts
            rate = sum(p["samples"] for p in parts) / sum(p["cpu_s"] for p in parts)
            print(f"[{i + 1}/{args.repeats}] {name}: {rate:.0f} samples/cpu-s", file=sys.stderr)

    def rate(name: str, clock: str) -> float:
        """Median over every timed interval of every repeat: robust to bursts of load."""
        return statistics.median(p["samples"] / p[clock] for p in runs[name])

    cpu = {n: round(rate(n, "cpu_s"), 1) for n in runs}
    wall = {n: round(rate(n, "wall_s"), 1) for n in runs}
    report = {
        "benchmark": "trainer_overhead",
        "device": "cpu",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": args.threads,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "interval_steps": args.log_every,
        "intervals_per_loop": len(runs["colearn"]),
        "model": {"method": "toy-clip", "dim": args.dim, "width": args.width},
        "median_samples_per_cpu_s": cpu,
        "median_samples_per_wall_s": wall,
        "colearn_vs_pytorch_cpu": round(cpu["colearn"] / cpu["pytorch"], 4),
        "colearn_vs_pytorch_wall": round(wall["colearn"] / wall["pytorch"], 4),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
