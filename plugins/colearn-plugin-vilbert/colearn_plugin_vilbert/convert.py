"""Import checkpoints of the official ViLBERT code (facebookresearch/vilbert-multi-task).

:func:`config_from_official` turns the official ``BertConfig`` JSON (e.g.
``config/bert_base_6layer_6conect.json``) into a ``vilbert`` config;
:func:`convert_official_state_dict` renames (and where needed fuses or reorders) the tensors of
``BertForMultiModalPreTraining`` / ``VILBertForVLTasks`` into this plugin's names. The table
is in ``docs/methods/vilbert.md``. In short:

- BERT's separate ``query``/``key``/``value`` become one fused ``attn.qkv`` (rows q, k, v);
- ``cls.bi_seq_relationship`` (official class 0 = caption matches) becomes
  ``alignment_head`` with its two rows swapped (here class 1 = aligned);
- ``cls.predictions.decoder.weight`` (tied to the word embeddings) and ``biOutput.q_dense*``
  (never used by the official forward) are dropped; task tokens and the other task heads are
  reported as unused.

Official checkpoints are pickles (``pytorch_model.bin``): :func:`load_official_checkpoint`
reads them with ``torch.load(weights_only=True)`` (tensors only, no code) or reads
``.safetensors``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "config_from_official",
    "convert_official_state_dict",
    "load_official_checkpoint",
    "official_key_map",
]

#: bert-base-uncased's special token ids, the vocabulary of every official checkpoint.
BERT_UNCASED_SPECIAL = {"pad": 0, "unk": 100, "cls": 101, "sep": 102, "mask": 103}

_LAYER = {  # official BertLayer / BertImageLayer sub-keys -> TransformerBlock sub-keys
    "attention.output.dense": "attn.proj",
    "attention.output.LayerNorm": "norm1",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "output.LayerNorm": "norm2",
}
_CONNECTION = {  # official BertConnectionLayer sub-keys -> CoAttentionBlock sub-keys
    "biattention.query1": "attention.vision_query",
    "biattention.key1": "attention.vision_key",
    "biattention.value1": "attention.vision_value",
    "biattention.query2": "attention.text_query",
    "biattention.key2": "attention.text_key",
    "biattention.value2": "attention.text_value",
    "biOutput.dense1": "vision_out",
    "biOutput.LayerNorm1": "vision_norm",
    "biOutput.dense2": "text_out",
    "biOutput.LayerNorm2": "text_norm",
    "v_intermediate.dense": "vision_ffn.fc1",
    "v_output.dense": "vision_ffn.fc2",
    "v_output.LayerNorm": "vision_ffn_norm",
    "t_intermediate.dense": "text_ffn.fc1",
    "t_output.dense": "text_ffn.fc2",
    "t_output.LayerNorm": "text_ffn_norm",
}
_FIXED = {  # whole-module renames
    "bert.embeddings.word_embeddings": "backbone.text.word_embeddings",
    "bert.embeddings.position_embeddings": "backbone.text.position_embeddings",
    "bert.embeddings.token_type_embeddings": "backbone.text.token_type_embeddings",
    "bert.embeddings.LayerNorm": "backbone.text.embedding_norm",
    "bert.v_embeddings.image_embeddings": "backbone.vision.embeddings.features",
    "bert.v_embeddings.image_location_embeddings": "backbone.vision.embeddings.locations",
    "bert.v_embeddings.LayerNorm": "backbone.vision.embeddings.norm",
    "bert.t_pooler.dense": "backbone.text_pooler",
    "bert.v_pooler.dense": "backbone.vision_pooler",
    "cls.predictions.transform.dense": "mlm_head.dense",
    "cls.predictions.transform.LayerNorm": "mlm_head.norm",
    "cls.imagePredictions.transform.dense": "region_head.dense",
    "cls.imagePredictions.transform.LayerNorm": "region_head.norm",
    "cls.imagePredictions.decoder": "region_head.decoder",
    "vil_prediction.logit_fc.0": "vqa_head.0",
    "vil_prediction.logit_fc.2": "vqa_head.2",
    "vil_prediction.logit_fc.3": "vqa_head.3",
}
#: Official tensors with no counterpart, and why.
DROPPED = {
    "cls.predictions.decoder.weight": "tied to the word embeddings (mlm_head reuses them)",
    "biOutput.q_dense": "defined but never used by the official forward pass",
}


def official_key_map(key: str) -> str | None:
    """This plugin's name for an official tensor name (None: dropped or not mapped).

    Query/key/value tensors map to their fused ``attn.qkv`` target (fused in
    :func:`convert_official_state_dict`).
    """
    if key == "cls.predictions.bias":
        return "mlm_head.bias"
    if key == "cls.bi_seq_relationship.weight" or key == "cls.bi_seq_relationship.bias":
        return "alignment_head." + key.rsplit(".", 1)[1]
    m = re.fullmatch(r"bert\.encoder\.(layer|v_layer)\.(\d+)\.(.+)\.(weight|bias)", key)
    if m:
        stream = "text" if m.group(1) == "layer" else "vision"
        sub = m.group(3)
        if re.fullmatch(r"attention\.self\.(query|key|value)", sub):
            target = "attn.qkv"
        elif sub in _LAYER:
            target = _LAYER[sub]
        else:
            return None
        return f"backbone.{stream}.blocks.{m.group(2)}.{target}.{m.group(4)}"
    m = re.fullmatch(r"bert\.encoder\.c_layer\.(\d+)\.(.+)\.(weight|bias)", key)
    if m:
        target = _CONNECTION.get(m.group(2))
        return (
            None if target is None else f"backbone.coattention.{m.group(1)}.{target}.{m.group(3)}"
        )
    module, _, leaf = key.rpartition(".")
    if module in _FIXED:
        return f"{_FIXED[module]}.{leaf}"
    return None


def convert_official_state_dict(
    state: Mapping[str, Tensor],
) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Official tensors -> ``(converted state dict, {unused official key: reason})``."""
    out: dict[str, Tensor] = {}
    unused: dict[str, str] = {}
    qkv: dict[str, dict[str, Tensor]] = {}
    for key, value in state.items():
        key = key.removeprefix("module.")  # saved from DataParallel / DistributedDataParallel
        if key == "cls.predictions.decoder.weight":
            unused[key] = DROPPED[key]
            continue
        if ".biOutput.q_dense" in key:
            unused[key] = DROPPED["biOutput.q_dense"]
            continue
        target = official_key_map(key)
        if target is None:
            unused[key] = (
                "task-specific tokens are not supported"
                if "task_embeddings" in key
                else "no counterpart in the colearn model (another task's head)"
            )
            continue
        if target.endswith(("attn.qkv.weight", "attn.qkv.bias")):
            part = re.search(r"attention\.self\.(query|key|value)\.", key).group(1)  # type: ignore[union-attr]
            qkv.setdefault(target, {})[part] = value
            continue
        if target.startswith("alignment_head."):
            value = value[[1, 0]]  # official class 0 = "is the caption", ours class 1
        out[target] = value
    for target, parts in qkv.items():
        missing = [p for p in ("query", "key", "value") if p not in parts]
        if missing:
            raise ValueError(f"official checkpoint: {target} lacks the {missing} tensors")
        out[target] = torch.cat([parts["query"], parts["key"], parts["value"]], dim=0)
    return out, unused


def config_from_official(official: Mapping[str, Any] | str | Path, **overrides: Any) -> dict:
    """A ``vilbert`` config from the official ``BertConfig`` JSON (a path or its dict)."""
    if not isinstance(official, Mapping):
        official = json.loads(Path(official).read_text(encoding="utf-8"))
    o = dict(official)
    get: Callable[[str, Any], Any] = lambda k, d=None: o.get(k, d)  # noqa: E731
    config: dict[str, Any] = {
        "text_encoder": "text/bert",
        "text": {
            "vocab_size": get("vocab_size"),
            "context_length": get("max_position_embeddings", 512),
            "type_vocab_size": get("type_vocab_size", 2),
            "width": get("hidden_size"),
            "depth": get("num_hidden_layers"),
            "heads": get("num_attention_heads"),
            "mlp_ratio": get("intermediate_size") / get("hidden_size"),
            "drop": get("hidden_dropout_prob", 0.1),
            "attn_drop": get("attention_probs_dropout_prob", 0.1),
        },
        "special_tokens": dict(BERT_UNCASED_SPECIAL),
        "vision": {
            "feature_dim": get("v_feature_size"),
            "width": get("v_hidden_size"),
            "depth": get("v_num_hidden_layers"),
            "heads": get("v_num_attention_heads"),
            "mlp_ratio": get("v_intermediate_size") / get("v_hidden_size"),
            "num_classes": get("v_target_size"),
            "drop": get("v_hidden_dropout_prob", 0.1),
            "attn_drop": get("v_attention_probs_dropout_prob", 0.1),
        },
        "coattention": {
            "width": get("bi_hidden_size"),
            "heads": get("bi_num_attention_heads"),
            "text_at": list(get("t_biattention_id")),
            "vision_at": list(get("v_biattention_id")),
        },
        "pooling": get("fusion_method", get("pooling_method", "mul")),
        "initializer_range": get("initializer_range", 0.02),
    }
    config.update(overrides)
    return config


def load_official_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """An official ``pytorch_model.bin`` (tensors only: ``weights_only=True``) or safetensors."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return dict(state.get("model", state))


def vilbert_from_official(
    checkpoint: str | Path | Mapping[str, Tensor],
    official_config: Mapping[str, Any] | str | Path,
    **overrides: Any,
) -> tuple[Any, dict[str, str]]:
    """A ``vilbert`` model with the official weights, and the official keys left unused.

    ``overrides`` go into the config (e.g. ``answers=[...]`` with 3129 VQA answers to keep the
    official VQA head, ``modalities={...}`` for preprocessing). Every weight of the model must
    come from the checkpoint, except the VQA head when the checkpoint has none.
    """
    from .model import ViLBERT

    state = checkpoint if isinstance(checkpoint, Mapping) else load_official_checkpoint(checkpoint)
    converted, unused = convert_official_state_dict(state)
    config = config_from_official(official_config, **overrides)
    if not config.get("answers"):
        for key in [k for k in converted if k.startswith("vqa_head.")]:
            official = "vil_prediction.logit_fc." + key.removeprefix("vqa_head.")
            unused[official] = "set answers (the VQA answer vocabulary) to import the VQA head"
            del converted[key]
    model = ViLBERT(config)
    own = model.state_dict()
    bad = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in converted.items()
        if k in own and own[k].shape != v.shape
    ]
    missing = [k for k in own if k not in converted and not k.startswith("vqa_head.")]
    extra = [k for k in converted if k not in own]
    if bad or missing or extra:
        raise ValueError(
            "official checkpoint does not fit the config: "
            + "; ".join(
                f"{what}: {items[:8]}{' ...' if len(items) > 8 else ''}"
                for what, items in (("shape mismatch", bad), ("missing", missing), ("extra", extra))
                if items
            )
        )
    model.load_state_dict(converted, strict=False)
    return model, unused
