"""The ``vilbert`` method: two-stream co-attention transformer with its pretraining heads.

A batch holds ``batch["text"]`` (``input_ids`` ``(B, T)``, ``attention_mask`` ``(B, T)``,
optional ``token_type_ids``) and ``batch["regions"]`` (``features`` ``(B, R, F)``,
``locations`` ``(B, R, 5)``, ``mask`` ``(B, R)``, and for pretraining ``class_probs``
``(B, R, C)``, the detector's class distribution per region); VQA batches add the answer
index as ``label`` (the trainer's ``label_column``) or ``answer`` ``(B,)``.

``objective`` picks what :meth:`ViLBERT.forward` trains:

- ``"pretrain"``: the paper's three tasks. The method corrupts the batch itself (half the
  captions swapped, 15% of tokens and regions masked) with a generator seeded from torch's
  global RNG (which the trainer seeds and checkpoints), or from ``batch["seed"]``. With
  ``masking.hard_negative_frac`` some swapped captions are the batch's ``hard_negative`` text
  instead (an extension of the paper: negatives that only the image tells apart).
- ``"vqa"``: the answer classifier on the product of the pooled [CLS] and <IMG> outputs.

The config is JSON; :data:`DEFAULTS` is the paper's model (BERT-base text stream, 1024-wide
6-layer visual stream, 6 co-attention blocks after text layers 6..11 and visual layers 0..5).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from colearn_plugin_text.modality import trim_padding
from torch import Tensor, nn

from colearn_core import ConfigError, Method, Modality, ModelOutput

from .config import merge_config
from .heads import AnswerHead, LMHead, RegionHead
from .layers import init_bert_weights
from .losses import alignment_loss, masked_lm_loss, masked_region_kl
from .masking import (
    IGNORE_INDEX,
    CaptionSwap,
    mask_regions,
    mask_tokens,
    same_captions,
    segment_ids,
    swap_captions,
    use_hard_negatives,
)
from .streams import TwoStreamEncoder

__all__ = ["DEFAULTS", "PretrainingInputs", "ViLBERT", "load_weights", "tiny_config"]

OBJECTIVES = ("pretrain", "vqa")
SPECIAL_ROLES = ("pad", "unk", "cls", "sep", "mask")
#: bert-base-uncased's special token ids (the official checkpoints' vocabulary).
BERT_SPECIAL_TOKENS = {"pad": 0, "unk": 100, "cls": 101, "sep": 102, "mask": 103}
#: The paper's text stream: BERT-base (its config goes to the text encoder as is).
TEXT_DEFAULTS: dict[str, Any] = {
    "vocab_size": 30522,
    "context_length": 512,
    "width": 768,
    "depth": 12,
    "heads": 12,
    "mlp_ratio": 4.0,
}

DEFAULTS: dict[str, Any] = {
    # a registered, layered text encoder (see streams.build_text_stream)
    "text_encoder": "text/bert",
    # its config; TEXT_DEFAULTS fill what is not given
    "text": {},
    # ids of the tokenizer's special tokens (pad, unk, cls, sep, mask); null: from the text
    # modality when one is configured, else bert-base-uncased's
    "special_tokens": None,
    "vision": {
        "feature_dim": 2048,
        "width": 1024,
        "depth": 6,
        "heads": 8,
        "mlp_ratio": 1.0,
        "num_classes": 1601,
        "drop": 0.1,
        "attn_drop": 0.1,
    },
    "coattention": {
        "width": 1024,
        "heads": 8,
        "text_at": [6, 7, 8, 9, 10, 11],
        "vision_at": [0, 1, 2, 3, 4, 5],
        "drop": 0.1,
        "attn_drop": 0.1,
    },
    # how the pooled [CLS] and <IMG> vectors combine: "mul" (the paper) or "sum"
    "pooling": "mul",
    # std of the normal initialisation of everything but the text stream (BertConfig's
    # initializer_range); 0.02 suits BERT-base widths, small models learn faster with more
    "initializer_range": 0.02,
    "objective": "pretrain",
    "loss_weights": {"masked_lm": 1.0, "masked_region": 1.0, "alignment": 1.0},
    "masking": {
        "token_prob": 0.15,
        "token_mask_frac": 0.8,
        "token_random_frac": 0.1,
        "region_prob": 0.15,
        "region_zero_frac": 0.9,
        "swap_frac": 0.5,
        # a swapped caption says nothing true about the image, so by default its masked
        # tokens and regions are not predicted
        "masked_losses_on_misaligned": False,
        # of the swapped captions, the fraction replaced by the example's own hard negative,
        # batch["hard_negative"] (text encoded by the text modality; map a dataset column to
        # the "hard_negative" modality): a caption of a slightly different scene, which only
        # the image tells apart (fashion-scenes' flipped_caption). 0: the paper's random swaps
        "hard_negative_frac": 0.0,
    },
    # the VQA answer vocabulary (objective "vqa")
    "answers": [],
    # weights to start from (applied once when the model is built, then recorded in
    # "initialised_from" and cleared so that a saved config does not re-apply them)
    "text_init": None,
    "init_from": None,
    "initialised_from": None,
    # preprocessing configs of the modalities, kept with the model: {"text": {...text
    # modality config...}, "regions": {...regions modality config...}}
    "modalities": {},
}


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """A small config for tests and quick experiments (different stream widths, as the paper)."""
    config: dict[str, Any] = {
        "text": {"vocab_size": 40, "context_length": 32, "width": 32, "depth": 2, "heads": 4},
        "special_tokens": {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4},
        "vision": {
            "feature_dim": 12,
            "width": 48,
            "depth": 2,
            "heads": 4,
            "mlp_ratio": 2.0,
            "num_classes": 6,
        },
        "coattention": {"width": 40, "heads": 4, "text_at": [1, 2], "vision_at": [0, 1]},
    }
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(config.get(key), Mapping):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


def _modality(configs: Mapping[str, Any], name: str) -> Modality | None:
    from colearn_core import registries

    if name not in configs:
        return None
    config = dict(configs[name])
    kind = config.pop("modality", name)
    return registries.modalities.get(kind)(**config)


def resolve_text(c: dict[str, Any], given: Mapping[str, Any] | None) -> None:
    """Fill ``c["text"]`` from :data:`TEXT_DEFAULTS`, and its ``vocab_size`` and
    ``c["special_tokens"]`` from the text modality in ``c["modalities"]`` unless ``given``
    (the user's config) sets them."""
    given_text = dict((given or {}).get("text") or {})
    c["text"] = {**TEXT_DEFAULTS, **c["text"]}
    modality = None
    if c["special_tokens"] is None or "vocab_size" not in given_text:
        modality = _modality(c["modalities"], "text")
    if modality is not None:
        if "vocab_size" not in given_text:
            c["text"]["vocab_size"] = int(modality.vocab_size)  # type: ignore[attr-defined]
        if c["special_tokens"] is None:
            ids = modality.tokenizer.ids  # type: ignore[attr-defined]
            c["special_tokens"] = {r: int(ids[r]) for r in SPECIAL_ROLES if r in ids}
    if c["special_tokens"] is None:
        c["special_tokens"] = dict(BERT_SPECIAL_TOKENS)
    special = c["special_tokens"]
    if not isinstance(special, Mapping):
        raise ConfigError(f"vilbert.special_tokens must be a mapping, got {special!r}")
    missing = [r for r in ("pad", "cls", "sep", "mask") if r not in special]
    if missing:
        raise ConfigError(
            "vilbert.special_tokens must map pad, cls, sep and mask to token ids; "
            f"missing {missing}"
        )
    vocab = c["text"]["vocab_size"]
    for name, tid in special.items():
        if not isinstance(tid, int) or isinstance(tid, bool) or not 0 <= tid < vocab:
            raise ConfigError(
                f"vilbert.special_tokens.{name}={tid!r} is not an id of the vocabulary "
                f"(text.vocab_size={vocab})"
            )


def resolve_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults + overrides, validated; errors name the key. Fills the text encoder's
    vocabulary size and the special token ids from the text modality when it is configured."""
    c = merge_config(config, DEFAULTS, "vilbert")
    if c["objective"] not in OBJECTIVES:
        raise ConfigError(f"vilbert.objective={c['objective']!r}; choose one of {OBJECTIVES}")
    std = c["initializer_range"]
    if isinstance(std, bool) or not isinstance(std, (int, float)) or not std > 0:
        raise ConfigError(f"vilbert.initializer_range must be a positive number, got {std!r}")
    if c["pooling"] not in ("mul", "sum"):
        raise ConfigError(f"vilbert.pooling={c['pooling']!r}; choose 'mul' or 'sum'")
    if c["objective"] == "vqa" and not c["answers"]:
        raise ConfigError("vilbert.objective='vqa' needs vilbert.answers, the answer vocabulary")
    resolve_text(c, config)
    return c


@dataclass
class PretrainingInputs:
    """A corrupted batch and the targets of the three pretraining tasks."""

    input_ids: Tensor  # (B, T) after caption swapping and token masking
    token_type_ids: Tensor  # (B, T)
    attention_mask: Tensor  # (B, T) bool
    mlm_labels: Tensor  # (B, T) original ids where predicted, IGNORE_INDEX elsewhere
    features: Tensor  # (B, R, F) with masked regions zeroed (90%) or kept (10%)
    region_selected: Tensor  # (B, R) bool, regions whose class distribution is predicted
    aligned: Tensor  # (B,) 1 where the caption is the image's own
    text_index: Tensor  # (B,) which caption each image got


def _require(batch: Mapping[str, Any], modality: str, keys: Sequence[str]) -> Mapping[str, Tensor]:
    if modality not in batch:
        raise KeyError(
            f"vilbert: the batch has no {modality!r} entry (got {sorted(batch)}); map a "
            f"dataset column to the {modality!r} modality"
        )
    part = batch[modality]
    missing = [k for k in keys if k not in part]
    if missing:
        raise KeyError(f"vilbert: batch[{modality!r}] lacks {missing}; it has {sorted(part)}")
    return part


def _append_captions(
    text: tuple[Tensor, Tensor, Tensor], extra: Mapping[str, Tensor], special: Mapping[str, int]
) -> tuple[Tensor, Tensor, Tensor]:
    """``(ids, attention, types)`` of the batch's captions followed by ``extra``'s (a text
    modality batch), padded to a common length."""
    if "input_ids" not in extra:
        raise KeyError(f"vilbert: batch['hard_negative'] lacks 'input_ids'; it has {sorted(extra)}")
    ids = extra["input_ids"].to(text[0].device)
    if ids.shape[0] != text[0].shape[0]:
        raise ValueError(
            f"vilbert: batch['hard_negative'] has {ids.shape[0]} captions for "
            f"{text[0].shape[0]} examples; give one hard negative per example"
        )
    attn = extra.get("attention_mask")
    attn = torch.ones_like(ids, dtype=torch.bool) if attn is None else attn.to(ids.device).bool()
    types = extra.get("token_type_ids")
    types = segment_ids(ids, special["sep"]) if types is None else types.to(ids.device)
    length = max(ids.shape[1], text[0].shape[1])
    out = []
    for a, b, fill in zip(text, (ids, attn, types), (special["pad"], False, 0)):
        a, b = (F.pad(t, (0, length - t.shape[1]), value=fill) for t in (a, b))
        out.append(torch.cat([a, b]))
    return out[0], out[1], out[2]


def load_weights(path: str | Path) -> dict[str, Tensor]:
    """A state dict from a ``.safetensors`` file or a model folder (``model.safetensors``,
    sharded ones through ``model.safetensors.index.json``). Pickles are never loaded."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        index = path / "model.safetensors.index.json"
        if index.exists():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            state: dict[str, Tensor] = {}
            for shard in shards:
                state.update(load_file(str(path / shard)))
            return state
        path = path / "model.safetensors"
    if not path.exists():
        raise FileNotFoundError(
            f"no weights at {path}: give a .safetensors file or a folder saved with "
            "save_pretrained (model.safetensors)"
        )
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: only .safetensors weights are loaded (no pickles)")
    return load_file(str(path))


class ViLBERT(Method):
    """ViLBERT (Lu et al., 2019): see the module docstring for batches and objectives."""

    contrastive = False

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        c = resolve_config(config)
        text_init, init_from = c["text_init"], c["init_from"]
        c["text_init"] = c["init_from"] = None
        super().__init__(c)
        v, co = c["vision"], c["coattention"]
        self.backbone = TwoStreamEncoder(c)
        text_width = int(self.backbone.text.width)
        self.mlm_head = LMHead(text_width, c["text"]["vocab_size"])
        self.region_head = RegionHead(v["width"], v["num_classes"])
        self.alignment_head = nn.Linear(co["width"], 2)
        self.vqa_head = AnswerHead(co["width"], len(c["answers"])) if c["answers"] else None
        self.pool_drop = nn.Dropout(0.1)
        for head in (self.mlm_head, self.region_head, self.alignment_head, self.vqa_head):
            if head is not None:
                init_bert_weights(head, std=c["initializer_range"])
        self._modality_objects: dict[str, Modality] | None = None
        provenance = {}
        if init_from:
            provenance["init_from"] = str(init_from)
            self.load_pretrained_vilbert(init_from)
        if text_init:
            provenance["text_init"] = str(text_init)
            self.load_text_stream(text_init)
        if provenance:
            self.config["initialised_from"] = provenance

    # --- building blocks -------------------------------------------------------------------

    @property
    def special(self) -> dict[str, int]:
        return dict(self.config["special_tokens"])

    @property
    def modalities(self) -> dict[str, Modality]:
        """``text`` and ``regions``, from ``config["modalities"]`` (each entry a modality
        config; ``modality`` names a registered modality other than the entry's name); with
        ``masking.hard_negative_frac`` > 0 also ``hard_negative``, the text modality again."""
        if self._modality_objects is None:
            objs: dict[str, Modality] = {}
            for name in self.config["modalities"]:
                built = _modality(self.config["modalities"], name)
                assert built is not None
                objs[name] = built
            if self.config["masking"]["hard_negative_frac"] > 0 and "text" in objs:
                objs.setdefault("hard_negative", objs["text"])
            self._modality_objects = objs
        return dict(self._modality_objects)

    def encode(
        self,
        text: Mapping[str, Tensor],
        regions: Mapping[str, Tensor],
        *,
        input_ids: Tensor | None = None,
        features: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Run both streams; ``input_ids``/``features`` override the batch's (corrupted ones).

        Text columns after the batch's last real token are cut (:func:`trim_padding`), so the
        ``text`` output is ``(B, T', Dt)`` with ``T'`` at most the input length.
        """
        if input_ids is not None:
            text = {**text, "input_ids": input_ids}
        text = trim_padding(text)
        ids = text["input_ids"]
        mask = text.get("attention_mask")
        mask = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool()
        types = text.get("token_type_ids")
        if types is None:
            types = segment_ids(ids, self.special["sep"])
        feats = regions["features"] if features is None else features
        out = self.backbone(ids, types, mask, feats, regions["locations"], regions.get("mask"))
        out["pooled"] = self.combine(out["pooled_text"], out["pooled_vision"])
        return out

    def combine(self, pooled_text: Tensor, pooled_vision: Tensor) -> Tensor:
        """The joint vector: elementwise product (paper) or sum of the pooled outputs."""
        if self.config["pooling"] == "mul":
            return pooled_text * pooled_vision
        return pooled_text + pooled_vision

    def alignment_logits(self, text: Mapping[str, Tensor], regions: Mapping[str, Tensor]) -> Tensor:
        """``(B, 2)`` logits of (not aligned, aligned) for the given caption/image pairs."""
        return self.alignment_head(self.pool_drop(self.encode(text, regions)["pooled"]))

    def alignment_score(self, text: Mapping[str, Tensor], regions: Mapping[str, Tensor]) -> Tensor:
        """``(B,)`` log-odds that each caption describes its image (for retrieval)."""
        logits = self.alignment_logits(text, regions)
        return logits[:, 1] - logits[:, 0]

    # --- pretraining ------------------------------------------------------------------------

    def _generator(self, batch: Mapping[str, Any]) -> torch.Generator:
        seed = batch.get("seed")
        if seed is None:
            # Drawn from the global RNG, which the trainer seeds and checkpoints.
            seed = int(torch.randint(0, 2**62, (1,)).item())
        return torch.Generator().manual_seed(int(seed))

    def prepare_pretraining(
        self,
        batch: Mapping[str, Any],
        generator: torch.Generator | None = None,
        hard_negatives: bool = True,
    ) -> PretrainingInputs:
        """Swap half the captions, mask tokens and regions; targets for the three tasks.

        ``hard_negatives``: use ``batch["hard_negative"]`` as ``masking.hard_negative_frac``
        says (False: the paper's random swaps only, e.g. to measure alignment as published).
        """
        text = _require(batch, "text", ["input_ids"])
        regions = _require(batch, "regions", ["features", "locations"])
        m, sp = self.config["masking"], self.special
        ids = text["input_ids"]
        attn = text.get("attention_mask")
        attn = torch.ones_like(ids, dtype=torch.bool) if attn is None else attn.bool()
        types = text.get("token_type_ids")
        types = segment_ids(ids, sp["sep"]) if types is None else types

        swap = swap_captions(ids, attn, generator=generator, fraction=m["swap_frac"])
        if hard_negatives and m["hard_negative_frac"] > 0:
            hard = batch.get("hard_negative")
            if hard is None:
                raise KeyError(
                    f"vilbert: masking.hard_negative_frac={m['hard_negative_frac']} needs "
                    "batch['hard_negative']: map a dataset column of hard-negative captions to "
                    "the 'hard_negative' modality (e.g. data.columns.hard_negative: "
                    "flipped_caption), or set masking.hard_negative_frac to 0"
                )
            own_ids, own_attn = ids, attn
            index = use_hard_negatives(swap, m["hard_negative_frac"], generator=generator)
            ids, attn, types = _append_captions((ids, attn, types), hard, sp)
            aligned = same_captions(ids[index], attn[index], own_ids, own_attn)
            swap = CaptionSwap(text_index=index, aligned=aligned.long())
        ids, attn, types = ids[swap.text_index], attn[swap.text_index], types[swap.text_index]
        # cut the padding the chosen captions share, as encode() will (labels must match)
        cut = trim_padding({"input_ids": ids, "attention_mask": attn, "token_type_ids": types})
        ids, attn, types = cut["input_ids"], cut["attention_mask"], cut["token_type_ids"]

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
        valid = regions.get("mask")
        feats = regions["features"]
        if valid is None:
            valid = torch.ones(feats.shape[:2], dtype=torch.bool, device=feats.device)
        masked_feats, selected = mask_regions(
            feats,
            valid,
            generator=generator,
            prob=m["region_prob"],
            zero_frac=m["region_zero_frac"],
        )
        if not m["masked_losses_on_misaligned"]:
            keep = swap.aligned.bool()
            labels = labels.masked_fill(~keep.unsqueeze(1), IGNORE_INDEX)
            selected = selected & keep.unsqueeze(1)
        return PretrainingInputs(
            input_ids=corrupted,
            token_type_ids=types,
            attention_mask=attn,
            mlm_labels=labels,
            features=masked_feats,
            region_selected=selected,
            aligned=swap.aligned,
            text_index=swap.text_index,
        )

    def pretraining_outputs(self, batch: Mapping[str, Any], p: PretrainingInputs) -> ModelOutput:
        """Logits and weighted losses of the three tasks on prepared inputs."""
        regions = batch["regions"]
        text = {
            "input_ids": p.input_ids,
            "attention_mask": p.attention_mask,
            "token_type_ids": p.token_type_ids,
        }
        out = self.encode(text, regions, features=p.features)
        word = self.backbone.text.word_embeddings.weight
        mlm_logits = self.mlm_head(out["text"], word)  # (B, T, V)
        region_logits = self.region_head(out["vision"][:, 1:])  # (B, R, C), <IMG> skipped
        align_logits = self.alignment_head(self.pool_drop(out["pooled"]))  # (B, 2)
        w = self.config["loss_weights"]
        losses: dict[str, Tensor] = {}
        if w["masked_lm"]:
            losses["masked_lm"] = w["masked_lm"] * masked_lm_loss(mlm_logits, p.mlm_labels)
        if w["masked_region"]:
            if "class_probs" not in regions:
                raise KeyError(
                    "vilbert pretraining needs batch['regions']['class_probs'], the detector's "
                    "class distribution per region (masked multimodal modelling); set "
                    "loss_weights.masked_region to 0 to train without it"
                )
            losses["masked_region"] = w["masked_region"] * masked_region_kl(
                region_logits, regions["class_probs"], p.region_selected
            )
        if w["alignment"]:
            losses["alignment"] = w["alignment"] * alignment_loss(align_logits, p.aligned)
        return ModelOutput(
            embeddings={"text": out["pooled_text"], "regions": out["pooled_vision"]},
            logits={"masked_lm": mlm_logits, "regions": region_logits, "alignment": align_logits},
            losses=losses,
        )

    # --- forward ----------------------------------------------------------------------------

    def forward(self, batch: Mapping[str, Any]) -> ModelOutput:
        if self.config["objective"] == "pretrain":
            prepared = batch.get("pretraining")
            if prepared is None:
                prepared = self.prepare_pretraining(batch, self._generator(batch))
            return self.pretraining_outputs(batch, prepared)
        text = _require(batch, "text", ["input_ids"])
        regions = _require(batch, "regions", ["features", "locations"])
        out = self.encode(text, regions)
        assert self.vqa_head is not None
        logits = self.vqa_head(self.pool_drop(out["pooled"]))  # (B, A)
        losses = {}
        answer = batch.get("label", batch.get("answer"))
        if answer is not None:
            losses["vqa"] = F.cross_entropy(logits, answer.long())
        return ModelOutput(
            embeddings={"text": out["pooled_text"], "regions": out["pooled_vision"]},
            logits={"vqa": logits},
            losses=losses,
        )

    # --- initialisation from other checkpoints ----------------------------------------------

    def load_text_stream(self, path: str | Path) -> list[str]:
        """Initialise the text stream (and the masked-LM head) from a ``vilbert-text`` model.

        ``path``: a folder written by ``save_pretrained`` or a ``.safetensors`` file. Returns
        the keys loaded. Shape mismatches (a different text width or vocabulary) are errors.
        """
        state = load_weights(path)
        loaded = []
        for prefix, module in (("text.", self.backbone.text), ("mlm_head.", self.mlm_head)):
            sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            if not sub and prefix == "text.":
                raise ValueError(
                    f"{path}: no 'text.*' weights; expected a model trained with the "
                    "'vilbert-text' method"
                )
            if not sub:
                continue
            _load_checked(module, sub, f"{path} ({prefix}*)")
            loaded += [prefix + k for k in sub]
        return loaded

    def load_pretrained_vilbert(self, path: str | Path) -> list[str]:
        """Start from a ViLBERT checkpoint (e.g. pretraining -> VQA fine-tuning).

        Every backbone and pretraining-head weight must be present with the same shape; the
        VQA head is taken when its answer vocabulary has the same size, else left fresh.
        """
        state = load_weights(path)
        own = self.state_dict()
        wanted = {k: v for k, v in state.items() if k in own}
        if self.vqa_head is not None:
            vqa = {k for k in wanted if k.startswith("vqa_head.")}
            if any(wanted[k].shape != own[k].shape for k in vqa):
                for k in vqa:
                    del wanted[k]
        missing = [k for k in own if k not in wanted and not k.startswith("vqa_head.")]
        if missing:
            raise ValueError(f"{path}: not a ViLBERT checkpoint of this shape; missing {missing}")
        _load_checked(self, wanted, str(path), strict=False)
        return sorted(wanted)

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, modalities: Sequence[str] | None = None
    ) -> ViLBERT:
        if modalities is not None and set(modalities) != {"text", "regions"}:
            raise ValueError(
                "vilbert needs both of its streams (text and regions); it cannot load "
                f"only {sorted(modalities)}"
            )
        return cls(config)


def _load_checked(
    module: nn.Module, state: Mapping[str, Tensor], where: str, strict: bool = True
) -> None:
    own = module.state_dict()
    bad = [
        f"{k}: {tuple(v.shape)} in file vs {tuple(own[k].shape)} in model"
        for k, v in state.items()
        if k in own and own[k].shape != v.shape
    ]
    if bad:
        raise ValueError(f"{where}: shape mismatch: " + "; ".join(bad))
    try:
        module.load_state_dict(dict(state), strict=strict)
    except RuntimeError as exc:
        raise ValueError(f"{where}: {exc}") from None
