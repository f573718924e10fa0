"""open_clip -> colearn: architecture, weights, preprocessing and tokenizer.

:func:`from_open_clip` reads a built ``open_clip.CLIP`` module (OpenAI's CLIP weights load into
the same class) and returns the equivalent colearn :class:`~colearn_plugin_clip.model.CLIP`:

- the architecture is read from the modules themselves (widths, depths, heads, MLP ratio,
  activation, LayerNorm eps, ln_pre, pooling), not from open_clip's config files, so any way of
  building the model (built-in name, ``hf-hub:``, ``pretrained='openai'``) converts the same;
- every colearn parameter is copied from exactly one open_clip tensor (``nn.MultiheadAttention``'s
  ``in_proj`` is colearn's ``qkv``; ``visual.proj`` and ``text_projection`` become the
  projections' transposed weights), and a parameter left unwritten is an error;
- preprocessing comes from the model's ``preprocess_cfg`` (size, mean, std, interpolation,
  resize mode) and the tokenizer from open_clip's ``SimpleTokenizer`` BPE tables, checked on a
  set of probe sentences.

Supported: ViT image towers with class-token or average pooling and the standard text tower
(argmax / eos pooling). Not supported (a :class:`ConversionError` says so): ModifiedResNet and
timm towers, Hugging Face text towers, attentional pooling, layer scale, custom attention
blocks, SigLIP's logit bias.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from colearn_core import ColearnError

from .model import CLIP

__all__ = [
    "PROBE_SENTENCES",
    "ConversionError",
    "clip_config_from_open_clip",
    "convert_open_clip",
    "convert_open_clip_tokenizer",
    "from_open_clip",
    "load_open_clip_weights",
    "tokenizer_from_open_clip",
]

#: Sentences the converted tokenizer must encode exactly as open_clip's.
PROBE_SENTENCES: tuple[str, ...] = (
    "a photo of a cat",
    "A Photo Of Two DOGS playing in the snow!",
    "an image of 3 red apples, 12.5% off; don't miss it.",
    "Café déjà vu: naïve über-cool résumé",
    "hello   world\twith\nwhitespace",
    "emoji 🙂 and 日本語 text",
    "",
)


class ConversionError(ColearnError, ValueError):
    """The open_clip model uses something colearn's ``clip`` cannot represent."""


def _require_open_clip() -> Any:
    try:
        import open_clip
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        raise ConversionError(
            "converting open_clip models needs open_clip: pip install "
            "'colearn-plugin-clip[convert]' (or pip install open_clip_torch)"
        ) from exc
    return open_clip


# --- architecture -----------------------------------------------------------------------------


def _activation(block: nn.Module, where: str) -> str:
    act = block.mlp.gelu
    if type(act).__name__ == "QuickGELU":
        return "quick_gelu"
    if isinstance(act, nn.GELU):
        return "gelu_tanh" if act.approximate == "tanh" else "gelu"
    if isinstance(act, nn.ReLU):
        return "relu"
    raise ConversionError(f"{where}: activation {type(act).__name__} is not supported")


def _check_blocks(blocks: nn.ModuleList, where: str) -> dict[str, Any]:
    """Shared settings of a stack of open_clip ``ResidualAttentionBlock`` s."""
    first = blocks[0]
    if type(first).__name__ != "ResidualAttentionBlock":
        raise ConversionError(
            f"{where}: block type {type(first).__name__} (custom attention: qk norm, scaled "
            "cosine attention, ...) is not supported; only open_clip's default blocks are"
        )
    for i, block in enumerate(blocks):
        if not isinstance(block.ls_1, nn.Identity) or not isinstance(block.ls_2, nn.Identity):
            raise ConversionError(f"{where}: block {i} uses layer scale, which is not supported")
        if block.attn.in_proj_weight is None or block.attn.bias_k is not None:
            raise ConversionError(f"{where}: block {i} has an unsupported attention layout")
        if not isinstance(block.ln_1, nn.LayerNorm):
            raise ConversionError(f"{where}: block {i} norm {type(block.ln_1).__name__}")
    width = first.ln_1.normalized_shape[0]
    return {
        "width": int(width),
        "depth": len(blocks),
        "heads": int(first.attn.num_heads),
        "mlp_ratio": first.mlp.c_fc.out_features / width,
        "act": _activation(first, where),
        "norm_eps": float(first.ln_1.eps),
        "qkv_bias": first.attn.in_proj_bias is not None,
    }


def _check_clip(model: nn.Module) -> None:
    name = type(model).__name__
    if not (hasattr(model, "visual") and hasattr(model, "token_embedding")):
        raise ConversionError(
            f"open_clip model class {name} is not supported: only open_clip.CLIP (a ViT image "
            "tower and open_clip's own text transformer) converts; models with Hugging Face "
            "text towers (CustomTextCLIP) and CoCa do not"
        )
    visual = model.visual
    if type(visual).__name__ != "VisionTransformer":
        raise ConversionError(
            f"image tower {type(visual).__name__} is not supported (ModifiedResNet and timm "
            "towers have no colearn equivalent yet); use a ViT model such as ViT-B-32"
        )
    if getattr(visual, "attn_pool", None) is not None:
        raise ConversionError("image tower: attentional pooling is not supported")
    # attributes of recent open_clip versions; older ones behave like the defaults
    pool_type = getattr(visual, "pool_type", "tok")
    if pool_type not in ("tok", "avg"):
        raise ConversionError(f"image tower: pool_type {pool_type!r} is not supported")
    if pool_type == "avg" and getattr(visual, "final_ln_after_pool", False):
        raise ConversionError(
            "image tower: average pooling with final_ln_after_pool is not supported"
        )
    if getattr(model, "logit_bias", None) is not None:
        raise ConversionError(
            "the model has a logit_bias (a SigLIP model): colearn's clip trains with InfoNCE, "
            "which has none; SigLIP conversion is not supported"
        )
    text_pool = getattr(model, "text_pool_type", "argmax")
    if text_pool not in ("argmax", "eos"):
        raise ConversionError(f"text tower: pool_type {text_pool!r} is not supported")
    if model.attn_mask is None:
        raise ConversionError("text tower: a non-causal text transformer is not supported")
    if isinstance(model.text_projection, nn.Linear) and model.text_projection.bias is not None:
        raise ConversionError("text tower: a text projection with bias is not supported")


def _preprocess_config(model: nn.Module) -> dict[str, Any]:
    """The colearn image modality config for open_clip's ``preprocess_cfg``."""
    cfg = dict(getattr(model.visual, "preprocess_cfg", {}) or {})
    size = cfg.get("size", model.visual.image_size)
    size = [int(s) for s in size] if isinstance(size, (tuple, list)) else int(size)
    if isinstance(size, list) and size[0] == size[1]:
        size = size[0]
    resize = {"shortest": "shorter", "squash": "stretch"}.get(cfg.get("resize_mode", "shortest"))
    if resize is None:
        raise ConversionError(
            f"preprocessing: resize_mode {cfg.get('resize_mode')!r} (letterbox padding) is not "
            "supported by colearn's image modality; 'shortest' and 'squash' are"
        )
    interpolation = cfg.get("interpolation", "bicubic")
    if interpolation not in ("bicubic", "bilinear", "nearest"):
        raise ConversionError(f"preprocessing: interpolation {interpolation!r} is not supported")
    out = {
        "image_size": size,
        "channels": 3,
        "resize": resize,
        "interpolation": interpolation,
    }
    if "mean" in cfg:
        out["mean"] = [float(m) for m in cfg["mean"]]
    if "std" in cfg:
        out["std"] = [float(s) for s in cfg["std"]]
    return out


def clip_config_from_open_clip(model: nn.Module) -> dict[str, Any]:
    """The colearn ``clip`` config of an ``open_clip.CLIP`` model (see the module docstring)."""
    _check_clip(model)
    visual = model.visual
    vision = _check_blocks(visual.transformer.resblocks, "image tower")
    text = _check_blocks(model.transformer.resblocks, "text tower")
    image_size = [int(s) for s in visual.image_size]
    patch_size = [int(s) for s in visual.patch_size]
    embed_dim = int(visual.output_dim)
    if visual.ln_post.normalized_shape[0] != vision["width"] or visual.proj is None:
        raise ConversionError("image tower: expected ln_post over the width and a projection")
    if isinstance(visual.patch_dropout, nn.Module) and not isinstance(
        visual.patch_dropout, nn.Identity
    ):
        warnings.warn(
            "the image tower uses patch dropout in training; colearn's image/vit has none "
            "(inference is unaffected)",
            stacklevel=2,
        )
    image_encoder = {
        "name": "image/vit",
        "width": vision["width"],
        "depth": vision["depth"],
        "heads": vision["heads"],
        "mlp_ratio": vision["mlp_ratio"],
        "image_size": image_size[0] if image_size[0] == image_size[1] else image_size,
        "patch_size": patch_size[0] if patch_size[0] == patch_size[1] else patch_size,
        "in_chans": 3,
        "pool": "cls" if getattr(visual, "pool_type", "tok") == "tok" else "mean",
        "class_token": True,
        "pre_norm": not isinstance(visual.ln_pre, nn.Identity),
        "patch_bias": visual.conv1.bias is not None,
        "qkv_bias": vision["qkv_bias"],
        "norm_eps": vision["norm_eps"],
        "act": vision["act"],
    }
    if not text["qkv_bias"]:
        raise ConversionError("text tower: attention without bias is not supported")
    text_encoder = {
        "name": "text/transformer",
        "vocab_size": int(model.vocab_size),
        "context_length": int(model.context_length),
        "width": text["width"],
        "depth": text["depth"],
        "heads": text["heads"],
        "mlp_ratio": text["mlp_ratio"],
        "act": text["act"],
        "norm_eps": text["norm_eps"],
    }
    if getattr(model, "text_pool_type", "argmax") == "eos":
        text_encoder["eot_token_id"] = int(model.text_eos_id)
    return {
        "embed_dim": embed_dim,
        "image": {"modality": _preprocess_config(model), "encoder": image_encoder},
        "text": {
            "modality": {
                # replaced by the tokenizer.json saved next to the model (load_assets)
                "tokenizer": "tokenizer.json",
                "style": "clip",
                "context_length": int(model.context_length),
            },
            "encoder": text_encoder,
        },
        "projection": "linear",
        "init_temperature": 0.07,
        "learnable_temperature": True,
        "max_scale": 100.0,
    }


# --- weights ----------------------------------------------------------------------------------


class _Copier:
    """Copies tensors into a colearn model and remembers which parameters were written."""

    def __init__(self, target: nn.Module) -> None:
        self.target = target
        self.params = dict(target.named_parameters())
        self.written: set[str] = set()

    @torch.no_grad()
    def __call__(self, name: str, value: Tensor) -> None:
        param = self.params[name]
        value = value.detach().to(param.dtype).reshape(param.shape)
        param.copy_(value)
        self.written.add(name)

    def linear(self, prefix: str, module: nn.Linear) -> None:
        self(f"{prefix}.weight", module.weight)
        if module.bias is not None:
            self(f"{prefix}.bias", module.bias)

    def block(self, prefix: str, block: nn.Module) -> None:
        self.linear(f"{prefix}.norm1", block.ln_1)
        self(f"{prefix}.attn.qkv.weight", block.attn.in_proj_weight)  # rows: q, k, v
        if block.attn.in_proj_bias is not None:
            self(f"{prefix}.attn.qkv.bias", block.attn.in_proj_bias)
        self.linear(f"{prefix}.attn.proj", block.attn.out_proj)
        self.linear(f"{prefix}.norm2", block.ln_2)
        self.linear(f"{prefix}.mlp.fc1", block.mlp.c_fc)
        self.linear(f"{prefix}.mlp.fc2", block.mlp.c_proj)

    def check_complete(self) -> None:
        missing = sorted(set(self.target.state_dict()) - self.written)
        if missing:
            raise ConversionError(
                f"{len(missing)} colearn tensors got no open_clip weights: {missing[:10]}"
            )


def load_open_clip_weights(source: nn.Module, target: CLIP) -> None:
    """Copy the weights of the ``open_clip.CLIP`` ``source`` into ``target``, a colearn
    ``clip`` model built from :func:`clip_config_from_open_clip` of it; every tensor of
    ``target`` is written."""
    copy = _Copier(target)
    visual = source.visual
    vit = "encoders.image.trunk"
    copy(f"{vit}.patch_embed.proj.weight", visual.conv1.weight)
    if visual.conv1.bias is not None:
        copy(f"{vit}.patch_embed.proj.bias", visual.conv1.bias)
    copy(f"{vit}.cls_token", visual.class_embedding)
    copy(f"{vit}.pos_embed", visual.positional_embedding)
    if not isinstance(visual.ln_pre, nn.Identity):
        copy.linear(f"{vit}.norm_pre", visual.ln_pre)
    for i, block in enumerate(visual.transformer.resblocks):
        copy.block(f"{vit}.blocks.{i}", block)
    copy.linear(f"{vit}.norm", visual.ln_post)
    copy("projections.image.weight", visual.proj.T)  # (W, E) -> Linear weight (E, W)

    txt = "encoders.text"
    copy(f"{txt}.token_embedding.weight", source.token_embedding.weight)
    copy(f"{txt}.positional_embedding", source.positional_embedding)
    for i, block in enumerate(source.transformer.resblocks):
        copy.block(f"{txt}.blocks.{i}", block)
    copy.linear(f"{txt}.ln_final", source.ln_final)
    projection = source.text_projection
    weight = projection.weight if isinstance(projection, nn.Linear) else projection.T
    copy("projections.text.weight", weight)

    scale = source.logit_scale.detach().reshape(())
    if not math.isfinite(float(scale)):
        raise ConversionError(f"open_clip logit_scale is not finite ({float(scale)})")
    if float(scale.exp()) > target.loss.max_scale * (1 + 1e-6):
        raise ConversionError(
            f"open_clip logit_scale {float(scale):.4f} exceeds colearn's max_scale "
            f"{target.loss.max_scale}"
        )
    copy("loss.logit_scale", scale)
    copy.check_complete()


# --- tokenizer --------------------------------------------------------------------------------


def tokenizer_from_open_clip(
    tokenizer: Any, context_length: int, folder: str | os.PathLike
) -> Path:
    """Write ``folder/tokenizer.json`` equivalent to open_clip's ``SimpleTokenizer`` (its BPE
    vocabulary and merges, ``<start_of_text>``/``<end_of_text>``, padding with id 0) and
    return its path. Other open_clip tokenizers (Hugging Face, SigLIP) are not supported."""
    from colearn_plugin_text.tokenizer import TextTokenizer, clip_bpe_tokenizer

    if type(tokenizer).__name__ != "SimpleTokenizer":
        raise ConversionError(
            f"tokenizer {type(tokenizer).__name__} is not supported; only open_clip's "
            "SimpleTokenizer (CLIP's BPE) converts"
        )
    clean = getattr(getattr(tokenizer, "clean_fn", None), "__name__", "")
    if clean and "lower" not in clean:
        raise ConversionError(f"tokenizer clean mode {clean!r} is not supported (only 'lower')")
    if getattr(tokenizer, "reduction_fn", None) is not None:
        raise ConversionError("tokenizer reduction masks are not supported")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        vocab, merges = Path(tmp) / "vocab.json", Path(tmp) / "merges.txt"
        vocab.write_text(json.dumps(tokenizer.encoder, ensure_ascii=False), encoding="utf-8")
        pairs = sorted(tokenizer.bpe_ranks.items(), key=lambda kv: kv[1])
        merges.write_text(
            "#version: 0.2\n" + "".join(f"{a} {b}\n" for (a, b), _ in pairs), encoding="utf-8"
        )
        raw = clip_bpe_tokenizer(vocab, merges)
    specials = [tokenizer.decoder[i] for i in tokenizer.all_special_ids]
    raw.add_special_tokens(specials)  # already in the vocabulary: their ids do not change
    special_tokens = {"bos": specials[0], "eos": specials[1]}
    wrapped = TextTokenizer(
        raw, style="clip", context_length=context_length, special_tokens=special_tokens
    )
    probe = wrapped.encode_batch(list(PROBE_SENTENCES))["input_ids"]
    expected = tokenizer(list(PROBE_SENTENCES), context_length=context_length).tolist()
    for sentence, got, want in zip(PROBE_SENTENCES, probe, expected):
        if got != want:
            raise ConversionError(
                f"the converted tokenizer encodes {sentence!r} as {got[:12]}... but open_clip "
                f"as {want[:12]}...; the tokenizers differ"
            )
    path = folder / "tokenizer.json"
    wrapped.save(path)
    return path


# --- the whole model --------------------------------------------------------------------------


def from_open_clip(model: nn.Module, tokenizer: Any) -> CLIP:
    """The colearn ``clip`` model equivalent to the ``open_clip.CLIP`` ``model`` (weights,
    temperature, preprocessing) with ``tokenizer`` (open_clip's ``SimpleTokenizer``)
    converted; in eval mode."""
    config = clip_config_from_open_clip(model)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer_from_open_clip(tokenizer, config["text"]["encoder"]["context_length"], tmp)
        # special tokens by role, so the saved config rebuilds the same tokenizer wrapper
        specials = [tokenizer.decoder[i] for i in tokenizer.all_special_ids]
        config["text"]["modality"]["special_tokens"] = {"bos": specials[0], "eos": specials[1]}
        # every parameter is overwritten: skip the random initialisation (seconds for ViT-B)
        with torch.device("meta"):
            target = CLIP(config)
        target.to_empty(device="cpu")
        target.modalities["text"].load_assets(Path(tmp))
    load_open_clip_weights(model, target)
    return target.eval()


def convert_open_clip(
    model_name: str,
    pretrained: str | None = None,
    out_dir: str | os.PathLike | None = None,
    **model_kwargs: Any,
) -> Path:
    """Build ``open_clip.create_model(model_name, pretrained, **model_kwargs)`` and its
    tokenizer, convert them (:func:`from_open_clip`) and save a colearn model folder to
    ``out_dir`` (``config.json``, ``model.safetensors``, ``tokenizer.json``, ``README.md``).

    ``pretrained`` is an open_clip weights tag (``"openai"``, ``"laion2b_s34b_b79k"``, ...) or a
    checkpoint path; None keeps random weights. Returns the folder.
    """
    if out_dir is None:
        raise ConversionError("convert_open_clip: out_dir (the folder to write) is required")
    open_clip = _require_open_clip()
    try:
        source = open_clip.create_model(model_name, pretrained=pretrained, **model_kwargs)
    except RuntimeError as exc:
        raise ConversionError(f"open_clip could not build {model_name!r}: {exc}") from exc
    source = source.float().eval()
    tokenizer = open_clip.get_tokenizer(model_name, context_length=int(source.context_length))
    model = from_open_clip(source, tokenizer)
    folder = model.save_pretrained(out_dir)
    what = f"open_clip `{model_name}`" + (f" with weights `{pretrained}`" if pretrained else "")
    note = (
        f"\n## Source\n\nConverted from {what} by `colearn convert open_clip` "
        f"(open_clip {getattr(open_clip, '__version__', '?')}); image and text embeddings match "
        "open_clip's on the same pixels and token ids. Images are resized with torch's bicubic "
        "filter rather than PIL's, so preprocessed pixels differ slightly.\n"
    )
    readme = Path(folder) / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8") + note, encoding="utf-8")
    return Path(folder)


def convert_open_clip_tokenizer(
    model_name: str, out_dir: str | os.PathLike, *, context_length: int | None = None
) -> Path:
    """Write ``out_dir/tokenizer.json``: the tokenizer of open_clip's ``model_name`` (CLIP's
    BPE for the standard models), for the text modality of a model trained from scratch
    (``tokenizer: out_dir/tokenizer.json`` in a recipe). Returns its path."""
    open_clip = _require_open_clip()
    length = context_length or 77
    tokenizer = open_clip.get_tokenizer(model_name, context_length=length)
    return tokenizer_from_open_clip(tokenizer, length, out_dir)
