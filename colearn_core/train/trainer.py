"""The trainer: one loop for every method, on ``accelerate.Accelerator``.

A step consumes one global batch of ``trainer.batch_size`` examples. Accelerate splits it
between processes; the trainer splits each process's share into ``grad_accum_steps``
micro-batches and then

- for a contrastive method (``Method.contrastive``) with several micro-batches, computes the
  loss of the *whole* batch from cached features (below), so every micro-batch is a negative
  for every other: the same loss and gradients as one batch of ``batch_size``;
- otherwise runs plain gradient accumulation: the mean of the micro-batch losses.

Contrastive accumulation (the gradient-cache method of Gao et al., 2021; open_clip's
``accum_freq`` is the same idea):

1. embed every micro-batch without a graph, remembering the RNG state each one started from;
2. compute the loss once over all cached features (leaf tensors) and backpropagate it: this
   gives the gradient for each feature row, and the full gradient of the loss's own parameters
   (a learnable temperature) exactly once;
3. re-embed each micro-batch with a graph, from the same RNG state (identical dropout), and
   backpropagate its rows of the cached feature gradient.

Step 3 never runs through DDP's forward, so the trainer averages gradients over processes
itself (what DDP would do). A loss that gathers features from all processes must therefore
return gradients whose average over processes is the single-process gradient (the core
``InfoNCELoss(ddp_scaled=True)`` does). Note: batch-norm layers see micro-batch statistics
and update their running statistics twice per micro-batch in this mode.

Checkpoints (``accelerator.save_state``, safetensors weights) are written to a temporary
folder and renamed into ``<run>/checkpoints/step_XXXXXXXX`` once complete; only folders with a
``trainer_state.json`` count. Resuming restores model, optimiser, scheduler and RNG states and
the data position (the order of an epoch depends only on the seed and the epoch).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..errors import ColearnError, ConfigError
from ..interfaces import Method
from .data import Examples, load_split, make_loader, split_batch
from .evaluate import EvalData, eval_data, run_tasks
from .optim import build_optimizer, build_scheduler
from .recipe import Recipe, recipe_to_dict

__all__ = [
    "CHECKPOINT_MARKER",
    "NonFiniteLossError",
    "TrainResult",
    "TrainingError",
    "Trainer",
    "find_checkpoints",
    "latest_checkpoint",
    "run_folder",
    "train",
]

#: Written last into a checkpoint folder: a folder without it is incomplete and ignored.
CHECKPOINT_MARKER = "trainer_state.json"
_CHECKPOINT = re.compile(r"^step_(\d{8,})$")


class TrainingError(ColearnError):
    """A training step failed; the message names the step and the last good checkpoint."""


class NonFiniteLossError(TrainingError, FloatingPointError):
    """A loss term became NaN or inf; the run stopped before updating the weights."""


@dataclass
class TrainResult:
    """What a finished run returns: its folder, last step, last losses and evaluations."""

    run_dir: Path
    step: int
    losses: dict[str, float] = field(default_factory=dict)
    eval: dict[str, dict[str, float]] = field(default_factory=dict)


def run_folder(recipe: Recipe, output_dir: str | Path | None = None) -> Path:
    """The run folder: ``output_dir``, else ``trainer.output_dir``, else ``runs/<recipe name>``."""
    stem = Path(recipe.source.split(" (with --set")[0]).stem or "run"
    return Path(output_dir or recipe.trainer.output_dir or Path("runs") / stem).absolute()


# --- checkpoint folders ---------------------------------------------------------------------


def find_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``folder`` (a run's ``checkpoints/``), oldest first."""
    folder = Path(folder)
    found = []
    if folder.is_dir():
        for path in folder.iterdir():
            match = _CHECKPOINT.match(path.name)
            if match and (path / CHECKPOINT_MARKER).is_file():
                found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The newest complete checkpoint under ``folder``, or None."""
    found = find_checkpoints(folder)
    return found[-1][1] if found else None


# --- small helpers --------------------------------------------------------------------------


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _norm_running_stats(module: torch.nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(buffer, copy)`` for the running statistics of every batch-norm layer that will
    update them in the next forward pass."""
    saved = []
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                buffer = getattr(m, name, None)
                if buffer is not None:
                    saved.append((buffer, buffer.detach().clone()))
    return saved


def _set_rng_state(state: Mapping[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _has_accelerator() -> bool:
    """A GPU (or another torch accelerator) is usable."""
    if hasattr(torch, "accelerator"):  # torch >= 2.6
        return torch.accelerator.is_available()
    return torch.cuda.is_available() or torch.backends.mps.is_available()


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    """Nested config -> ``{"a.b": scalar}`` (what trackers accept as hyper-parameters)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    elif isinstance(value, (bool, int, float, str)):
        out[prefix] = value
    else:
        out[prefix] = json.dumps(value)
    return out


def _damaged_files(folder: Path) -> list[str]:
    """Files of a checkpoint that cannot be read back: safetensors headers and sizes, torch's
    zip archives (checked without unpickling anything), JSON."""
    import zipfile

    from safetensors import safe_open

    bad = []
    for path in sorted(folder.iterdir()):
        try:
            if path.suffix == ".safetensors":
                with safe_open(path, framework="pt") as f:
                    f.keys()
            elif path.suffix in (".bin", ".pkl", ".pt"):
                with zipfile.ZipFile(path) as archive:
                    broken = archive.testzip()
                if broken is not None:
                    raise ValueError(f"member {broken} fails its CRC check")
            elif path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
        except Exception as exc:  # each library has its own error types
            size = path.stat().st_size if path.exists() else 0
            bad.append(f"{path} ({size} bytes) is unreadable: {type(exc).__name__}: {exc}")
    return bad


def _remove_checkpoint(folder: Path) -> None:
    """Delete a checkpoint folder. It is renamed to a ``.tmp-`` name first (one atomic step),
    so a crash half-way through the deletion never leaves a folder that still has its
    completion marker but lost other files; ``.tmp-`` folders are cleared when a run starts."""
    doomed = folder.with_name(f".tmp-delete-{folder.name}")
    shutil.rmtree(doomed, ignore_errors=True)
    os.replace(folder, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _resolve_trackers(names: Sequence[str] | None) -> list[str]:
    import importlib.util

    from accelerate.tracking import get_available_trackers
    from accelerate.utils import LoggerType

    if names is None:  # tensorboard when installed
        found = importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX")
        return ["tensorboard"] if found else []
    known = [str(t) for t in LoggerType]
    available = [str(t) for t in get_available_trackers()]
    out = []
    for name in names:
        if name not in known:
            raise ConfigError(
                f"key 'trainer.trackers': unknown tracker {name!r}; accelerate knows "
                f"{', '.join(k for k in known if k != 'all')}"
            )
        if name != "all" and name not in available:
            raise ConfigError(
                f"key 'trainer.trackers': tracker {name!r} is not installed (pip install {name})"
            )
        out.append(name)
    return out


# --- the trainer ----------------------------------------------------------------------------


class Trainer:
    """Builds everything a recipe names and runs it: ``Trainer(recipe).fit()``.

    ``output_dir`` overrides ``trainer.output_dir``; ``resume`` is None (a fresh run),
    ``"latest"`` or the path of a checkpoint folder.
    """

    def __init__(
        self,
        recipe: Recipe,
        *,
        output_dir: str | Path | None = None,
        resume: str | Path | None = None,
    ) -> None:
        from accelerate import Accelerator
        from accelerate.utils import DataLoaderConfiguration, parse_flag_from_env, set_seed

        from ..registry import registries

        self.recipe = recipe
        t, d = recipe.trainer, recipe.data
        self.run_dir = run_folder(recipe, output_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.resume = resume

        # Decide CPU before anything touches accelerate's process state: on a machine without
        # accelerators, processes started by torchrun / `accelerate launch --multi_gpu` then
        # join one gloo group (multi-CPU) instead of each training alone.
        cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or not _has_accelerator()
        mixed = t.mixed_precision
        if cpu and mixed != "no":
            warnings.warn(
                f"trainer.mixed_precision={mixed} is not used on CPU (too slow there); "
                "training in fp32",
                stacklevel=2,
            )
            mixed = "no"
        trackers = _resolve_trackers(t.trackers)
        self.accelerator = acc = Accelerator(
            cpu=cpu,
            mixed_precision=mixed,
            log_with=trackers or None,
            project_dir=str(self.run_dir),
            # One scheduler step per optimiser step, whatever the number of processes.
            step_scheduler_with_optimizer=False,
            # batch_size is global: each process gets its slice of every batch.
            dataloader_config=DataLoaderConfiguration(split_batches=True),
        )
        self.processes = acc.num_processes
        if (
            cpu
            and self.processes == 1
            and "MASTER_PORT" in os.environ
            and not (os.environ.get("WORLD_SIZE") or os.environ.get("PMI_SIZE"))
        ):
            warnings.warn(
                "several processes were asked for, but this one runs alone: `accelerate launch "
                "--cpu` starts one process unless MPI is installed. On a machine without GPUs, "
                "`accelerate launch --multi_gpu --num_processes N` (or torchrun) starts N CPU "
                "processes",
                stacklevel=2,
            )
        self.accum = t.grad_accum_steps
        if t.batch_size % (self.processes * self.accum):
            raise ConfigError(
                f"{recipe.source}: 'trainer.batch_size' ({t.batch_size}) must be a multiple of "
                f"processes x grad_accum_steps = {self.processes} x {self.accum}"
            )

        set_seed(t.seed)  # the same initial weights in every process
        method_cls = registries.methods.get(recipe.method.name)
        method = method_cls.from_config(recipe.method.config)
        if not isinstance(method, Method):
            raise ConfigError(
                f"method {recipe.method.name!r} built a {type(method).__name__}, not a Method"
            )
        self.cached_contrastive = bool(type(method).contrastive) and self.accum > 1

        train_data = load_split(d, d.split)
        self.examples = Examples(
            train_data,
            d.columns,
            method.modalities,
            label_column=d.label_column,
            name=f"dataset {d.dataset!r} split {d.split!r}",
        )
        self.steps_per_epoch = len(self.examples) // t.batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"{recipe.source}: {self.examples.name} has {len(self.examples)} examples, "
                f"fewer than one batch (trainer.batch_size={t.batch_size})"
            )
        self.max_steps = t.max_steps or t.epochs * self.steps_per_epoch  # type: ignore[operator]
        loader, self.sampler = make_loader(
            self.examples, t.batch_size, seed=t.seed, num_workers=d.num_workers
        )
        optimizer = build_optimizer(method, recipe.optim)
        scheduler = build_scheduler(optimizer, recipe.optim, self.max_steps)
        self.model, self.optimizer, self.loader, self.scheduler = acc.prepare(
            method, optimizer, loader, scheduler
        )
        self.method: Method = acc.unwrap_model(self.model)
        # Different dropout masks in each process from here on (a resume restores them).
        set_seed(t.seed, device_specific=True)

        self._eval_data: EvalData | None = None
        self.eval_history: list[dict[str, Any]] = []
        self.last_eval: dict[str, dict[str, float]] = {}
        self.metrics_path = self.run_dir / "metrics.jsonl"

    # --- one optimisation step --------------------------------------------------------------

    def compute_gradients(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Forward and backward on one process-local batch, accumulating its gradient into
        the parameters' ``.grad`` (synchronised over processes). Returns the loss terms of
        this process's batch."""
        micro = split_batch(batch, self.accum) if self.accum > 1 else [batch]
        if self.cached_contrastive:
            return self._contrastive_backward(micro, batch)
        return self._accumulated_backward(micro)

    def train_step(self, batch: Mapping[str, Any], step: int) -> dict[str, float]:
        """One optimisation step on one process-local batch; returns ``loss`` and ``loss/<term>``
        averaged over processes, with ``lr`` (and ``grad_norm`` when clipping). ``step``
        (1-based) names the step in errors."""
        try:
            losses = self.compute_gradients(batch)
        except ColearnError as exc:  # e.g. a loss refusing NaN features
            self.optimizer.zero_grad(set_to_none=True)
            raise TrainingError(f"step {step}: {exc}. {self._last_good()}") from exc
        values = self._mean_over_processes(losses)
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if bad:
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError(self._non_finite_message(step, bad))
        # accelerate's optimizer wrapper looks optional packages up on every step() and
        # zero_grad() (~2 ms each on CPU); it is needed only for the fp16 loss scaler.
        scaled = self.accelerator.scaler is not None
        optimizer = self.optimizer if scaled else self.optimizer.optimizer
        clip = self.recipe.optim.clip_grad_norm
        if clip is not None:
            if scaled:
                self.accelerator.unscale_gradients()  # clip the true gradients
            norm = torch.nn.utils.clip_grad_norm_(self.method.parameters(), clip)
            values["grad_norm"] = float(norm)
        values["lr"] = self.scheduler.get_last_lr()[0]
        optimizer.step()  # the scaler skips it when fp16 gradients overflowed
        self.scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return values

    def _accumulated_backward(self, micro: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        totals: dict[str, torch.Tensor] = {}
        for i, mb in enumerate(micro):
            last = i == len(micro) - 1
            # Gradients are synchronised across processes once, after the last micro-batch.
            with nullcontext() if last else self.accelerator.no_sync(self.model):
                losses = self.model(mb).losses  # (through DDP + autocast)
                if not losses:
                    raise ColearnError(
                        f"method {self.recipe.method.name!r} returned no loss terms for a "
                        "training batch (are all the modalities it needs in data.columns?)"
                    )
                self.accelerator.backward(torch.stack(list(losses.values())).sum() / len(micro))
            for name, value in losses.items():
                totals[name] = totals.get(name, 0) + value.detach().float() / len(micro)
        return totals

    def _contrastive_backward(
        self, micro: Sequence[Mapping[str, Any]], batch: Mapping[str, Any]
    ) -> dict[str, torch.Tensor]:
        method, acc, device = self.method, self.accelerator, self.accelerator.device
        # 1. features of every micro-batch, no graph. Step 3 runs the same forward passes
        # again: batch-norm running statistics are put back so that they move once per batch.
        starts, cached_parts = [], []
        norm_stats = _norm_running_stats(method)
        with torch.no_grad(), acc.autocast():
            for mb in micro:
                starts.append(_rng_state(device))
                cached_parts.append(method.embed(mb))
            for buffer, saved in norm_stats:
                buffer.copy_(saved)
        after = _rng_state(device)
        cached = {
            name: torch.cat([part[name] for part in cached_parts]).requires_grad_()
            for name in cached_parts[0]
        }  # {modality: (B_local, D)}
        # 2. the loss of the whole batch; d loss / d features and the loss's own parameters
        with acc.autocast():
            losses = method.losses_from_embeddings(cached, batch)
        if not losses:
            raise ColearnError(
                f"method {self.recipe.method.name!r} returned no loss terms from its embeddings"
            )
        acc.backward(torch.stack(list(losses.values())).sum())
        # 3. re-embed each micro-batch with a graph and push its rows of the gradient through
        row = 0
        for state, part, mb in zip(starts, cached_parts, micro):
            rows = next(iter(part.values())).shape[0]
            _set_rng_state(state, device)
            with acc.autocast():
                fresh = method.embed(mb)
            # a frozen tower's features carry no graph: nothing to push through
            names = [n for n in fresh if cached[n].grad is not None and fresh[n].requires_grad]
            torch.autograd.backward(
                [fresh[n] for n in names], [cached[n].grad[row : row + rows] for n in names]
            )
            row += rows
        _set_rng_state(after, device)
        self._average_gradients()
        return {name: value.detach().float() for name, value in losses.items()}

    def _average_gradients(self, bucket_numel: int = 1 << 24) -> None:
        """Average parameter gradients over processes (what DDP does in its backward)."""
        if self.processes == 1:
            return
        params = [p for p in self.method.parameters() if p.requires_grad]
        # A parameter with a gradient on any process gets one (zeros) on all, so that every
        # process reduces the same list; one used nowhere keeps None, as in one process.
        device = self.accelerator.device
        used = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=device)
        dist.all_reduce(used, op=dist.ReduceOp.MAX)
        grads = []
        for p, anywhere in zip(params, used.tolist()):
            if anywhere:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                grads.append(p.grad)
        bucket: list[torch.Tensor] = []
        for i, g in enumerate(grads):
            bucket.append(g)
            full = sum(b.numel() for b in bucket) >= bucket_numel
            if full or i == len(grads) - 1 or grads[i + 1].dtype != g.dtype:
                flat = torch._utils._flatten_dense_tensors(bucket)
                dist.all_reduce(flat)
                flat /= self.processes
                for b, synced in zip(bucket, torch._utils._unflatten_dense_tensors(flat, bucket)):
                    b.copy_(synced)
                bucket = []

    def _mean_over_processes(self, losses: Mapping[str, torch.Tensor]) -> dict[str, float]:
        names = list(losses)
        values = torch.stack([losses[n].reshape(()) for n in names])
        if self.processes > 1:
            values = self.accelerator.reduce(values, reduction="mean")
        out = {f"loss/{n}": v for n, v in zip(names, values.tolist())}
        out["loss"] = float(sum(out.values()))
        return out

    def _last_good(self) -> str:
        last = latest_checkpoint(self.ckpt_dir)
        if last is None:
            return "No checkpoint was written before it"
        return f"The last good checkpoint is {last}"

    def _non_finite_message(self, step: int, bad: Mapping[str, float]) -> str:
        terms = ", ".join(f"{k.removeprefix('loss/')!r} = {v}" for k, v in bad.items())
        return (
            f"non-finite loss at step {step}: {terms}. The run stopped before updating the "
            f"weights. {self._last_good()}; lower optim.lr, set optim.clip_grad_norm or add "
            "warmup, then continue with --resume latest."
        )

    # --- the loop ---------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        """Train to ``max_steps`` (resuming if asked), evaluating and checkpointing on the way;
        writes the final model to ``<run>/model``."""
        from tqdm.auto import tqdm

        acc, t = self.accelerator, self.recipe.trainer
        step = self._start()
        if acc.trackers:
            hparams = _flatten("", recipe_to_dict(self.recipe), {})
            acc.init_trackers(self.run_dir.name, config=hparams)
        acc.print(
            f"colearn train: {self.recipe.method.name} on {self.examples.name}, "
            f"{self.max_steps} steps of {t.batch_size} examples ({self.processes} process(es) x "
            f"{self.accum} micro-batch(es)), run folder {self.run_dir}"
        )
        bar = tqdm(
            total=self.max_steps,
            initial=step,
            desc="train",
            unit="step",
            dynamic_ncols=True,
            mininterval=0.1 if sys.stderr.isatty() else 10.0,  # few lines in log files
            disable=not acc.is_main_process,
        )
        values: dict[str, float] = {}
        saved_at = evaluated_at = step
        clock, clock_step = time.perf_counter(), step
        self.model.train()
        try:
            while step < self.max_steps:
                epoch, skip = divmod(step, self.steps_per_epoch)
                self.loader.set_epoch(epoch)
                self.sampler.set_epoch(epoch)
                batches = acc.skip_first_batches(self.loader, skip) if skip else self.loader
                for batch in batches:
                    values = self.train_step(batch, step + 1)
                    step += 1
                    bar.update(1)
                    if step % t.log_every == 0 or step == self.max_steps:
                        now = time.perf_counter()
                        rate = (step - clock_step) * t.batch_size / max(now - clock, 1e-9)
                        clock, clock_step = now, step
                        self._log(step, epoch, {**values, "samples_per_s": rate})
                        bar.set_postfix(loss=f"{values['loss']:.4f}", samples_s=f"{rate:.0f}")
                    if t.eval_every and step % t.eval_every == 0 and self.recipe.eval:
                        self.evaluate(step)
                        evaluated_at = step
                    if t.checkpoint_every and step % t.checkpoint_every == 0:
                        self.save_checkpoint(step)
                        saved_at = step
                    if step >= self.max_steps:
                        break
            if self.recipe.eval and evaluated_at != step:
                self.evaluate(step)
            if saved_at != step or not find_checkpoints(self.ckpt_dir):
                self.save_checkpoint(step)
            self.save_model()
        finally:
            bar.close()
            if acc.trackers:
                acc.end_training()
        return TrainResult(self.run_dir, step, values, self.last_eval)

    def _start(self) -> int:
        """Prepare the run folder; load the checkpoint to resume from. Returns the step."""
        acc = self.accelerator
        checkpoint = self._checkpoint_to_resume()
        step = 0
        if checkpoint is not None:
            try:
                state = json.loads((checkpoint / CHECKPOINT_MARKER).read_text(encoding="utf-8"))
                int(state["step"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ConfigError(self._damaged(checkpoint, exc)) from exc
            for key, mine in (
                ("batch_size", self.recipe.trainer.batch_size),
                ("steps_per_epoch", self.steps_per_epoch),
            ):
                if state.get(key) != mine:
                    raise ConfigError(
                        f"cannot resume from {checkpoint}: it was trained with "
                        f"{key}={state.get(key)}, this recipe gives {mine}; the data order "
                        "would not continue"
                    )
            try:
                acc.load_state(str(checkpoint))
            except Exception as exc:  # safetensors, torch and accelerate errors name no file
                raise ConfigError(self._damaged(checkpoint, exc)) from exc
            step = int(state["step"])
            acc.print(f"colearn train: resumed from {checkpoint} (step {step})")
        if acc.is_main_process:
            import yaml

            self.run_dir.mkdir(parents=True, exist_ok=True)
            for stale in self.ckpt_dir.glob(".tmp-*"):  # a save interrupted by a crash
                shutil.rmtree(stale, ignore_errors=True)
            (self.run_dir / "recipe.yaml").write_text(
                yaml.safe_dump(recipe_to_dict(self.recipe), sort_keys=False), encoding="utf-8"
            )
            self._truncate_logs(step)
        acc.wait_for_everyone()
        return step

    def _damaged(self, checkpoint: Path, exc: BaseException) -> str:
        """Why ``checkpoint`` cannot be resumed from: its damaged files, and what to do."""
        bad = _damaged_files(checkpoint)
        what = "; ".join(bad) if bad else f"{type(exc).__name__}: {exc}"
        earlier = [p for s, p in find_checkpoints(self.ckpt_dir) if p.name < checkpoint.name]
        if earlier:
            hint = f"resume from the one before it: --resume {earlier[-1]}"
        else:
            hint = "no earlier checkpoint is left: start afresh with another --output-dir"
        return f"cannot resume from {checkpoint}: it is damaged ({what}); {hint}"

    def _checkpoint_to_resume(self) -> Path | None:
        existing = latest_checkpoint(self.ckpt_dir)
        if self.resume is None:
            if existing is not None:
                raise ConfigError(
                    f"{self.run_dir} already has checkpoints (latest: {existing.name}); pass "
                    "--resume to continue that run, or choose another --output-dir"
                )
            return None
        if str(self.resume) == "latest":
            if existing is None:
                self.accelerator.print(
                    f"colearn train: no checkpoint in {self.ckpt_dir} to resume; starting afresh"
                )
            return existing
        path = Path(self.resume).expanduser().absolute()
        if not (path / CHECKPOINT_MARKER).is_file():
            raise ConfigError(
                f"--resume {self.resume}: not a complete checkpoint folder (no {CHECKPOINT_MARKER}"
                f"); complete ones in {self.ckpt_dir}: "
                + (", ".join(p.name for _, p in find_checkpoints(self.ckpt_dir)) or "none")
            )
        return path

    def _truncate_logs(self, step: int) -> None:
        """Forget log lines and evaluations of steps after ``step`` (from a killed run)."""
        if self.metrics_path.is_file():
            kept = []
            for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line torn by the crash (or a full disk)
                    continue
                if isinstance(row, dict) and isinstance(row.get("step"), int):
                    if row["step"] <= step:
                        kept.append(line)
            # replaced in one step: a crash now must not lose the lines that are kept
            tmp = self.metrics_path.with_name(self.metrics_path.name + ".tmp")
            tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
            os.replace(tmp, self.metrics_path)
        eval_path = self.run_dir / "eval.json"
        if eval_path.is_file():
            history = json.loads(eval_path.read_text(encoding="utf-8")).get("history", [])
            self.eval_history = [h for h in history if h["step"] <= step]

    def _log(self, step: int, epoch: int, values: Mapping[str, float]) -> None:
        acc = self.accelerator
        if acc.trackers:
            acc.log(dict(values), step=step)
        if acc.is_main_process:
            row = {"step": step, "epoch": epoch, **values, "time": time.time()}
            with open(self.metrics_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    # --- checkpoints ------------------------------------------------------------------------

    def save_checkpoint(self, step: int) -> Path:
        """Write ``checkpoints/step_XXXXXXXX`` atomically and prune to ``keep_last``."""
        acc = self.accelerator
        final = self.ckpt_dir / f"step_{step:08d}"
        tmp = self.ckpt_dir / f".tmp-step_{step:08d}"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp), safe_serialization=True)
        acc.wait_for_everyone()
        if acc.is_main_process:
            state = {
                "step": step,
                "epoch": step // self.steps_per_epoch,
                "steps_per_epoch": self.steps_per_epoch,
                "batch_size": self.recipe.trainer.batch_size,
                "processes": self.processes,
            }
            _write_json(tmp / CHECKPOINT_MARKER, state)
            if final.exists():  # the same step saved again after a resume
                _remove_checkpoint(final)
            os.replace(tmp, final)
            for _, old in find_checkpoints(self.ckpt_dir)[: -self.recipe.trainer.keep_last]:
                _remove_checkpoint(old)
        acc.wait_for_everyone()
        return final

    def save_model(self) -> Path | None:
        """The trained model, in the Hub layout, to ``<run>/model`` (main process); the last
        evaluation goes into its model card."""
        folder = self.run_dir / "model"
        if self.accelerator.is_main_process:
            dataset = Path(self.recipe.data.dataset).name
            results = {f"{task}/{dataset}": m for task, m in self.last_eval.items()}
            self.method.save_pretrained(folder, results=results or None)
        self.accelerator.wait_for_everyone()
        return folder

    # --- evaluation -------------------------------------------------------------------------

    def evaluate(self, step: int) -> dict[str, dict[str, float]]:
        """Run every ``eval`` task on the main process; log and save ``<run>/eval.json``."""
        acc = self.accelerator
        results: dict[str, dict[str, float]] = {}
        if acc.is_main_process:
            if self._eval_data is None:
                self._eval_data = eval_data(self.recipe, self.method, acc.device)
            with acc.autocast():
                results = run_tasks(self.method, self.recipe.eval, self._eval_data)
            self.eval_history.append({"step": step, "results": results})
            _write_json(
                self.run_dir / "eval.json",
                {"step": step, "results": results, "history": self.eval_history},
            )
            flat = {f"eval/{task}/{k}": v for task, m in results.items() for k, v in m.items()}
            acc.print(f"colearn train: step {step} eval " + json.dumps(flat))
            self._log(step, step // self.steps_per_epoch, flat)
        acc.wait_for_everyone()
        self.last_eval = results
        return results


def train(
    recipe: Recipe, *, output_dir: str | Path | None = None, resume: str | Path | None = None
) -> TrainResult:
    """Train ``recipe`` (see :class:`Trainer`)."""
    return Trainer(recipe, output_dir=output_dir, resume=resume).fit()
