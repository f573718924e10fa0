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
    pass over the data more than once).

    The first complete pass keeps the (CPU) batches when they total at most ``cache_bytes``,
    so later passes and later tasks skip decoding and preprocessing; larger splits are read
    again each pass. Eval preprocessing is deterministic, so the cached batches are the ones
    a new pass would produce.
    """

    def __init__(self, loader: Any, device: torch.device, cache_bytes: int = 1 << 30) -> None:
        self.loader, self.device, self.cache_bytes = loader, device, cache_bytes
        self._cache: list[Any] | None = None

    def __iter__(self) -> Iterator[Any]:
        from accelerate.utils import send_to_device

        # Copies in and out of the cache: a task may change a batch in place (e.g. masking).
        if self._cache is not None:
            for batch in self._cache:
                yield send_to_device(_clone(batch), self.device)
            return
        kept: list[Any] | None = [] if self.cache_bytes > 0 else None
        size = 0
        for batch in self.loader:
            if kept is not None:
                size += _nbytes(batch)
                if size <= self.cache_bytes:
                    kept.append(_clone(batch))
                else:
                    kept = None
            yield send_to_device(batch, self.device)
        self._cache = kept  # only a complete pass is kept (a task may stop early)

    def __len__(self) -> int:
        return len(self.loader)


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return type(value)({k: _clone(v) for k, v in value.items()})
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
        return type(value)(*(_clone(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(_clone(v) for v in value)
    return value


def _nbytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    return 0


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
        extra_columns=d.eval_columns,
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
