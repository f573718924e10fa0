"""Fusions that belong to the core. ``late``: separate towers meet only in the loss."""

from __future__ import annotations

from collections.abc import Mapping

from .interfaces import EncoderOutput, Fusion

__all__ = ["LateFusion"]


class LateFusion(Fusion):
    """No interaction between modalities (CLIP, SimCLR, ImageBind): features pass through."""

    def forward(self, features: Mapping[str, EncoderOutput]) -> dict[str, EncoderOutput]:
        return dict(features)
