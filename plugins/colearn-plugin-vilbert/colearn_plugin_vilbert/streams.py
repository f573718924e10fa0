"""ViLBERT's two streams and the encoder that interleaves them with co-attention.

- :class:`TextStream`: BERT (word + position + token-type embeddings, post-norm layers).
- :class:`VisualStream`: region features and their 5-d spatial encoding
  ``(x1/W, y1/H, x2/W, y2/H, area fraction)`` projected to the visual width, preceded by an
  <IMG> token (the mean of the region features with the whole-image location ``(0,0,1,1,1)``),
  then transformer layers.
- :class:`TwoStreamEncoder`: runs the layers of both streams and inserts co-attention block k
  after the first ``text_at[k]`` text layers and ``vision_at[k]`` visual layers (the official
  ``t_biattention_id`` / ``v_biattention_id``); pools the [CLS] and <IMG> outputs.

Shapes: B batch, T text tokens, R regions (the visual stream has 1 + R tokens), F region
feature size, Dt/Dv stream widths, W co-attention width.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from colearn_core import ConfigError

from .coattention import CoAttentionBlock
from .layers import LN_EPS, TransformerLayer, masked_mean

__all__ = ["IMAGE_LOCATION", "RegionEmbeddings", "TextStream", "TwoStreamEncoder", "VisualStream"]

#: The spatial encoding of the <IMG> token: the whole image.
IMAGE_LOCATION = (0.0, 0.0, 1.0, 1.0, 1.0)


class TextEmbeddings(nn.Module):
    """BERT's input embeddings: word + position + token type, LayerNorm, dropout."""

    def __init__(
        self, vocab_size: int, width: int, max_positions: int, type_vocab: int, dropout: float
    ):
        super().__init__()
        self.word = nn.Embedding(vocab_size, width)
        self.position = nn.Embedding(max_positions, width)
        self.token_type = nn.Embedding(type_vocab, width)
        self.norm = nn.LayerNorm(width, eps=LN_EPS)
        self.drop = nn.Dropout(dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        b, t = input_ids.shape
        if t > self.position.num_embeddings:
            raise ValueError(
                f"text of {t} tokens is longer than max_positions={self.position.num_embeddings};"
                " truncate it in the text modality or raise text.max_positions"
            )
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        positions = torch.arange(t, device=input_ids.device).unsqueeze(0)  # (1, T)
        x = self.word(input_ids) + self.position(positions) + self.token_type(token_type_ids)
        return self.drop(self.norm(x))  # (B, T, Dt)


class TextStream(nn.Module):
    """BERT: :class:`TextEmbeddings` and ``layers`` post-norm transformer layers."""

    def __init__(
        self,
        vocab_size: int,
        width: int = 768,
        layers: int = 12,
        heads: int = 12,
        ffn: int = 3072,
        max_positions: int = 512,
        type_vocab: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.width = width
        self.embeddings = TextEmbeddings(vocab_size, width, max_positions, type_vocab, dropout)
        self.layers = nn.ModuleList(
            TransformerLayer(width, heads, ffn, dropout) for _ in range(layers)
        )

    def forward(
        self, input_ids: Tensor, token_type_ids: Tensor | None, mask: Tensor | None
    ) -> Tensor:
        """All layers: ``(B, T)`` ids -> ``(B, T, Dt)``; mask ``(B, T)`` bool."""
        x = self.embeddings(input_ids, token_type_ids)
        for layer in self.layers:
            x = layer(x, mask)
        return x


class RegionEmbeddings(nn.Module):
    """Region features and locations -> ``(B, 1 + R, Dv)`` with the <IMG> token first."""

    def __init__(self, feature_dim: int, width: int, dropout: float) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.features = nn.Linear(feature_dim, width)
        self.locations = nn.Linear(5, width)
        self.norm = nn.LayerNorm(width, eps=LN_EPS)
        self.drop = nn.Dropout(dropout)

    def forward(
        self, features: Tensor, locations: Tensor, mask: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """features ``(B, R, F)``, locations ``(B, R, 5)``, mask ``(B, R)`` bool.

        Returns embeddings ``(B, 1 + R, Dv)`` and their mask ``(B, 1 + R)``.
        """
        b, r, f = features.shape
        if f != self.feature_dim:
            raise ValueError(
                f"region features have size {f}, the visual stream expects "
                f"vision.feature_dim={self.feature_dim}"
            )
        if locations.shape != (b, r, 5):
            raise ValueError(
                f"region locations must be (B, R, 5) = {(b, r, 5)}, got {tuple(locations.shape)}"
            )
        if mask is None:
            mask = torch.ones(b, r, dtype=torch.bool, device=features.device)
        image_feature = masked_mean(features, mask).unsqueeze(1)  # (B, 1, F)
        image_location = features.new_tensor(IMAGE_LOCATION).expand(b, 1, 5)
        feats = torch.cat([image_feature, features], dim=1)  # (B, 1 + R, F)
        locs = torch.cat([image_location, locations.to(features.dtype)], dim=1)  # (B, 1 + R, 5)
        x = self.drop(self.norm(self.features(feats) + self.locations(locs)))
        full_mask = torch.cat([mask.new_ones(b, 1), mask.bool()], dim=1)
        return x, full_mask


class VisualStream(nn.Module):
    """:class:`RegionEmbeddings` and ``layers`` post-norm transformer layers."""

    def __init__(
        self,
        feature_dim: int = 2048,
        width: int = 1024,
        layers: int = 6,
        heads: int = 8,
        ffn: int = 1024,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.width = width
        self.embeddings = RegionEmbeddings(feature_dim, width, dropout)
        self.layers = nn.ModuleList(
            TransformerLayer(width, heads, ffn, dropout) for _ in range(layers)
        )


def check_schedule(text_at: Sequence[int], vision_at: Sequence[int], nt: int, nv: int) -> None:
    """Co-attention positions: same count, non-decreasing, within the streams' depths."""
    if len(text_at) != len(vision_at):
        raise ConfigError(
            f"coattention.text_at ({list(text_at)}) and coattention.vision_at "
            f"({list(vision_at)}) must have the same length: one entry per co-attention block"
        )
    for name, at, depth in (("text_at", text_at, nt), ("vision_at", vision_at, nv)):
        if any(not isinstance(i, int) or i < 0 or i > depth for i in at):
            raise ConfigError(
                f"coattention.{name}={list(at)}: every entry must be an int in [0, {depth}] "
                f"(the number of stream layers run before that co-attention block)"
            )
        if list(at) != sorted(at):
            raise ConfigError(f"coattention.{name}={list(at)} must be non-decreasing")


class TwoStreamEncoder(nn.Module):
    """The ViLBERT encoder: text and visual streams exchanging information by co-attention."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        t, v, c = config["text"], config["vision"], config["coattention"]
        check_schedule(c["text_at"], c["vision_at"], t["layers"], v["layers"])
        self.text_at = list(c["text_at"])
        self.vision_at = list(c["vision_at"])
        self.text = TextStream(
            config["vocab_size"],
            t["width"],
            t["layers"],
            t["heads"],
            t["ffn"],
            t["max_positions"],
            t["type_vocab"],
            t["dropout"],
        )
        self.vision = VisualStream(
            v["feature_dim"], v["width"], v["layers"], v["heads"], v["ffn"], v["dropout"]
        )
        self.coattention = nn.ModuleList(
            CoAttentionBlock(
                t["width"], v["width"], c["width"], c["heads"], t["ffn"], v["ffn"], c["dropout"]
            )
            for _ in self.text_at
        )
        self.text_pooler = nn.Linear(t["width"], c["width"])
        self.vision_pooler = nn.Linear(v["width"], c["width"])

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None,
        text_mask: Tensor | None,
        features: Tensor,
        locations: Tensor,
        region_mask: Tensor | None,
    ) -> dict[str, Tensor]:
        """Returns ``text`` ``(B, T, Dt)``, ``vision`` ``(B, 1+R, Dv)``, ``vision_mask``
        ``(B, 1+R)``, ``pooled_text`` and ``pooled_vision`` ``(B, W)``."""
        text_mask = None if text_mask is None else text_mask.bool()
        t = self.text.embeddings(input_ids, token_type_ids)
        v, v_mask = self.vision.embeddings(features, locations, region_mask)
        ti = vi = 0  # stream layers run so far
        for k, block in enumerate(self.coattention):
            for layer in self.text.layers[ti : self.text_at[k]]:
                t = layer(t, text_mask)
            for layer in self.vision.layers[vi : self.vision_at[k]]:
                v = layer(v, v_mask)
            ti, vi = self.text_at[k], self.vision_at[k]
            t, v = block(t, text_mask, v, v_mask)
        for layer in self.text.layers[ti:]:
            t = layer(t, text_mask)
        for layer in self.vision.layers[vi:]:
            v = layer(v, v_mask)
        return {
            "text": t,
            "vision": v,
            "vision_mask": v_mask,
            "pooled_text": F.relu(self.text_pooler(t[:, 0])),  # [CLS]
            "pooled_vision": F.relu(self.vision_pooler(v[:, 0])),  # <IMG>
        }
