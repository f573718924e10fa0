"""``sketch/cnn``: a small convolutional encoder for edge maps."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from colearn_core import Encoder, EncoderOutput
from torch import Tensor, nn

__all__ = ["SketchCNN"]


class SketchCNN(Encoder):
    """Stride-2 3x3 convolutions; each cell of the last feature map is a token.

    Config: ``base`` (channels of the first stage, doubled at each stage), ``stages`` (number
    of stride-2 stages; the map shrinks by ``2**stages``), ``width`` (D, the last stage's
    channels). Input ``{"edges": (B, 1, S, S)}``; tokens ``(B, (S / 2**stages)**2, D)``, layer
    normalised; pooled: their mean plus their max, since strokes are sparse and a mean alone
    washes a thin line out.
    """

    modality = "sketch"

    def __init__(self, base: int = 16, stages: int = 3, width: int = 128, **config: Any) -> None:
        super().__init__(base=base, stages=stages, width=width, **config)
        if stages < 1:
            raise ValueError(f"encoder 'sketch/cnn': stages must be >= 1, got {stages}")
        self.width = width
        layers: list[nn.Module] = []
        channels = 1
        for i in range(stages):
            out = width if i == stages - 1 else base * 2**i
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.GELU()]
            channels = out
        self.convs = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(width)

    def forward(self, inputs: Mapping[str, Tensor]) -> EncoderOutput:
        edges = inputs["edges"]  # (B, 1, S, S)
        if edges.ndim != 4 or edges.shape[1] != 1:
            raise ValueError(
                f"encoder 'sketch/cnn': expected edges of shape (B, 1, S, S), "
                f"got {tuple(edges.shape)}"
            )
        features = self.convs(edges)  # (B, D, S', S')
        tokens = self.norm(features.flatten(2).transpose(1, 2))  # (B, S'*S', D)
        pooled = tokens.mean(dim=1) + tokens.amax(dim=1)  # (B, D)
        return EncoderOutput(tokens=tokens, pooled=pooled)

    @classmethod
    def example_config(cls) -> dict[str, Any]:
        return {"base": 4, "stages": 2, "width": 8}

    def example_inputs(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        return {"edges": torch.rand(batch_size, 1, 16, 16, generator=generator)}
