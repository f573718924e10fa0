"""Evaluation: the recipe's ``eval`` tasks on its evaluation split, during training (the
trainer calls :func:`run_tasks` every ``trainer.eval_every`` steps) or afterwards
(``colearn eval``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from ..interfaces import Method
from .data import Examples, load_split, make_loader
from .recipe import EvalConfig, Recipe

__all__ = ["EvalData", "eval_data", "run_tasks"]


class EvalData:
    """A re-iterable view of a DataLoader whose batches are moved to ``device`` (tasks may
    pass over the data more than once)."""

    def __init__(self, loader: Any, device: torch.device) -> None:
        self.loader, self.device = loader, device

    def __iter__(self) -> Iterator[Any]:
        from accelerate.utils import send_to_device

        for batch in self.loader:
            yield send_to_device(batch, self.device)

    def __len__(self) -> int:
        return len(self.loader)


def eval_data(
    recipe: Recipe, model: Method, device: torch.device, batch_size: int | None = None
) -> EvalData:
    """Batches of ``data.eval_split`` (or ``data.split``), in order, for the eval tasks.
    ``batch_size`` defaults to one micro-batch of training."""
    d, t = recipe.data, recipe.trainer
    split = d.eval_split or d.split
    examples = Examples(
        load_split(d, split),
        d.columns,
        model.modalities,
        label_column=d.label_column,
        name=f"dataset {d.dataset!r} split {split!r}",
    )
    loader, _ = make_loader(
        examples,
        batch_size or t.batch_size // t.grad_accum_steps,
        seed=t.seed,
        shuffle=False,
        drop_last=False,
        num_workers=d.num_workers,
    )
    return EvalData(loader, device)


def run_tasks(
    model: Method, tasks: Sequence[EvalConfig], data: EvalData
) -> dict[str, dict[str, float]]:
    """``{task: {metric: value}}`` for every task (a task listed twice gets ``name#i``).

    Runs in eval mode without gradients and leaves the model's mode and the global RNG (a
    resumed run must see the same random numbers) as they were.
    """
    from ..registry import registries

    results: dict[str, dict[str, float]] = {}
    was_training = model.training
    devices = [data.device] if data.device.type == "cuda" else []
    model.eval()
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            for i, entry in enumerate(tasks):
                task = registries.tasks.get(entry.task)(**entry.args)
                metrics = task.evaluate(model, data)
                key = entry.task if entry.task not in results else f"{entry.task}#{i}"
                results[key] = {k: float(v) for k, v in metrics.items()}
    finally:
        model.train(was_training)
    return results
