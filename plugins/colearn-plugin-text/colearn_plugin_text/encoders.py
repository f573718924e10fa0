"""Text encoders: ``text/transformer`` (CLIP's causal transformer) and ``text/bert``.

Both take ``inputs["input_ids"]`` ``(B, L)`` and ``inputs["attention_mask"]`` ``(B, L)`` (1 for
real tokens, 0 for padding) and return :class:`~colearn_core.EncoderOutput` with ``tokens``
``(B, L, D)``, ``pooled`` ``(B, D)`` and ``mask`` ``(B, L)`` bool. The blocks are
:class:`colearn_plugin_image.vit.TransformerBlock` (shared with the image, audio, depth and
thermal towers).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from colearn_plugin_image.vit import TransformerBlock
from torch import Tensor, nn

from colearn_core import ConfigError, Encoder, EncoderOutput

__all__ = ["BertEncoder", "BertLMHead", "TextTransformer"]


def _check_keys(name: str, config: Mapping[str, Any], known: set[str]) -> None:
    unknown = set(config) - known
    if unknown:
        raise ConfigError(f"{name}: unknown config keys {sorted(unknown)}; known: {sorted(known)}")


def _ids_and_mask(name: str, inputs: Mapping[str, Tensor], context_length: int):
    ids = inputs["input_ids"]
    if ids.ndim != 2 or ids.dtype not in (torch.int32, torch.int64):
        raise ValueError(
            f"{name}: expected input_ids of shape (B, L) and an integer dtype, got "
            f"{tuple(ids.shape)} {ids.dtype}"
        )
    if ids.shape[1] > context_length:
        raise ValueError(
            f"{name}: sequence length {ids.shape[1]} exceeds context_length {context_length}"
        )
    mask = inputs.get("attention_mask")
    mask = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool()
    return ids, mask


def _example_inputs(
    vocab_size: int, batch_size: int, length: int, generator: torch.Generator | None
) -> dict[str, Tensor]:
    ids = torch.randint(0, vocab_size, (batch_size, length), generator=generator)
    lengths = torch.randint(2, length + 1, (batch_size,), generator=generator)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()  # right padding
    return {"input_ids": ids * mask, "attention_mask": mask}


_TEXT_KEYS = {
    "vocab_size",
    "context_length",
    "width",
    "depth",
    "heads",
    "mlp_ratio",
    "output_dim",
    "act",
    "norm_eps",
    "eot_token_id",
    "drop",
    "attn_drop",
    "drop_path",
}


class TextTransformer(Encoder):
    """``text/transformer``: CLIP's text tower.

    token + learned positional embedding -> pre-norm blocks with a causal mask -> final
    LayerNorm. ``pooled`` is the feature at the end-of-text token: the first position holding
    ``eot_token_id`` when that is configured, otherwise the last real token of
    ``attention_mask`` (where the end token sits after tokenisation), otherwise the highest id
    (OpenAI CLIP's argmax rule). ``output_dim`` adds CLIP's bias-free ``text_projection``,
    applied to tokens and pooled vector.

    Config: ``vocab_size`` (49408), ``context_length`` (77), ``width`` (512), ``depth`` (12),
    ``heads`` (8), ``mlp_ratio`` (4), ``output_dim``, ``act`` (gelu; quick_gelu for OpenAI
    weights), ``norm_eps`` (1e-5), ``eot_token_id``, ``drop``, ``attn_drop``, ``drop_path``.
    """

    modality = "text"

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        _check_keys("text/transformer", config, _TEXT_KEYS)
        self.vocab_size = int(config.get("vocab_size", 49408))
        self.context_length = int(config.get("context_length", 77))
        width, depth = int(config.get("width", 512)), int(config.get("depth", 12))
        self.eot_token_id = config.get("eot_token_id")
        self.token_embedding = nn.Embedding(self.vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(self.context_length, width))
        self.blocks = nn.ModuleList(
            TransformerBlock(
                width,
                int(config.get("heads", 8)),
                mlp_ratio=float(config.get("mlp_ratio", 4.0)),
                norm_eps=float(config.get("norm_eps", 1e-5)),
                act=config.get("act", "gelu"),
                drop=float(config.get("drop", 0.0)),
                attn_drop=float(config.get("attn_drop", 0.0)),
                drop_path=float(config.get("drop_path", 0.0)) * i / max(depth - 1, 1),
            )
            for i in range(depth)
        )
        self.ln_final = nn.LayerNorm(width, eps=float(config.get("norm_eps", 1e-5)))
        out = config.get("output_dim")
        self.text_projection = nn.Linear(width, int(out), bias=False) if out else None
        self.width = int(out) if out else width
        self._init(width, depth)

    def _init(self, width: int, depth: int) -> None:
        # CLIP's initialisation: small embeddings, residual projections scaled by depth.
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        attn_std, proj_std, fc_std = (
            width**-0.5,
            width**-0.5 * (2 * depth) ** -0.5,
            (2 * width) ** -0.5,
        )
        for block in self.blocks:
            nn.init.normal_(block.attn.qkv.weight, std=attn_std)
            nn.init.zeros_(block.attn.qkv.bias)
            nn.init.normal_(block.attn.proj.weight, std=proj_std)
            nn.init.zeros_(block.attn.proj.bias)
            nn.init.normal_(block.mlp.fc1.weight, std=fc_std)
            nn.init.normal_(block.mlp.fc2.weight, std=proj_std)
        if self.text_projection is not None:
            nn.init.normal_(self.text_projection.weight, std=width**-0.5)

    def eot_positions(self, ids: Tensor, mask: Tensor, has_mask: bool) -> Tensor:
        """``(B,)`` index of the end-of-text token of each row."""
        if self.eot_token_id is not None:
            is_eot = ids == int(self.eot_token_id)
            if not is_eot.any(dim=1).all():
                row = int((~is_eot.any(dim=1)).nonzero()[0])
                raise ValueError(
                    f"text/transformer: row {row} has no end-of-text token "
                    f"(id {self.eot_token_id}); was it tokenised with the same tokenizer?"
                )
            return is_eot.int().argmax(dim=1)  # first occurrence
        if has_mask:
            return mask.long().sum(dim=1).clamp(min=1) - 1
        return ids.argmax(dim=1)

    def forward(self, inputs: Mapping[str, Tensor]) -> EncoderOutput:
        ids, mask = _ids_and_mask("text/transformer", inputs, self.context_length)
        B, L = ids.shape
        x = self.token_embedding(ids) + self.positional_embedding[:L]  # (B, L, D)
        # Right padding sits after the end token, so the causal mask alone keeps it out of
        # every real token's features.
        for block in self.blocks:
            x = block(x, is_causal=True)
        x = self.ln_final(x)
        eot = self.eot_positions(ids, mask, "attention_mask" in inputs)
        pooled = x[torch.arange(B, device=x.device), eot]  # (B, D)
        if self.text_projection is not None:
            x, pooled = self.text_projection(x), self.text_projection(pooled)
        return EncoderOutput(tokens=x, pooled=pooled, mask=mask)

    @classmethod
    def example_config(cls) -> dict[str, Any]:
        return {"vocab_size": 64, "context_length": 8, "width": 32, "depth": 2, "heads": 2}

    def example_inputs(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        return _example_inputs(self.vocab_size, batch_size, self.context_length, generator)


_BERT_KEYS = {
    "vocab_size",
    "context_length",
    "type_vocab_size",
    "width",
    "depth",
    "heads",
    "mlp_ratio",
    "norm_first",
    "norm_eps",
    "act",
    "drop",
    "attn_drop",
    "pooler",
    "output_dim",
    "pad_token_id",
}


class BertEncoder(Encoder):
    """``text/bert``: a bidirectional BERT-style encoder.

    token + position + segment (``token_type_ids``) embeddings -> LayerNorm -> blocks with a
    padding mask. ``norm_first=False`` (default) is BERT's post-norm block
    (``x = LN(x + sublayer(x))``); ``norm_first=True`` gives pre-norm blocks and a final
    LayerNorm. ``tokens`` are the per-token outputs (feed them to :class:`BertLMHead` for masked
    language modelling); ``pooled`` is the [CLS] (first) token, passed through BERT's
    dense + tanh pooler when ``pooler: tanh``, and through a bias-free projection when
    ``output_dim`` is set (applied to tokens too).

    Config: ``vocab_size`` (30522), ``context_length`` (512 positions), ``type_vocab_size`` (2),
    ``width`` (768), ``depth`` (12), ``heads`` (12), ``mlp_ratio`` (4), ``norm_first`` (False),
    ``norm_eps`` (1e-12), ``act`` (gelu), ``drop`` (0.1), ``attn_drop`` (0.1), ``pooler``
    ("none" or "tanh"), ``output_dim``, ``pad_token_id`` (0).
    """

    modality = "text"

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        _check_keys("text/bert", config, _BERT_KEYS)
        self.vocab_size = int(config.get("vocab_size", 30522))
        self.context_length = int(config.get("context_length", 512))
        self.type_vocab_size = int(config.get("type_vocab_size", 2))
        width, depth = int(config.get("width", 768)), int(config.get("depth", 12))
        eps = float(config.get("norm_eps", 1e-12))
        drop = float(config.get("drop", 0.1))
        self.norm_first = bool(config.get("norm_first", False))
        pooler = config.get("pooler", "none")
        if pooler not in ("none", "tanh"):
            raise ConfigError(f"text/bert: pooler must be 'none' or 'tanh', got {pooler!r}")
        pad = int(config.get("pad_token_id", 0))
        self.word_embeddings = nn.Embedding(self.vocab_size, width, padding_idx=pad)
        self.position_embeddings = nn.Embedding(self.context_length, width)
        self.token_type_embeddings = nn.Embedding(self.type_vocab_size, width)
        self.embedding_norm = nn.LayerNorm(width, eps=eps)
        self.embedding_dropout = nn.Dropout(drop)
        self.blocks = nn.ModuleList(
            TransformerBlock(
                width,
                int(config.get("heads", 12)),
                mlp_ratio=float(config.get("mlp_ratio", 4.0)),
                norm_first=self.norm_first,
                norm_eps=eps,
                act=config.get("act", "gelu"),
                drop=drop,
                attn_drop=float(config.get("attn_drop", 0.1)),
            )
            for _ in range(depth)
        )
        self.final_norm = nn.LayerNorm(width, eps=eps) if self.norm_first else nn.Identity()
        self.pooler = (
            nn.Sequential(nn.Linear(width, width), nn.Tanh()) if pooler == "tanh" else None
        )
        out = config.get("output_dim")
        self.proj = nn.Linear(width, int(out), bias=False) if out else None
        self.width = int(out) if out else width
        self._init()

    def _init(self) -> None:
        # BERT's initialisation: N(0, 0.02) weights, zero biases, unit LayerNorms.
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        pad = self.word_embeddings.padding_idx
        if pad is not None:
            with torch.no_grad():
                self.word_embeddings.weight[pad].zero_()

    def forward(self, inputs: Mapping[str, Tensor]) -> EncoderOutput:
        ids, mask = _ids_and_mask("text/bert", inputs, self.context_length)
        B, L = ids.shape
        types = inputs.get("token_type_ids")
        types = torch.zeros_like(ids) if types is None else types
        positions = torch.arange(L, device=ids.device)
        x = (
            self.word_embeddings(ids)
            + self.position_embeddings(positions)[None]
            + self.token_type_embeddings(types)
        )  # (B, L, D)
        x = self.embedding_dropout(self.embedding_norm(x))
        key_mask = mask[:, None, None, :]  # (B, 1, 1, L): queries may attend real keys only
        for block in self.blocks:
            x = block(x, attn_mask=key_mask)
        x = self.final_norm(x)
        pooled = x[:, 0]  # [CLS]
        if self.pooler is not None:
            pooled = self.pooler(pooled)
        if self.proj is not None:
            x, pooled = self.proj(x), self.proj(pooled)
        return EncoderOutput(tokens=x, pooled=pooled, mask=mask)

    @classmethod
    def example_config(cls) -> dict[str, Any]:
        return {"vocab_size": 64, "context_length": 8, "width": 32, "depth": 2, "heads": 2}

    def example_inputs(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        inputs = _example_inputs(self.vocab_size, batch_size, self.context_length, generator)
        half = self.context_length // 2
        types = torch.zeros_like(inputs["input_ids"])
        types[:, half:] = 1
        inputs["token_type_ids"] = types * inputs["attention_mask"]
        return inputs


class BertLMHead(nn.Module):
    """BERT's masked-LM head: dense -> GELU -> LayerNorm -> vocabulary logits.

    Pass ``embedding`` (the encoder's ``word_embeddings``) to tie the output matrix to it, as
    BERT does; a tied model must be saved with ``safetensors.torch.save_model``, which handles
    shared tensors.
    """

    def __init__(
        self,
        width: int,
        vocab_size: int,
        *,
        embedding: nn.Embedding | None = None,
        norm_eps: float = 1e-12,
    ) -> None:
        super().__init__()
        self.dense = nn.Linear(width, width)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(width, eps=norm_eps)
        self.decoder = nn.Linear(width, vocab_size)
        if embedding is not None:
            if embedding.weight.shape != (vocab_size, width):
                raise ValueError(
                    f"tied embedding has shape {tuple(embedding.weight.shape)}, expected "
                    f"({vocab_size}, {width})"
                )
            self.decoder.weight = embedding.weight

    def forward(self, tokens: Tensor) -> Tensor:
        """``(B, L, D)`` -> ``(B, L, vocab_size)`` logits."""
        return self.decoder(self.norm(self.act(self.dense(tokens))))
