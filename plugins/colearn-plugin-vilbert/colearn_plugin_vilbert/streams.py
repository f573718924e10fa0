"""ViLBERT's two streams and the encoder that interleaves them with co-attention.

- Text stream: an encoder registered by a text plugin, ``text/bert`` by default (BERT: word +
  position + token-type embeddings, post-norm blocks). ViLBERT runs its layers one at a time to
  interleave co-attention, so the encoder must expose them: ``word_embeddings``,
  ``position_embeddings``, ``token_type_embeddings``, ``embedding_norm``, ``embedding_dropout``,
  ``blocks`` (each ``block(x, attn_mask=...)``) and optionally ``final_norm``.
- :class:`VisualStream`: region features and their 5-d spatial encoding
  ``(x1/W, y1/H, x2/W, y2/H, area fraction)`` projected to the visual width, preceded by an
  <IMG> token (the mean of the region features with the whole-image location ``(0,0,1,1,1)``),
  then post-norm transformer blocks.
- :class:`TwoStreamEncoder`: runs both streams and inserts co-attention block k after the first
  ``text_at[k]`` text layers and ``vision_at[k]`` visual layers (the official
  ``t_biattention_id`` / ``v_biattention_id``); pools the [CLS] and <IMG> outputs.

Shapes: B batch, T text tokens, R regions (the visual stream has 1 + R tokens), F region
feature size, Dt/Dv stream widths, W co-attention width.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from colearn_plugin_image.vit import TransformerBlock
from torch import Tensor, nn

from colearn_core import ConfigError, Encoder

from .coattention import CoAttentionBlock
from .layers import LN_EPS, init_bert_weights, masked_mean

__all__ = [
    "IMAGE_LOCATION",
    "LAYERED_TEXT_ATTRIBUTES",
    "RegionEmbeddings",
    "TwoStreamEncoder",
    "VisualStream",
    "build_text_stream",
    "embed_text",
]

#: The spatial encoding of the <IMG> token: the whole image.
IMAGE_LOCATION = (0.0, 0.0, 1.0, 1.0, 1.0)
#: What a text encoder must expose to serve as ViLBERT's text stream.
LAYERED_TEXT_ATTRIBUTES = (
    "word_embeddings",
    "position_embeddings",
    "token_type_embeddings",
    "embedding_norm",
    "embedding_dropout",
    "blocks",
)


def build_text_stream(name: str, config: Mapping[str, Any]) -> Encoder:
    """The registered text encoder ``name`` built from ``config``, checked to be layered."""
    from colearn_core import registries

    encoder = registries.encoders.get(name)(**dict(config))
    missing = [a for a in LAYERED_TEXT_ATTRIBUTES if not hasattr(encoder, a)]
    if missing:
        raise ConfigError(
            f"vilbert.text_encoder={name!r} does not expose its layers ({', '.join(missing)} "
            "missing); ViLBERT interleaves co-attention between text layers, so it needs a "
            "BERT-style encoder such as 'text/bert' from colearn-plugin-text"
        )
    if getattr(encoder, "pooler", None) is not None or getattr(encoder, "proj", None) is not None:
        raise ConfigError(
            "vilbert pools and projects the text stream itself: leave vilbert.text.pooler as "
            "'none' and vilbert.text.output_dim unset"
        )
    return encoder


def embed_text(encoder: nn.Module, input_ids: Tensor, token_type_ids: Tensor | None) -> Tensor:
    """BERT's input embeddings through the text encoder's own tables: ``(B, T) -> (B, T, Dt)``."""
    b, t = input_ids.shape
    limit = encoder.position_embeddings.num_embeddings
    if t > limit:
        raise ValueError(
            f"text of {t} tokens is longer than the text stream's {limit} positions; truncate "
            "it in the text modality (context_length) or raise vilbert.text.context_length"
        )
    if token_type_ids is None:
        token_type_ids = torch.zeros_like(input_ids)
    positions = torch.arange(t, device=input_ids.device)
    x = (
        encoder.word_embeddings(input_ids)
        + encoder.position_embeddings(positions)[None]
        + encoder.token_type_embeddings(token_type_ids)
    )
    return encoder.embedding_dropout(encoder.embedding_norm(x))


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
        mask = mask.bool()
        image_feature = masked_mean(features, mask).unsqueeze(1)  # (B, 1, F)
        image_location = features.new_tensor(IMAGE_LOCATION).expand(b, 1, 5)
        feats = torch.cat([image_feature, features], dim=1)  # (B, 1 + R, F)
        locs = torch.cat([image_location, locations.to(features.dtype)], dim=1)  # (B, 1 + R, 5)
        x = self.drop(self.norm(self.features(feats) + self.locations(locs)))
        full_mask = torch.cat([mask.new_ones(b, 1), mask], dim=1)
        return x, full_mask


class VisualStream(nn.Module):
    """:class:`RegionEmbeddings` and ``depth`` post-norm transformer blocks."""

    def __init__(
        self,
        feature_dim: int = 2048,
        width: int = 1024,
        depth: int = 6,
        heads: int = 8,
        mlp_ratio: float = 1.0,
        drop: float = 0.1,
        attn_drop: float = 0.1,
    ) -> None:
        super().__init__()
        self.width = width
        self.embeddings = RegionEmbeddings(feature_dim, width, drop)
        self.blocks = nn.ModuleList(
            TransformerBlock(
                width,
                heads,
                mlp_ratio=mlp_ratio,
                norm_first=False,
                norm_eps=LN_EPS,
                drop=drop,
                attn_drop=attn_drop,
            )
            for _ in range(depth)
        )


def check_schedule(text_at: Sequence[int], vision_at: Sequence[int], nt: int, nv: int) -> None:
    """Co-attention positions: same count, non-decreasing, within the streams' depths."""
    if len(text_at) != len(vision_at):
        raise ConfigError(
            f"vilbert.coattention.text_at ({list(text_at)}) and vision_at ({list(vision_at)}) "
            "must have the same length: one entry per co-attention block"
        )
    for name, at, depth in (("text_at", text_at, nt), ("vision_at", vision_at, nv)):
        if any(not isinstance(i, int) or isinstance(i, bool) or not 0 <= i <= depth for i in at):
            raise ConfigError(
                f"vilbert.coattention.{name}={list(at)}: every entry must be an int in "
                f"[0, {depth}] (how many stream layers run before that co-attention block)"
            )
        if list(at) != sorted(at):
            raise ConfigError(f"vilbert.coattention.{name}={list(at)} must be non-decreasing")


class TwoStreamEncoder(nn.Module):
    """The ViLBERT encoder: text and visual streams exchanging information by co-attention.

    ``config``: the resolved ``vilbert`` config (``text_encoder``, ``text``, ``vision``,
    ``coattention``, ``initializer_range``).
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        t, v, c = config["text"], config["vision"], config["coattention"]
        self.text = build_text_stream(config["text_encoder"], t)
        self.vision = VisualStream(
            v["feature_dim"],
            v["width"],
            v["depth"],
            v["heads"],
            v["mlp_ratio"],
            v["drop"],
            v["attn_drop"],
        )
        check_schedule(c["text_at"], c["vision_at"], len(self.text.blocks), len(self.vision.blocks))
        self.text_at = list(c["text_at"])
        self.vision_at = list(c["vision_at"])
        tw, vw = int(self.text.width), v["width"]
        text_ffn = int(tw * float(t.get("mlp_ratio", 4.0)))
        self.coattention = nn.ModuleList(
            CoAttentionBlock(
                tw,
                vw,
                c["width"],
                c["heads"],
                text_ffn,
                int(vw * v["mlp_ratio"]),
                c["drop"],
                c["attn_drop"],
            )
            for _ in self.text_at
        )
        self.text_pooler = nn.Linear(tw, c["width"])
        self.vision_pooler = nn.Linear(vw, c["width"])
        # The text encoder initialised itself; the rest gets BERT's initialisation.
        std = float(config.get("initializer_range", 0.02))
        for module in (self.vision, self.coattention, self.text_pooler, self.vision_pooler):
            init_bert_weights(module, std=std)

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
        if text_mask is None:
            text_mask = torch.ones_like(input_ids, dtype=torch.bool)
        text_mask = text_mask.bool()
        t = embed_text(self.text, input_ids, token_type_ids)  # (B, T, Dt)
        v, v_mask = self.vision.embeddings(features, locations, region_mask)  # (B, 1+R, Dv)
        t_attn, v_attn = text_mask[:, None, None, :], v_mask[:, None, None, :]
        ti = vi = 0  # stream layers run so far
        for k, block in enumerate(self.coattention):
            for layer in self.text.blocks[ti : self.text_at[k]]:
                t = layer(t, attn_mask=t_attn)
            for layer in self.vision.blocks[vi : self.vision_at[k]]:
                v = layer(v, attn_mask=v_attn)
            ti, vi = self.text_at[k], self.vision_at[k]
            t, v = block(t, text_mask, v, v_mask)
        for layer in self.text.blocks[ti:]:
            t = layer(t, attn_mask=t_attn)
        for layer in self.vision.blocks[vi:]:
            v = layer(v, attn_mask=v_attn)
        final_norm = getattr(self.text, "final_norm", None)
        if final_norm is not None:
            t = final_norm(t)
        return {
            "text": t,
            "vision": v,
            "vision_mask": v_mask,
            "pooled_text": F.relu(self.text_pooler(t[:, 0])),  # [CLS]
            "pooled_vision": F.relu(self.vision_pooler(v[:, 0])),  # <IMG>
        }
