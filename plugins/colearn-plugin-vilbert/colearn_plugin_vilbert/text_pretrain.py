"""``vilbert-text``: BERT pretraining of ViLBERT's text stream, before the multimodal stage.

Masked language modelling (15% of tokens: 80% [MASK], 10% random, 10% unchanged) plus
next-sentence prediction: the input is ``[CLS] A [SEP] B [SEP]`` (the text modality in
``bert`` style encodes a pair of strings so, with token types 0/1) and the [CLS] output goes
into a linear layer that says whether B follows A. Pairs come from
:func:`~colearn_plugin_vilbert.scenes.make_nsp_pairs` (the ``fashion-scenes`` builder with
``task: nsp``), 50% true continuations; the label is ``batch["label"]`` (1 = B follows A).

The weights are named like ViLBERT's: ``text.*`` (the text encoder) and ``mlm_head.*``, so
``vilbert``'s ``text_init`` loads them into its text stream and masked-LM head.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from colearn_plugin_text.modality import trim_padding
from torch import Tensor, nn

from colearn_core import ConfigError, Method, Modality, ModelOutput

from .config import merge_config
from .heads import LMHead
from .layers import init_bert_weights
from .losses import masked_lm_loss
from .masking import mask_tokens, segment_ids
from .model import _modality, resolve_text
from .streams import build_text_stream

__all__ = ["DEFAULTS", "ViLBERTText"]

DEFAULTS: dict[str, Any] = {
    "text_encoder": "text/bert",
    "text": {},
    "special_tokens": None,
    "loss_weights": {"masked_lm": 1.0, "next_sentence": 1.0},
    "masking": {"token_prob": 0.15, "token_mask_frac": 0.8, "token_random_frac": 0.1},
    "modalities": {},
}


class ViLBERTText(Method):
    """BERT (masked LM + next sentence) on the text encoder ViLBERT's text stream uses.

    Config: ``text_encoder``, ``text``, ``special_tokens``, ``modalities`` as in ``vilbert``;
    ``loss_weights`` (``masked_lm``, ``next_sentence``); ``masking`` (token fractions).
    """

    contrastive = False

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        c = merge_config(config, DEFAULTS, "vilbert-text")
        resolve_text(c, config)
        super().__init__(c)
        self.text = build_text_stream(c["text_encoder"], c["text"])
        width = int(self.text.width)
        self.mlm_head = LMHead(width, c["text"]["vocab_size"])
        self.nsp_head = nn.Linear(width, 2)
        init_bert_weights(self.mlm_head)
        init_bert_weights(self.nsp_head)
        self._modality_objects: dict[str, Modality] | None = None

    @property
    def modalities(self) -> dict[str, Modality]:
        if self._modality_objects is None:
            configs = self.config["modalities"]
            self._modality_objects = {n: _modality(configs, n) for n in configs}  # type: ignore[misc]
        return dict(self._modality_objects)  # type: ignore[arg-type]

    def vilbert_config(self, **overrides: Any) -> dict[str, Any]:
        """A ``vilbert`` config whose text stream matches this model (same encoder config,
        special tokens and text modality); ``overrides`` add the rest."""
        config: dict[str, Any] = {
            "text_encoder": self.config["text_encoder"],
            "text": dict(self.config["text"]),
            "special_tokens": dict(self.config["special_tokens"]),
            "modalities": dict(self.config["modalities"]),
        }
        config.update(overrides)
        return config

    def forward(self, batch: Mapping[str, Any]) -> ModelOutput:
        if "text" not in batch:
            raise KeyError(f"vilbert-text: the batch has no 'text' entry (got {sorted(batch)})")
        text = trim_padding(batch["text"])  # padded columns change nothing; skip their compute
        ids = text["input_ids"]
        sp, m = self.config["special_tokens"], self.config["masking"]
        attn = text.get("attention_mask")
        attn = torch.ones_like(ids, dtype=torch.bool) if attn is None else attn.bool()
        types = text.get("token_type_ids")
        types = segment_ids(ids, sp["sep"]) if types is None else types
        seed = batch.get("seed")
        if seed is None:  # from the global RNG, which the trainer seeds and checkpoints
            seed = int(torch.randint(0, 2**62, (1,)).item())
        generator = torch.Generator().manual_seed(int(seed))
        maskable = attn & (ids != sp["cls"]) & (ids != sp["sep"]) & (ids != sp["pad"])
        corrupted, labels = mask_tokens(
            ids,
            maskable,
            mask_id=sp["mask"],
            vocab_size=self.config["text"]["vocab_size"],
            special_ids=sp.values(),
            generator=generator,
            prob=m["token_prob"],
            mask_frac=m["token_mask_frac"],
            random_frac=m["token_random_frac"],
        )
        out = self.text({"input_ids": corrupted, "attention_mask": attn, "token_type_ids": types})
        mlm_logits = self.mlm_head(out.tokens, self.text.word_embeddings.weight)  # (B, T, V)
        nsp_logits = self.nsp_head(out.tokens[:, 0])  # (B, 2), from [CLS]
        w = self.config["loss_weights"]
        losses: dict[str, Tensor] = {}
        if w["masked_lm"]:
            losses["masked_lm"] = w["masked_lm"] * masked_lm_loss(mlm_logits, labels)
        is_next = batch.get("label", batch.get("is_next"))
        if w["next_sentence"] and is_next is not None:
            losses["next_sentence"] = w["next_sentence"] * F.cross_entropy(
                nsp_logits, is_next.long()
            )
        return ModelOutput(
            embeddings={"text": out.tokens[:, 0]},
            logits={"masked_lm": mlm_logits, "next_sentence": nsp_logits, "mlm_labels": labels},
            losses=losses,
        )

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, modalities: Sequence[str] | None = None
    ) -> ViLBERTText:
        if modalities is not None and list(modalities) != ["text"]:
            raise ConfigError(f"vilbert-text has only a text tower, not {list(modalities)}")
        return cls(config)
