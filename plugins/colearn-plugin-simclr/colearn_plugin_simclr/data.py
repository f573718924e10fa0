"""The ``fashion-mnist`` dataset builder for recipes (``data.dataset: fashion-mnist``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

__all__ = ["build_fashion_mnist"]


def build_fashion_mnist(
    *,
    train_limit: int | None = None,
    test_limit: int | None = None,
    root: str | None = None,
) -> Any:
    """Fashion-MNIST as a ``DatasetDict`` with splits ``train`` (60,000) and ``test`` (10,000),
    columns ``image`` (28x28 uint8) and ``label`` (10 classes), read by
    :func:`colearn_plugin_image.fashion_mnist.load_fashion_mnist` (Debian's files or the Hub).

    ``train_limit``/``test_limit`` keep class-balanced subsets. Rows come out as uint8 numpy
    arrays: datasets' default formatting would give nested Python lists (which the image
    modality does not read) and its numpy formatting int64 (and ~2x slower reads).
    The result is cached per arguments: a run asks for it several times (training split,
    evaluation split, the probes' training set) and building it takes seconds.
    """
    return _build(train_limit, test_limit, root)


@lru_cache(maxsize=4)
def _build(train_limit: int | None, test_limit: int | None, root: str | None) -> Any:
    import datasets
    import numpy as np
    from colearn_plugin_image.fashion_mnist import load_fashion_mnist

    splits = {
        "train": load_fashion_mnist("train", limit=train_limit, root=root),
        "test": load_fashion_mnist("test", limit=test_limit, root=root),
    }
    return datasets.DatasetDict(
        {name: ds.with_format("numpy", dtype=np.uint8) for name, ds in splits.items()}
    )
