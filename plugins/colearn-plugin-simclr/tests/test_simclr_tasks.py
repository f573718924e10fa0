"""The linear-probe and knn tasks end to end on tiny data, and the fashion-mnist builder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from colearn_plugin_simclr.method import SimCLR
from colearn_plugin_simclr.tasks import extract_features

from colearn_core import ConfigError, registries


def tiny_model() -> SimCLR:
    torch.manual_seed(0)
    return registries.methods.get("simclr")(SimCLR.example_config())


def bright_dark_batches(n: int, seed: int, batch_size: int = 8) -> list[dict]:
    """Class 0: dark images, class 1: bright images (noise on top): separable by pixels."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    pixels = torch.randn(n, 1, 12, 12, generator=g) * 0.3 + (labels.float() * 4 - 2).view(
        -1, 1, 1, 1
    )
    return [
        {"image": {"pixels": pixels[i : i + batch_size]}, "label": labels[i : i + batch_size]}
        for i in range(0, n, batch_size)
    ]


def test_linear_probe_with_baselines():
    model = tiny_model()
    task = registries.tasks.get("linear-probe")(baselines=["pixels", "random-init"], l2=1e-3)
    result = task.evaluate(model, bright_dark_batches(40, 1), train_data=bright_dark_batches(40, 0))
    assert result["pixels/top1"] == 1.0  # separable by pixels
    assert set(result) >= {"top1", "l2", "pixels/top1", "random-init/top1", "seconds"}
    assert 0.0 <= result["top1"] <= 1.0
    assert result["l2"] == 1e-3


def test_random_init_baseline_is_a_fresh_model_and_keeps_the_rng():
    model = tiny_model()
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(1.0)  # make "trained" weights visibly different
    state = torch.random.get_rng_state()
    task = registries.tasks.get("knn")(baselines=["random-init"], k=3)
    data = bright_dark_batches(16, 1)
    result = task.evaluate(model, data, train_data=bright_dark_batches(16, 0))
    assert torch.equal(state, torch.random.get_rng_state())
    assert "random-init/top1" in result


def test_knn_task_on_separable_features():
    model = tiny_model()
    task = registries.tasks.get("knn")(k=5, weighting="majority", baselines=["pixels"])
    result = task.evaluate(model, bright_dark_batches(24, 1), train_data=bright_dark_batches(24, 0))
    assert result["pixels/top1"] == 1.0


def test_extract_features_restores_training_mode_and_needs_labels():
    model = tiny_model()
    model.train()
    x, y = extract_features(model, bright_dark_batches(10, 0), "image")
    assert x.shape == (10, model.feature_dim) and y.tolist() == [0, 1] * 5
    assert model.training
    with pytest.raises(ValueError, match="label"):
        extract_features(model, [{"image": {"pixels": torch.zeros(2, 1, 12, 12)}}], "image")


def test_task_arguments_are_checked():
    with pytest.raises(ConfigError, match="baselines"):
        registries.tasks.get("linear-probe")(baselines=["imagenet"])
    with pytest.raises(ConfigError, match="weighting"):
        registries.tasks.get("knn")(weighting="vote")
    with pytest.raises(ConfigError, match="train"):
        registries.tasks.get("knn")().evaluate(tiny_model(), bright_dark_batches(4, 0))


def test_fashion_mnist_builder_and_sources():
    pytest.importorskip("colearn_core.train.data")
    fm = pytest.importorskip("colearn_plugin_image.fashion_mnist")
    if fm._local_dir(None) is None:
        pytest.skip("Fashion-MNIST files not installed (apt install dataset-fashion-mnist)")
    data = registries.datasets.get("fashion-mnist")(train_limit=20, test_limit=10)
    assert len(data["train"]) == 20 and len(data["test"]) == 10
    row = data["train"][0]
    assert row["image"].dtype == np.uint8 and row["image"].shape == (28, 28)

    config = SimCLR.example_config()
    config["modality"] = {"image_size": 28, "channels": 1, "resize": "none", "blur_p": 0.0}
    torch.manual_seed(0)
    model = registries.methods.get("simclr")(config)
    source = {"dataset": "fashion-mnist", "builder_args": {"train_limit": 20, "test_limit": 10}}
    task = registries.tasks.get("linear-probe")(
        train={**source, "split": "train"}, test={**source, "split": "test"}, l2=1e-2
    )
    result = task.evaluate(model)
    assert 0.0 <= result["top1"] <= 1.0
