"""Co-attentional transformer layers (Lu et al., 2019, ViLBERT, Fig. 2b) and the
``co-attention`` fusion.

A co-attention block exchanges keys and values between two streams: the queries of stream A
attend over the keys and values of stream B and vice versa. Each stream then adds the result to
its input (residual + LayerNorm) and runs its own feed-forward sub-layer (residual + LayerNorm).
The streams may have different widths; the attention runs at a shared ``width``
(``bi_hidden_size`` in the official code) and each stream projects back to its own width.

Naming: stream ``a`` is the text stream and ``b`` the visual stream when used by ViLBERT.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from colearn_plugin_image.vit import Mlp
from torch import Tensor, nn

from colearn_core import ConfigError, EncoderOutput, Fusion

from .layers import LN_EPS, attend, check_heads, init_bert_weights

__all__ = ["CoAttention", "CoAttentionBlock", "CoAttentionFusion"]


class CoAttention(nn.Module):
    """Two cross-attentions: text queries over vision keys/values and vision queries over text.

    text: ``(B, T, Dt)``, vision: ``(B, R, Dv)`` -> text context ``(B, T, W)`` and vision
    context ``(B, R, W)`` at the shared width W.
    """

    def __init__(
        self, text_width: int, vision_width: int, width: int, heads: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        check_heads(width, heads, "co-attention")
        self.heads = heads
        self.dropout = dropout
        self.text_query = nn.Linear(text_width, width)
        self.text_key = nn.Linear(text_width, width)
        self.text_value = nn.Linear(text_width, width)
        self.vision_query = nn.Linear(vision_width, width)
        self.vision_key = nn.Linear(vision_width, width)
        self.vision_value = nn.Linear(vision_width, width)

    def forward(
        self, text: Tensor, text_mask: Tensor | None, vision: Tensor, vision_mask: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        p = self.dropout if self.training else 0.0
        # Text queries read the image; the keys that may be attended are the image's regions.
        text_ctx = attend(
            self.text_query(text),
            self.vision_key(vision),
            self.vision_value(vision),
            vision_mask,
            self.heads,
            p,
        )  # (B, T, W)
        vision_ctx = attend(
            self.vision_query(vision),
            self.text_key(text),
            self.text_value(text),
            text_mask,
            self.heads,
            p,
        )  # (B, R, W)
        return text_ctx, vision_ctx


class CoAttentionBlock(nn.Module):
    """One Co-TRM: co-attention, then per stream Add&Norm, feed-forward, Add&Norm."""

    def __init__(
        self,
        text_width: int,
        vision_width: int,
        width: int,
        heads: int,
        text_ffn: int,
        vision_ffn: int,
        dropout: float = 0.1,
        attn_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.attention = CoAttention(text_width, vision_width, width, heads, attn_dropout)
        self.text_out = nn.Linear(width, text_width)
        self.text_norm = nn.LayerNorm(text_width, eps=LN_EPS)
        self.vision_out = nn.Linear(width, vision_width)
        self.vision_norm = nn.LayerNorm(vision_width, eps=LN_EPS)
        self.text_ffn = Mlp(text_width, text_ffn, drop=dropout)
        self.text_ffn_norm = nn.LayerNorm(text_width, eps=LN_EPS)
        self.vision_ffn = Mlp(vision_width, vision_ffn, drop=dropout)
        self.vision_ffn_norm = nn.LayerNorm(vision_width, eps=LN_EPS)
        self.drop = nn.Dropout(dropout)

    def forward(
        self, text: Tensor, text_mask: Tensor | None, vision: Tensor, vision_mask: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """text ``(B, T, Dt)``, vision ``(B, R, Dv)``; masks ``(B, T)``/``(B, R)`` bool."""
        text_ctx, vision_ctx = self.attention(text, text_mask, vision, vision_mask)
        text = self.text_norm(text + self.drop(self.text_out(text_ctx)))
        vision = self.vision_norm(vision + self.drop(self.vision_out(vision_ctx)))
        text = self.text_ffn_norm(text + self.text_ffn(text))
        vision = self.vision_ffn_norm(vision + self.vision_ffn(vision))
        return text, vision


class CoAttentionFusion(Fusion):
    """The ``co-attention`` fusion: a stack of Co-TRM blocks between two named streams.

    ``forward({a: EncoderOutput, b: EncoderOutput, ...})`` returns the same mapping with the two
    streams' tokens exchanged through ``layers`` co-attention blocks; pooled vectors are the
    first token of each stream (their [CLS]/<IMG> token), other entries pass through.

    Config: ``streams`` (the two modality names), ``widths`` (their widths), ``width`` (the
    shared attention width), ``heads``, ``layers``, ``ffn`` (feed-forward sizes per stream;
    default 4x width), ``dropout``.
    """

    def __init__(
        self,
        streams: Sequence[str] = ("text", "regions"),
        widths: Sequence[int] = (768, 1024),
        width: int = 1024,
        heads: int = 8,
        layers: int = 1,
        ffn: Sequence[int] | None = None,
        dropout: float = 0.1,
        **extra: Any,
    ) -> None:
        super().__init__()
        if extra:
            raise ConfigError(f"co-attention fusion: unknown config keys {sorted(extra)}")
        if len(streams) != 2 or len(widths) != 2 or streams[0] == streams[1]:
            raise ConfigError(
                f"co-attention fusion joins exactly two different streams; got streams="
                f"{list(streams)} widths={list(widths)}"
            )
        ffn = list(ffn) if ffn is not None else [4 * w for w in widths]
        self.config: dict[str, Any] = {
            "streams": list(streams),
            "widths": list(widths),
            "width": width,
            "heads": heads,
            "layers": layers,
            "ffn": ffn,
            "dropout": dropout,
        }
        self.streams = (str(streams[0]), str(streams[1]))
        self.blocks = nn.ModuleList(
            CoAttentionBlock(widths[0], widths[1], width, heads, ffn[0], ffn[1], dropout)
            for _ in range(layers)
        )
        init_bert_weights(self)

    def forward(self, features: Mapping[str, EncoderOutput]) -> dict[str, EncoderOutput]:
        a_name, b_name = self.streams
        missing = [n for n in self.streams if n not in features]
        if missing:
            raise KeyError(
                f"co-attention fusion needs streams {list(self.streams)}; missing {missing}, "
                f"got {sorted(features)}"
            )
        a, b = features[a_name], features[b_name]
        ta, tb = a.tokens, b.tokens
        ma = None if a.mask is None else a.mask.bool()
        mb = None if b.mask is None else b.mask.bool()
        for block in self.blocks:
            ta, tb = block(ta, ma, tb, mb)
        out = dict(features)
        out[a_name] = EncoderOutput(tokens=ta, pooled=ta[:, 0], mask=a.mask)
        out[b_name] = EncoderOutput(tokens=tb, pooled=tb[:, 0], mask=b.mask)
        return out
