"""Run ``colearn train`` and SIGKILL the process at one precise point (a test driver).

    python crash_train.py FAULT STEP -- <colearn train arguments>

The process kills itself with ``SIGKILL`` (no cleanup, no ``finally``, no atexit: what the OOM
killer or a cluster pre-emption does) at the point named by ``FAULT``, on step ``STEP``:

``step``        inside optimisation step STEP, after the backward pass, before the update
``weights``     while checkpoint STEP writes ``model.safetensors`` (half the file is on disk)
``optimizer``   while checkpoint STEP writes ``optimizer.bin`` (half the file is on disk)
``rng``         while checkpoint STEP writes ``random_states_0.pkl`` (half the file is on disk)
``marker``      while checkpoint STEP writes its completion marker (half of it is on disk)
``publish``     checkpoint STEP is complete in its temporary folder, not yet renamed into place
``prune``       after checkpoint STEP is published, half-way through deleting an older one
``model``       while the final ``save_pretrained`` writes ``model.safetensors`` (half on disk)

If the run ends without reaching the point, the driver exits with code 3 so that a test can
tell "the fault never fired" from "the run survived it".
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

FAULTS = ("step", "weights", "optimizer", "rng", "marker", "publish", "prune", "model")


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _half(path: Path) -> None:
    """Cut a file to half its size, as a write interrupted half-way leaves it."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
        f.flush()
        os.fsync(f.fileno())


def _in_checkpoint(path: Any, step: int) -> bool:
    return Path(path).parent.name == f".tmp-step_{step:08d}"


def install(fault: str, step: int) -> None:
    """Patch the trainer's collaborators so that the process dies at ``fault`` on ``step``."""
    import accelerate.checkpointing
    import huggingface_hub
    import torch

    from colearn_core.train import trainer

    if fault == "step":
        real_step = trainer.Trainer.train_step

        def train_step(self: Any, batch: Any, at: int) -> Any:
            if at == step:
                self.compute_gradients(batch)
                _die()
            return real_step(self, batch, at)

        trainer.Trainer.train_step = train_step  # type: ignore[method-assign]

    elif fault in ("weights", "optimizer"):
        name = "model.safetensors" if fault == "weights" else "optimizer.bin"
        real_save = accelerate.checkpointing.save

        def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> Any:
            real_save(obj, f, *args, **kwargs)
            if Path(f).name == name and _in_checkpoint(f, step):
                _half(Path(f))
                _die()

        accelerate.checkpointing.save = save

    elif fault == "rng":
        real_torch_save = torch.save

        def torch_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> Any:
            real_torch_save(obj, f, *args, **kwargs)
            if isinstance(f, (str, os.PathLike)) and Path(f).name.startswith("random_states_"):
                if _in_checkpoint(f, step):
                    _half(Path(f))
                    _die()

        torch.save = torch_save

    elif fault in ("marker", "publish"):
        real_replace = os.replace

        def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
            src_path = Path(src)
            if fault == "marker" and src_path.name == trainer.CHECKPOINT_MARKER + ".tmp":
                if _in_checkpoint(src_path, step):
                    _half(src_path)
                    _die()
            if fault == "publish" and src_path.name == f".tmp-step_{step:08d}":
                _die()
            return real_replace(src, dst, *args, **kwargs)

        os.replace = replace

    elif fault == "prune":
        real_rmtree = shutil.rmtree

        def rmtree(path: Any, *args: Any, **kwargs: Any) -> Any:
            # an older checkpoint (under its own name or any temporary one) while step STEP
            # is published: delete its first file, then die
            folder = Path(path)
            older = re.search(r"step_(\d{8,})$", folder.name)
            published = folder.parent / f"step_{step:08d}"
            weights = folder / "model.safetensors"
            if older and int(older.group(1)) < step and published.is_dir() and weights.is_file():
                weights.unlink()
                _die()
            return real_rmtree(path, *args, **kwargs)

        shutil.rmtree = rmtree

    elif fault == "model":
        real_save_state = huggingface_hub.save_torch_state_dict

        def save_torch_state_dict(state_dict: Any, save_directory: Any, **kwargs: Any) -> Any:
            result = real_save_state(state_dict, save_directory, **kwargs)
            _half(Path(save_directory) / "model.safetensors")
            _die()
            return result

        huggingface_hub.save_torch_state_dict = save_torch_state_dict

    else:
        raise SystemExit(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")


def main(argv: list[str]) -> int:
    fault, step, separator, *train_args = argv
    if separator != "--":
        raise SystemExit(__doc__)
    import torch

    torch.set_num_threads(1)
    install(fault, int(step))
    from colearn_core.cli import main as colearn

    code = colearn(["train", *train_args])
    print(f"crash_train: the run ended (code {code}) without reaching {fault} at step {step}")
    return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
