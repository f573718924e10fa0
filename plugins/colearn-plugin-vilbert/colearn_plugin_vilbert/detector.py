"""The fashion-scenes "detector": a small CNN trained on Fashion-MNIST crops.

ViLBERT's masked multimodal task regresses the class distribution that the object detector
assigned to each region. On fashion-scenes the detector is this classifier applied to each
box: its softmax output is the (soft) class distribution and its penultimate layer the region
feature. It is trained once (5 epochs, about 2 minutes of CPU; 90.3% on Fashion-MNIST's
test images) and cached as safetensors in ``$COLEARN_CACHE/vilbert`` (default
``~/.cache/colearn/vilbert``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FashionDetector", "cache_dir", "load_detector", "train_detector"]

#: Bump when the architecture or the training recipe changes (names the cache file).
VERSION = 3


def cache_dir(override: str | Path | None = None) -> Path:
    """Where cached weights live: ``override``, ``$COLEARN_CACHE/vilbert`` or ~/.cache."""
    if override is not None:
        return Path(override)
    root = os.environ.get("COLEARN_CACHE") or Path.home() / ".cache" / "colearn"
    return Path(root) / "vilbert"


class FashionDetector(nn.Module):
    """``(N, 1, 28, 28)`` crops in [0, 1] -> 64-d features and logits over 10 classes."""

    input_size = 28

    def __init__(self, feature_dim: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        # Strided convolutions instead of pooling: 4x cheaper to train on a CPU.
        self.conv1 = nn.Conv2d(1, 32, 5, stride=2, padding=2)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(64)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(64 * 7 * 7, feature_dim)
        self.classifier = nn.Linear(feature_dim, num_classes)

    def features(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))  # (N, 32, 14, 14)
        x = F.relu(self.bn2(self.conv2(x)))  # (N, 64, 7, 7)
        return F.relu(self.fc(self.drop(x.flatten(1))))  # (N, feature_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))

    @torch.no_grad()
    def describe(self, crops: Tensor, batch_size: int = 1024) -> tuple[Tensor, Tensor]:
        """Region features ``(N, F)`` and class distributions ``(N, C)`` of crops."""
        was_training = self.training
        self.eval()
        feats, probs = [], []
        for i in range(0, len(crops), batch_size):
            f = self.features(crops[i : i + batch_size])
            feats.append(f)
            probs.append(torch.softmax(self.classifier(f), dim=-1))
        self.train(was_training)
        if not feats:
            return torch.zeros(0, self.feature_dim), torch.zeros(0, self.num_classes)
        return torch.cat(feats), torch.cat(probs)


def _rescale(x: Tensor, generator: torch.Generator) -> Tensor:
    """Shrink then re-enlarge a batch, as a scene item cropped from the canvas looks."""
    size = int(torch.randint(20, 33, (1,), generator=generator))
    small = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    return F.interpolate(small, size=(28, 28), mode="bilinear", antialias=True)


def _shift(x: Tensor, generator: torch.Generator, pad: int = 2) -> Tensor:
    """Translate a batch by up to ``pad`` pixels (one random offset for the batch)."""
    h, w = x.shape[-2:]
    dx, dy = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,), generator=generator))
    return F.pad(x, (pad,) * 4)[..., dy : dy + h, dx : dx + w]


def train_detector(
    images: Tensor,
    labels: Tensor,
    *,
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    augment: bool = True,
) -> FashionDetector:
    """Train on ``(N, 28, 28)`` uint8 images; half the batches rescaled (scene-like crops)
    and, with ``augment``, half shifted by up to 2 pixels and half mirrored left-right."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = FashionDetector()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(images) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    x_all = images.unsqueeze(1).float().div(255.0)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=g)
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            x, y = x_all[idx], labels[idx]
            if torch.rand((), generator=g) < 0.5:
                x = _rescale(x, g)
            if augment and torch.rand((), generator=g) < 0.5:
                x = _shift(x, g)
            if augment and torch.rand((), generator=g) < 0.5:
                x = x.flip(-1)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    return model


@torch.no_grad()
def accuracy(model: FashionDetector, images: Tensor, labels: Tensor) -> float:
    x = images.unsqueeze(1).float().div(255.0)
    _, probs = model.describe(x)
    return float((probs.argmax(-1) == labels).float().mean())


def load_detector(
    cache: str | Path | None = None, *, train_if_missing: bool = True, epochs: int = 5
) -> FashionDetector:
    """The cached detector, trained on Fashion-MNIST's training split when not cached yet."""
    from colearn_plugin_image.fashion_mnist import load_fashion_mnist_arrays
    from safetensors.torch import load_file, save_file

    path = cache_dir(cache) / f"fashion-detector-v{VERSION}.safetensors"
    model = FashionDetector()
    if path.exists():
        model.load_state_dict(load_file(str(path)), strict=True)
        return model.eval()
    if not train_if_missing:
        raise FileNotFoundError(f"no cached fashion detector at {path}")
    start = time.time()
    images, labels = (torch.from_numpy(a.copy()) for a in load_fashion_mnist_arrays("train"))
    model = train_detector(images, labels, epochs=epochs)
    test_images, test_labels = (
        torch.from_numpy(a.copy()) for a in load_fashion_mnist_arrays("test")
    )
    acc = accuracy(model, test_images, test_labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    meta = {
        "test_accuracy": f"{acc:.4f}",
        "epochs": str(epochs),
        "train_seconds": f"{time.time() - start:.1f}",
    }
    save_file(state, str(tmp), metadata=meta)
    os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
    return model
