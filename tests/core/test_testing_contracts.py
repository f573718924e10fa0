"""colearn_core.testing catches broken encoders, losses and modalities."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from colearn_core import Encoder, EncoderOutput, Loss, Modality
from colearn_core.testing import check_encoder, check_loss, check_modality, check_plugin


class Linear(Encoder):
    modality = "toy-vector"

    def __init__(self, dim: int = 4, width: int = 6, bad_pooled: bool = False, seedless=False):
        super().__init__(dim=dim, width=width, bad_pooled=bad_pooled, seedless=seedless)
        self.width, self.bad_pooled = width, bad_pooled
        self.proj = nn.Linear(dim, width)
        if seedless:  # initialisation that ignores torch's seed
            with torch.no_grad():
                self.proj.weight.copy_(
                    torch.from_numpy(__import__("numpy").random.randn(width, dim))
                )

    def forward(self, inputs):
        x = self.proj(inputs["values"])
        pooled = x[:, :-1] if self.bad_pooled else x
        return EncoderOutput(tokens=x[:, None, :], pooled=pooled)

    def example_inputs(self, batch_size, generator=None):
        return {"values": torch.randn(batch_size, 4, generator=generator)}


def test_a_correct_encoder_passes():
    check_encoder(Linear, {})


def test_wrong_pooled_shape_fails():
    with pytest.raises(AssertionError, match="pooled shape"):
        check_encoder(Linear, {"bad_pooled": True})


def test_seed_independent_initialisation_fails():
    with pytest.raises(AssertionError, match="differs under the same seed"):
        check_encoder(Linear, {"seedless": True})


class DetachedLoss(Loss):
    def forward(self, a, b):
        return (a.detach() * b).sum()


def test_loss_whose_gradient_misses_an_input_fails():
    with pytest.raises(AssertionError, match="input 0"):
        check_loss(DetachedLoss())


class Cosine(Loss):
    def forward(self, a, b):
        return 1 - torch.nn.functional.cosine_similarity(a, b).mean()


def test_a_correct_loss_passes():
    assert check_loss(Cosine()).item() > 0


class NotBatchFirst(Modality):
    name = "nbf"

    def preprocess(self, sample):
        return {"x": torch.tensor([float(sample)])}

    def collate(self, samples):
        return {"x": torch.cat([s["x"] for s in samples])[None]}

    @classmethod
    def example_samples(cls, n):
        return list(range(n))


def test_modality_that_is_not_batch_first_fails():
    with pytest.raises(AssertionError, match="not batch-first"):
        check_modality(NotBatchFirst)


def test_check_plugin_walks_what_the_toy_plugin_registered():
    checked = check_plugin("colearn-plugin-toy")
    assert checked == {"encoders": ["toy-vector/mlp"], "modalities": ["toy-vector"]}
    with pytest.raises(AssertionError, match="registered nothing"):
        check_plugin("colearn-plugin-not-installed")
