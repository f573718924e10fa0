"""Fashion-MNIST as uint8 tensors: the Debian package's IDX files, else Hugging Face's copy.

Debian's ``dataset-fashion-mnist`` installs ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``
under ``/usr/share/datasets/fashion-mnist/`` (override with ``COLEARN_FASHION_MNIST_DIR``).
The IDX format: a big-endian header (magic ``0x00000803`` for images with 3 dimensions,
``0x00000801`` for labels) followed by the dimension sizes and raw uint8 data.
"""

from __future__ import annotations

import gzip
import os
import struct
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["CLASS_NAMES", "DEFAULT_DIR", "load_fashion_mnist", "read_idx"]

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")

#: Fashion-MNIST's labels 0..9, as captions and answers name them.
CLASS_NAMES: tuple[str, ...] = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not) as a uint8 array of its declared shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise ValueError(f"{path}: too short to be an IDX file")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {data[:4].hex()})")
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but holds {body.size} bytes (truncated?)")
    return body.reshape(shape)


@lru_cache(maxsize=4)
def load_fashion_mnist(split: str = "train", root: str | None = None) -> tuple[Tensor, Tensor]:
    """``(images (N, 28, 28) uint8, labels (N,) int64)`` of ``split`` ("train" or "test")."""
    if split not in ("train", "test"):
        raise ValueError(f"Fashion-MNIST split must be 'train' or 'test', got {split!r}")
    folder = Path(root or os.environ.get("COLEARN_FASHION_MNIST_DIR") or DEFAULT_DIR)
    prefix = "train" if split == "train" else "t10k"
    images_path = folder / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = folder / f"{prefix}-labels-idx1-ubyte.gz"
    if images_path.exists() and labels_path.exists():
        images = torch.from_numpy(read_idx(images_path).copy())
        labels = torch.from_numpy(read_idx(labels_path).astype(np.int64))
    else:
        images, labels = _from_hugging_face(split, folder)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise ValueError(f"Fashion-MNIST {split}: unexpected shapes {images.shape}, {labels.shape}")
    return images, labels


def _from_hugging_face(split: str, folder: Path) -> tuple[Tensor, Tensor]:
    try:
        import datasets

        ds = datasets.load_dataset("zalando-datasets/fashion_mnist", split=split)
    except Exception as exc:
        raise FileNotFoundError(
            f"Fashion-MNIST not found in {folder} (install the Debian package "
            "dataset-fashion-mnist or set COLEARN_FASHION_MNIST_DIR) and the Hugging Face "
            f"copy could not be loaded: {type(exc).__name__}: {exc}"
        ) from exc
    images = torch.stack([torch.from_numpy(np.asarray(im, dtype=np.uint8)) for im in ds["image"]])
    return images, torch.tensor(ds["label"], dtype=torch.int64)
