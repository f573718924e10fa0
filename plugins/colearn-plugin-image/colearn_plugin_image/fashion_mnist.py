"""Fashion-MNIST as a ``datasets.Dataset``: Debian's files when present, the Hub otherwise.

Debian's ``dataset-fashion-mnist`` package puts the original IDX files under
``/usr/share/datasets/fashion-mnist/``; ``COLEARN_FASHION_MNIST_DIR`` points elsewhere. Without
them the Hugging Face dataset ``zalando-datasets/fashion_mnist`` is downloaded (users with
internet), so recipes run unchanged on any machine.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

__all__ = ["CLASS_NAMES", "DEBIAN_DIR", "HUB_ID", "load_fashion_mnist", "read_idx"]

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
HUB_ID = "zalando-datasets/fashion_mnist"
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_DTYPES = {0x08: np.uint8}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzipped), the format MNIST-style datasets ship in."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise ValueError(
            f"{path}: truncated or corrupt IDX file: header says {expected} values for shape "
            f"{shape}, found {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _local_dir(root: str | os.PathLike | None) -> Path | None:
    """The folder with the IDX files: ``root`` if given (it must have them), else the
    environment variable's folder or Debian's, else None (use the Hub)."""
    if root is not None:
        if not all((Path(root) / f).exists() for f in _FILES["test"]):
            raise FileNotFoundError(
                f"{root}: no Fashion-MNIST IDX files ({', '.join(_FILES['test'])}) found there"
            )
        return Path(root)
    for candidate in (os.environ.get("COLEARN_FASHION_MNIST_DIR"), DEBIAN_DIR):
        if candidate and all((Path(candidate) / f).exists() for f in _FILES["test"]):
            return Path(candidate)
    return None


def load_fashion_mnist_arrays(
    split: str = "train", *, root: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 28, 28)`` uint8 and labels ``(N,)`` int64 for ``split`` (train or test)."""
    if split not in _FILES:
        raise ValueError(f"Fashion-MNIST split must be 'train' or 'test', got {split!r}")
    local = _local_dir(root)
    if local is not None:
        images_file, labels_file = _FILES[split]
        images = read_idx(local / images_file)
        labels = read_idx(local / labels_file).astype(np.int64)
    else:  # pragma: no cover - needs internet
        import datasets

        hub = datasets.load_dataset(HUB_ID, split=split)
        images = np.stack([np.asarray(im, dtype=np.uint8) for im in hub["image"]])
        labels = np.asarray(hub["label"], dtype=np.int64)
    if len(images) != len(labels):
        raise ValueError(f"Fashion-MNIST {split}: {len(images)} images but {len(labels)} labels")
    return images, labels


def load_fashion_mnist(
    split: str = "train",
    *,
    limit: int | None = None,
    root: str | os.PathLike | None = None,
):
    """Fashion-MNIST ``split`` as a ``datasets.Dataset`` with columns ``image`` and ``label``.

    ``image`` holds ``(28, 28)`` uint8 arrays (the image modality decodes arrays directly,
    which is much faster than PNG-encoding 70,000 small images); ``label`` is a ClassLabel.
    ``limit`` keeps the first examples of every class in turn, so small subsets stay balanced.
    """
    import datasets

    images, labels = load_fashion_mnist_arrays(split, root=root)
    if limit is not None:
        order = np.argsort(labels, kind="stable")
        rank = np.empty_like(order)
        starts = np.searchsorted(labels[order], np.arange(len(CLASS_NAMES)))
        rank[order] = np.arange(len(order)) - starts[labels[order]]
        keep = np.sort(np.argsort(rank, kind="stable")[:limit])
        images, labels = images[keep], labels[keep]
    features = datasets.Features(
        {
            "image": datasets.Array2D(shape=(28, 28), dtype="uint8"),
            "label": datasets.ClassLabel(names=list(CLASS_NAMES)),
        }
    )
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)
