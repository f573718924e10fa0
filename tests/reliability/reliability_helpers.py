"""Shared helpers of the reliability tests (a module with a unique name, importable from tests
once ``conftest.py`` has put the test folders on ``sys.path``)."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent


def child_env() -> dict[str, str]:
    """The environment of the subprocesses these tests start: this process's (read now, so
    that fixtures' settings such as ``HF_ENDPOINT`` pass on), only the toy plugin loading (a
    faster start), one thread each (CI has two cores), and the test folders importable."""
    return {
        **os.environ,
        "COLEARN_LOAD_PLUGINS": "colearn-plugin-toy",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(
            [str(HERE), str(TESTS / "hub"), str(TESTS / "train")]
            + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
        ),
    }


PYTHON = sys.executable


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The largest elementwise difference between two state dicts with the same keys."""
    assert a.keys() == b.keys(), sorted(set(a) ^ set(b))
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def model_weights(run: Path) -> dict[str, torch.Tensor]:
    """The final model of a training run folder."""
    return load_file(run / "model" / "model.safetensors")


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """A sha256 over every key, dtype, shape and byte of a state dict."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
