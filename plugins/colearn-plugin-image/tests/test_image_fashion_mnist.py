"""Fashion-MNIST reader: IDX parsing, errors, balanced subsets, the real Debian files."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from colearn_plugin_image.fashion_mnist import (
    CLASS_NAMES,
    DEBIAN_DIR,
    load_fashion_mnist,
    load_fashion_mnist_arrays,
    read_idx,
)


def write_idx(path, array: np.ndarray, *, truncate: int = 0) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    with gzip.open(path, "wb") as f:
        f.write(payload[: len(payload) - truncate])


@pytest.fixture
def fake_root(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("t10k", 30)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return tmp_path


def test_read_idx_round_trip(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), array)


def test_truncated_and_bad_magic_files_are_named(tmp_path):
    write_idx(tmp_path / "short.gz", np.zeros((2, 28, 28)), truncate=5)
    with pytest.raises(ValueError, match=r"short\.gz: truncated or corrupt"):
        read_idx(tmp_path / "short.gz")
    (tmp_path / "junk").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="junk: not an IDX file"):
        read_idx(tmp_path / "junk")


def test_dataset_from_a_folder(fake_root):
    ds = load_fashion_mnist("test", root=fake_root)
    assert len(ds) == 30 and ds.features["label"].names == list(CLASS_NAMES)
    assert np.asarray(ds[3]["image"]).shape == (28, 28) and ds[3]["label"] == 3


def test_limit_keeps_classes_balanced(fake_root):
    ds = load_fashion_mnist("train", root=fake_root, limit=20)
    assert np.bincount(ds["label"][:], minlength=10).tolist() == [2] * 10


def test_bad_split_and_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_fashion_mnist_arrays("valid", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="no Fashion-MNIST IDX files"):
        load_fashion_mnist_arrays("test", root=tmp_path)


@pytest.mark.skipif(not DEBIAN_DIR.exists(), reason="Debian's dataset-fashion-mnist not installed")
def test_the_real_debian_files():
    images, labels = load_fashion_mnist_arrays("test")
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [1000] * 10
    assert 60 < images.mean() < 80  # Fashion-MNIST's mean pixel is about 72.9
