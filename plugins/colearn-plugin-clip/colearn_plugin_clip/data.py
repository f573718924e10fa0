"""The ``fashion-mnist-captions`` dataset builder: Fashion-MNIST images paired with captions
made from their class names and prompt templates (``data.dataset: fashion-mnist-captions``)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from .prompts import (
    FASHION_MNIST_CLASS_NAMES,
    FASHION_MNIST_HELDOUT_TEMPLATES,
    FASHION_MNIST_TRAIN_TEMPLATES,
    resolve_templates,
)

__all__ = ["build_fashion_mnist_captions", "make_captions"]


def make_captions(
    labels: Sequence[int] | np.ndarray,
    templates: Sequence[str],
    *,
    class_names: Sequence[str] = FASHION_MNIST_CLASS_NAMES,
    seed: int = 0,
) -> list[str]:
    """One caption per label: a template drawn uniformly (seeded) and filled with the class
    name."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise ValueError(
            f"labels must lie in 0..{len(class_names) - 1} ({len(class_names)} class names), got "
            f"{labels.min()}..{labels.max()}"
        )
    rng = np.random.default_rng(seed)
    choice = rng.integers(0, len(templates), size=labels.shape[0])
    return [templates[t].format(class_names[c]) for t, c in zip(choice.tolist(), labels.tolist())]


def build_fashion_mnist_captions(
    *,
    train_templates: Sequence[str] | str = FASHION_MNIST_TRAIN_TEMPLATES,
    test_templates: Sequence[str] | str = FASHION_MNIST_HELDOUT_TEMPLATES,
    train_limit: int | None = None,
    test_limit: int | None = None,
    seed: int = 0,
    root: str | None = None,
) -> Any:
    """Fashion-MNIST as a ``DatasetDict`` with splits ``train`` (60,000) and ``test`` (10,000)
    and columns ``image`` (28x28 uint8), ``label`` (10 classes) and ``caption``.

    Train captions use ``train_templates``; test captions use ``test_templates`` (by default
    the held-out set, disjoint from the training one), so a retrieval evaluation on the test
    split also measures prompts the model never saw. Each example's template is drawn with
    ``seed``. ``train_limit``/``test_limit`` keep class-balanced subsets. Images come from
    Debian's ``dataset-fashion-mnist`` files when present, the Hugging Face dataset otherwise.

    Rows come out with ``image`` as uint8 numpy arrays (which the image modality reads
    directly) and ``label``/``caption`` as Python values.
    """
    return _build(
        tuple(resolve_templates(train_templates)),
        tuple(resolve_templates(test_templates)),
        train_limit,
        test_limit,
        seed,
        root,
    )


# The trainer asks for the dataset once per split (training, evaluation): build it once.
@functools.lru_cache(maxsize=2)
def _build(
    train_templates: tuple[str, ...],
    test_templates: tuple[str, ...],
    train_limit: int | None,
    test_limit: int | None,
    seed: int,
    root: str | None,
) -> Any:
    import datasets
    from colearn_plugin_image.fashion_mnist import load_fashion_mnist

    splits = {}
    for split, templates, limit, offset in (
        ("train", train_templates, train_limit, 0),
        ("test", test_templates, test_limit, 1),
    ):
        ds = load_fashion_mnist(split, limit=limit, root=root)
        captions = make_captions(ds["label"], templates, seed=seed + offset)
        ds = ds.add_column("caption", captions)
        splits[split] = ds.with_format(
            "numpy", columns=["image"], output_all_columns=True, dtype=np.uint8
        )
    return datasets.DatasetDict(splits)
