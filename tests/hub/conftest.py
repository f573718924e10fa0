"""Fixtures for the Hub tests: a local Hub-API server, a fresh Hub cache, toy models."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from hub_server import HubServer

from colearn_core import Method, registries


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A Hub server on 127.0.0.1 and an empty cache, for this process and its subprocesses.

    huggingface_hub reads HF_ENDPOINT and HF_HOME once, at import: the environment is set for
    subprocesses and the already-imported constants are patched for this process.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()
    server = HubServer().start()
    home = tmp_path / "hf-home"
    env = {
        "HF_ENDPOINT": server.url,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("HF_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(key, raising=False)
    patches = {
        "ENDPOINT": server.url,
        "HUGGINGFACE_CO_URL_TEMPLATE": server.url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "HF_HUB_OFFLINE": False,
    }
    for key, value in patches.items():
        monkeypatch.setattr(constants, key, value)
    yield server
    server.stop()


@pytest.fixture
def make_model() -> Callable[..., Method]:
    """``make_model(seed, **config)``: a toy-clip model with seeded random weights."""

    def make(seed: int = 0, **config: object) -> Method:
        torch.manual_seed(seed)
        model = registries.methods.get("toy-clip").from_config({"width": 16, **config})
        with torch.no_grad():  # logit_scale starts at a constant: make it differ per seed too
            model.logit_scale.add_(torch.randn(()))
        return model.eval()

    return make


@pytest.fixture
def batch() -> dict[str, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(123)
    return {
        "a": {"values": torch.randn(5, 8, generator=g)},
        "b": {"values": torch.randn(5, 8, generator=g)},
    }


@pytest.fixture
def max_abs_diff(batch: dict) -> Callable[[Method, Method], float]:
    """``max_abs_diff(m1, m2)``: the largest difference between two models' embeddings on
    ``batch`` (towers both have) and their temperatures."""

    def diff(m1: Method, m2: Method) -> float:
        with torch.no_grad():
            e1, e2 = m1.embed(batch), m2.embed(batch)
        assert e1.keys() == e2.keys()
        diffs = [(e1[k] - e2[k]).abs().max().item() for k in e1]
        diffs.append((m1.logit_scale - m2.logit_scale).abs().item())
        return max(diffs)

    return diff
