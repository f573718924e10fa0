"""The image/simclr-cnn encoder: shapes, strides, the 1x1 expansion and config errors."""

from __future__ import annotations

import pytest
import torch
from colearn_plugin_simclr.encoder import SimCLRCNN

from colearn_core import ConfigError
from colearn_core.testing import check_encoder


@pytest.mark.parametrize(
    ("config", "grid", "width"),
    [
        ({"widths": [4, 8, 16]}, 7, 16),  # 28 -> 28 -> 14 -> 7
        ({"widths": [4, 8, 16], "stem_stride": 2}, 4, 16),  # 28 -> 14 -> 7 -> 4
        ({"widths": [4, 8], "blocks": [2, 1], "expand": 32}, 14, 32),
    ],
)
def test_token_grid_and_width(config, grid, width):
    torch.manual_seed(0)
    encoder = SimCLRCNN(**config)
    out = encoder({"pixels": torch.randn(2, 1, 28, 28)})
    assert encoder.width == width
    assert out.tokens.shape == (2, grid * grid, width)
    assert torch.allclose(out.pooled, out.tokens.mean(dim=1))


def test_contract_with_three_channels():
    check_encoder(SimCLRCNN, {"in_chans": 3, "widths": [4, 8], "image_size": 10})


def test_expand_features_are_non_negative():
    # The expansion ends in a ReLU, so the pooled representation is >= 0.
    encoder = SimCLRCNN(widths=[4], expand=8).eval()
    assert (encoder({"pixels": torch.randn(3, 1, 8, 8)}).pooled >= 0).all()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"widths": []}, "widths"),
        ({"widths": [4, 8], "blocks": [1]}, "blocks"),
        ({"stem_stride": 3}, "stem_stride"),
        ({"expand": 0}, "expand"),
        ({"depth": 3}, "unknown config keys"),
    ],
)
def test_bad_config(config, message):
    with pytest.raises(ConfigError, match=message):
        SimCLRCNN(**config)


def test_wrong_channel_count_is_named():
    with pytest.raises(ValueError, match="in_chans"):
        SimCLRCNN(widths=[4])({"pixels": torch.randn(1, 3, 8, 8)})
