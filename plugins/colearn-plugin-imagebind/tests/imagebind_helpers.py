"""Tiny configs and raw samples shared by the ImageBind plugin's tests."""

from __future__ import annotations

import copy
import functools
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


@functools.lru_cache(maxsize=1)
def tokenizer_file() -> str:
    """A ``tokenizer.json`` of the text plugin's tiny BPE, trained once per session."""
    from colearn_plugin_text.modality import TextModality

    folder = Path(tempfile.mkdtemp(prefix="colearn-ib-tok-"))
    TextModality(tokenizer="tiny", context_length=8).save_assets(folder)
    return str(folder / "tokenizer.json")


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """image (1 x 16 x 16), text (8 tokens) and audio (2 clips of 0.3 s) towers, width 16."""
    config = {
        "embed_dim": 8,
        "towers": {
            "image": {
                "modality": {"channels": 1, "image_size": 16, "resize": "none"},
                "encoder": {
                    "name": "image/vit",
                    "width": 16,
                    "depth": 1,
                    "heads": 2,
                    "patch_size": 8,
                },
            },
            "text": {
                "modality": {"tokenizer": tokenizer_file(), "context_length": 8},
                "encoder": {"name": "text/transformer", "width": 16, "depth": 1, "heads": 2},
            },
            "audio": {
                "modality": {
                    "clips_per_example": 2,
                    "clip_duration": 0.3,
                    "num_mel_bins": 16,
                    "target_length": 32,
                },
                "encoder": {
                    "name": "audio/ast",
                    "width": 16,
                    "depth": 1,
                    "heads": 2,
                    "patch_size": 8,
                    "patch_stride": 8,
                },
            },
        },
    }
    config = copy.deepcopy(config)
    config.update(overrides)
    return config


def images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (16, 16), dtype=np.uint8) for _ in range(n)]


def texts(n: int) -> list[str]:
    words = ["a photo of a cat", "a dress.", "an ankle boot", "the bag", "a red shirt"]
    return [words[i % len(words)] for i in range(n)]


def tones(n: int, seed: int = 0) -> list[tuple[np.ndarray, int]]:
    """``(waveform, 16000)`` tones of 0.5 s at different pitches, with a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(8000) / 16000
    return [
        (
            (
                0.3 * np.sin(2 * math.pi * (200 + 97 * i) * t) + 0.01 * rng.standard_normal(8000)
            ).astype(np.float32),
            16000,
        )
        for i in range(n)
    ]


def collate(model: Any, raw: dict[str, list[Any]]) -> dict[str, Any]:
    """Raw samples (``None`` = missing) -> a collated batch through the model's modalities,
    as the trainer's data loader builds it."""
    return {
        tower: model.modalities[tower].collate([model.modalities[tower].preprocess(s) for s in xs])
        for tower, xs in raw.items()
    }
