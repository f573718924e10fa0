"""Shared data for the trainer tests (a module with a unique name, importable from tests)."""

from __future__ import annotations

#: A few milliseconds per step: the toy-clip model on 64 correlated vector pairs.
BASE = {
    "method": {"name": "toy-clip", "config": {"dim": 8, "width": 16, "embed_dim": 8}},
    "data": {
        "dataset": "toy-pairs",
        "builder_args": {"n": 64, "seed": 0},
        "columns": {"a": "a", "b": "b"},
        "label_column": "label",
    },
    "optim": {"lr": 1.0e-2, "warmup_steps": 2, "weight_decay": 0.1, "clip_grad_norm": 1.0},
    "trainer": {"max_steps": 6, "batch_size": 16, "log_every": 1, "seed": 0},
}
