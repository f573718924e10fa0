"""The fashion-mnist-captions dataset builder."""

from __future__ import annotations

import numpy as np
import pytest
from colearn_plugin_clip.data import make_captions
from colearn_plugin_clip.prompts import (
    FASHION_MNIST_CLASS_NAMES,
    FASHION_MNIST_HELDOUT_TEMPLATES,
    FASHION_MNIST_TRAIN_TEMPLATES,
)
from colearn_plugin_image.fashion_mnist import DEBIAN_DIR

from colearn_core import registries


def _template_of(caption: str, label: int, templates) -> str:
    matches = [t for t in templates if t.format(FASHION_MNIST_CLASS_NAMES[label]) == caption]
    assert matches, f"{caption!r} (label {label}) matches no template"
    return matches[0]


def test_make_captions_is_seeded_and_uses_every_template():
    labels = np.arange(600) % 10
    captions = make_captions(labels, FASHION_MNIST_TRAIN_TEMPLATES, seed=3)
    assert captions == make_captions(labels, FASHION_MNIST_TRAIN_TEMPLATES, seed=3)
    assert captions != make_captions(labels, FASHION_MNIST_TRAIN_TEMPLATES, seed=4)
    used = {
        _template_of(c, int(y), FASHION_MNIST_TRAIN_TEMPLATES) for c, y in zip(captions, labels)
    }
    assert used == set(FASHION_MNIST_TRAIN_TEMPLATES)
    with pytest.raises(ValueError, match="labels must lie in 0..9"):
        make_captions([10], FASHION_MNIST_TRAIN_TEMPLATES)


@pytest.mark.skipif(
    not (DEBIAN_DIR / "t10k-images-idx3-ubyte.gz").exists(),
    reason="needs Debian's dataset-fashion-mnist files (no download in tests)",
)
def test_builder_pairs_images_with_captions_of_their_class():
    build = registries.datasets.get("fashion-mnist-captions")
    data = build(train_limit=50, test_limit=30, seed=1)
    assert set(data) == {"train", "test"}
    assert len(data["train"]) == 50 and len(data["test"]) == 30
    rows = data["train"][:50]
    assert set(rows) == {"image", "label", "caption"}
    assert rows["image"].dtype == np.uint8 and rows["image"].shape == (50, 28, 28)
    assert sorted(np.bincount(rows["label"]).tolist()) == [5] * 10  # class-balanced
    for caption, label in zip(rows["caption"], rows["label"]):
        _template_of(caption, int(label), FASHION_MNIST_TRAIN_TEMPLATES)
    test = data["test"][:30]
    for caption, label in zip(test["caption"], test["label"]):
        _template_of(caption, int(label), FASHION_MNIST_HELDOUT_TEMPLATES)
    # captions are make_captions' with the seed (train) and seed + 1 (test)
    expected = make_captions(rows["label"], FASHION_MNIST_TRAIN_TEMPLATES, seed=1)
    assert list(rows["caption"]) == expected
