"""Official ImageBind checkpoints -> colearn ``imagebind`` models.

The official model (``imagebind.models.imagebind_model.ImageBindModel``) keeps each modality in
four dictionaries: ``modality_preprocessors`` (patch stem, class token, positions),
``modality_trunks`` (transformer blocks on ``nn.MultiheadAttention``), ``modality_heads``
(LayerNorm, class-token or end-of-text selection, bias-free Linear) and
``modality_postprocessors`` (normalisation and logit scale). colearn's towers hold the same
tensors under other names, so conversion is renaming, with two exceptions:

- the vision stem is a ``Conv3d`` with a temporal kernel of 2 over the image repeated twice
  (``PadIm2Video``); for images that equals a ``Conv2d`` whose kernel is the sum of the two
  temporal slices;
- the text ``pos_embed`` ``(1, 77, D)`` drops its leading axis.

Official modality names map to colearn's (``vision`` -> ``image``); IMU is not converted (colearn
has no IMU modality). Every colearn tensor is written from exactly one official tensor and every
official tensor of a converted modality is used, or a :class:`ConversionError` lists the
leftovers.

Checkpoints are read with ``torch.load(..., weights_only=True)`` (a plain state dict; no code
runs) or from ``.safetensors``.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from colearn_core import ColearnError, ConfigError

from .model import ImageBind

__all__ = [
    "OFFICIAL_NAMES",
    "ConversionError",
    "convert_checkpoint",
    "convert_state_dict",
    "find_bpe",
    "imagebind_config",
    "infer_architecture",
    "load_checkpoint",
]

#: colearn tower -> the official modality key.
OFFICIAL_NAMES: dict[str, str] = {
    "image": "vision",
    "text": "text",
    "audio": "audio",
    "depth": "depth",
    "thermal": "thermal",
}
_STEMS = {"audio": "rgbt_stem", "depth": "depth_stem", "thermal": "rgbt_stem"}
#: Official tensors colearn rebuilds itself: the text causal mask.
_SKIPPED = {"modality_preprocessors.text.mask"}
#: imagebind_huge()'s ImageBindModel arguments.
HUGE: dict[str, Any] = {
    "out_embed_dim": 1024,
    "vision_embed_dim": 1280,
    "vision_num_blocks": 32,
    "vision_num_heads": 16,
    "kernel_size": (2, 14, 14),
    "text_embed_dim": 1024,
    "text_num_blocks": 24,
    "text_num_heads": 16,
    "audio_embed_dim": 768,
    "audio_num_blocks": 12,
    "audio_num_heads": 12,
    "audio_kernel_size": 16,
    "audio_stride": 10,
    "audio_num_mel_bins": 128,
    "audio_target_len": 204,
    "audio_drop_path": 0.1,
    "depth_embed_dim": 384,
    "depth_kernel_size": 16,
    "depth_num_blocks": 12,
    "depth_num_heads": 8,
    "depth_drop_path": 0.0,
    "thermal_embed_dim": 768,
    "thermal_kernel_size": 16,
    "thermal_num_blocks": 12,
    "thermal_num_heads": 12,
    "thermal_drop_path": 0.0,
}


class ConversionError(ColearnError, ValueError):
    """The checkpoint does not match the ImageBind architecture being converted."""


# --- architecture -----------------------------------------------------------------------------


def imagebind_config(
    modalities: Sequence[str] = ("image", "text", "audio", "depth", "thermal"),
    **arch: Any,
) -> dict[str, Any]:
    """The colearn config of ``ImageBindModel(**arch)`` for the given towers.

    ``arch`` takes ImageBindModel's own argument names (``vision_embed_dim``,
    ``audio_num_heads``, ...); missing ones default to ``imagebind_huge()``'s (:data:`HUGE`),
    so ``imagebind_config()`` is ImageBind-huge. (The IMU and ``video_frames`` arguments are
    accepted and ignored.) The text modality expects its ``tokenizer.json`` next to the model.
    """
    unknown = set(arch) - set(HUGE) - {"video_frames"} - {k for k in arch if k.startswith("imu_")}
    if unknown:
        raise ConfigError(f"imagebind_config: unknown ImageBindModel arguments {sorted(unknown)}")
    a = {**HUGE, **arch}
    kernel = tuple(a["kernel_size"])
    if len(kernel) != 3 or kernel[1] != kernel[2]:
        raise ConfigError(f"imagebind_config: kernel_size must be (T, P, P), got {kernel}")
    if 224 % kernel[1]:
        raise ConfigError(f"imagebind_config: 224 px is not divisible by the patch {kernel[1]}")
    stem = {"patch_norm_eps": 1e-5}  # PyTorch's default eps in ImageBind's stem LayerNorms

    def single(name: str, encoder: str) -> dict[str, Any]:
        return {
            "encoder": {
                "name": encoder,
                "width": a[f"{name}_embed_dim"],
                "depth": a[f"{name}_num_blocks"],
                "heads": a[f"{name}_num_heads"],
                "patch_size": a[f"{name}_kernel_size"],
                "image_size": 224,
                "drop_path": a[f"{name}_drop_path"],
                "norm_eps": 1e-6,
            },
            **stem,
        }

    towers: dict[str, Any] = {
        "image": {
            "modality": {"image_size": 224},
            "encoder": {
                "name": "image/vit",
                "width": a["vision_embed_dim"],
                "depth": a["vision_num_blocks"],
                "heads": a["vision_num_heads"],
                "image_size": 224,
                "patch_size": kernel[1],
                "pre_norm": True,
                "patch_bias": False,
                "norm_eps": 1e-6,
            },
        },
        "text": {
            "modality": {"tokenizer": "tokenizer.json", "style": "clip", "context_length": 77},
            "encoder": {
                "name": "text/transformer",
                "vocab_size": 49408,
                "context_length": 77,
                "width": a["text_embed_dim"],
                "depth": a["text_num_blocks"],
                "heads": a["text_num_heads"],
                "norm_eps": 1e-6,
                "eot_token_id": 49407,
            },
        },
        "audio": {
            "modality": {
                "num_mel_bins": a["audio_num_mel_bins"],
                "target_length": a["audio_target_len"],
            },
            "encoder": {
                "name": "audio/ast",
                "width": a["audio_embed_dim"],
                "depth": a["audio_num_blocks"],
                "heads": a["audio_num_heads"],
                "patch_size": a["audio_kernel_size"],
                "patch_stride": a["audio_stride"],
                "num_mel_bins": a["audio_num_mel_bins"],
                "target_length": a["audio_target_len"],
                "drop_path": a["audio_drop_path"],
                "norm_eps": 1e-6,
            },
            **stem,
        },
        "depth": single("depth", "depth/vit"),
        "thermal": single("thermal", "thermal/vit"),
    }
    unknown_towers = [m for m in modalities if m not in towers]
    if unknown_towers or "image" not in modalities:
        raise ConfigError(
            f"ImageBind has the towers {list(towers)} (image required); got {list(modalities)}"
        )
    return {
        "embed_dim": int(a["out_embed_dim"]),
        "anchor": "image",
        "towers": {m: towers[m] for m in modalities},
    }


def _blocks(state: Mapping[str, Tensor], prefix: str) -> int:
    found = {
        int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"blocks\.(\d+)\.", k))
    }
    return max(found) + 1 if found else 0


def infer_architecture(state: Mapping[str, Tensor]) -> tuple[list[str], dict[str, Any]]:
    """The towers a checkpoint holds and the ImageBindModel arguments its shapes determine
    (widths, depths, kernels, spectrogram size, output width); head counts are not in the
    shapes and stay at ImageBind-huge's unless given."""
    first = "modality_trunks.{}.blocks.0.norm_1.weight"
    towers = [t for t, o in OFFICIAL_NAMES.items() if first.format(o) in state]
    if "image" not in towers:
        raise ConversionError(
            "the checkpoint has no vision tower (modality_trunks.vision.*): not an ImageBind "
            f"state dict? Its first keys: {list(state)[:5]}"
        )
    arch: dict[str, Any] = {}
    head = state.get("modality_heads.vision.2.weight")
    if head is not None:
        arch["out_embed_dim"] = int(head.shape[0])
    for tower in towers:
        o = OFFICIAL_NAMES[tower]
        name = "vision" if tower == "image" else tower
        arch[f"{name}_embed_dim"] = int(state[first.format(o)].shape[0])
        arch[f"{name}_num_blocks"] = _blocks(state, f"modality_trunks.{o}.")
    if "image" in towers:
        w = state["modality_preprocessors.vision.rgbt_stem.proj.1.weight"]
        arch["kernel_size"] = tuple(int(s) for s in w.shape[2:])
    for tower in ("depth", "thermal", "audio"):
        if tower in towers:
            w = state[f"modality_preprocessors.{tower}.{_STEMS[tower]}.proj.weight"]
            arch[f"{tower}_kernel_size"] = int(w.shape[-1])
    if "audio" in towers:
        pos = state["modality_preprocessors.audio.pos_embedding_helper.pos_embed"]
        patches = int(pos.shape[1]) - 1
        if patches != HUGE_AUDIO_PATCHES:
            raise ConversionError(
                f"audio: {patches} patches; only ImageBind's 128 x 204 spectrograms with "
                "kernel 16 and stride 10 (228 patches) can be inferred; pass the audio "
                "arguments explicitly"
            )
    return towers, arch


HUGE_AUDIO_PATCHES = ((128 - 16) // 10 + 1) * ((204 - 16) // 10 + 1)  # 12 x 19 = 228


# --- weights ----------------------------------------------------------------------------------


def _block_source(rest: str) -> str:
    """colearn TransformerBlock parameter -> ImageBind BlockWithMasking parameter."""
    table = {
        "norm1.": "norm_1.",
        "norm2.": "norm_2.",
        "attn.qkv.weight": "attn.in_proj_weight",
        "attn.qkv.bias": "attn.in_proj_bias",
        "attn.proj.": "attn.out_proj.",
        "attn.bias_k": "attn.bias_k",
        "attn.bias_v": "attn.bias_v",
        "mlp.": "mlp.",
    }
    for mine, theirs in table.items():
        if rest.startswith(mine):
            return theirs + rest[len(mine) :]
    raise KeyError(rest)


Source = tuple[str, Callable[[Tensor], Tensor] | None]


def _source(tower: str, key: str) -> Source:
    """The official key (and a transform) of one colearn key ``key`` of ``towers.<tower>``."""
    o = OFFICIAL_NAMES[tower]
    pre, trunk, heads = (
        f"modality_preprocessors.{o}.",
        f"modality_trunks.{o}.",
        f"modality_heads.{o}.",
    )
    post = f"modality_postprocessors.{o}.1.log_logit_scale"
    if key == "scale.log_logit_scale":
        return post, None
    if tower == "text":
        simple = {
            "head.weight": heads + "proj.1.weight",
            "encoder.token_embedding.weight": pre + "token_embedding.weight",
            "encoder.ln_final.weight": heads + "proj.0.weight",
            "encoder.ln_final.bias": heads + "proj.0.bias",
        }
        if key in simple:
            return simple[key], None
        if key == "encoder.positional_embedding":
            return pre + "pos_embed", lambda t: t[0]
        m = re.fullmatch(r"encoder\.blocks\.(\d+)\.(.+)", key)
        if m:
            return f"{trunk}blocks.{m.group(1)}.{_block_source(m.group(2))}", None
        raise KeyError(key)
    simple = {
        "head.weight": heads + "2.weight",
        "encoder.trunk.cls_token": pre + "cls_token",
        "encoder.trunk.pos_embed": pre + "pos_embedding_helper.pos_embed",
        "encoder.trunk.norm.weight": heads + "0.weight",
        "encoder.trunk.norm.bias": heads + "0.bias",
    }
    if key in simple:
        return simple[key], None
    if tower == "image":
        if key == "encoder.trunk.patch_embed.proj.weight":
            # Conv3d over the image repeated twice in time == Conv2d with the summed kernel
            return pre + "rgbt_stem.proj.1.weight", lambda t: t.sum(dim=2)
        m = re.fullmatch(r"encoder\.trunk\.norm_pre\.(weight|bias)", key)
        if m:
            return f"{trunk}pre_transformer_layer.0.{m.group(1)}", None
    else:
        stem = pre + _STEMS[tower] + "."
        if key == "encoder.trunk.patch_embed.proj.weight":
            return stem + "proj.weight", None
        m = re.fullmatch(r"encoder\.trunk\.patch_embed\.norm\.(weight|bias)", key)
        if m:
            return f"{stem}norm_layer.{m.group(1)}", None
    m = re.fullmatch(r"encoder\.trunk\.blocks\.(\d+)\.(.+)", key)
    if m:
        return f"{trunk}blocks.{m.group(1)}.{_block_source(m.group(2))}", None
    raise KeyError(key)


def convert_state_dict(
    state: Mapping[str, Tensor], model: ImageBind, *, strict: bool = True
) -> dict[str, Tensor]:
    """The official ``state`` renamed (and reshaped) for ``model``'s built towers.

    Checks that every colearn tensor has an official source of the same shape and, with
    ``strict``, that every official tensor of the converted modalities was used. Tensors that
    only colearn has (the loss's fixed temperature) are taken from ``model``.
    """
    own = model.state_dict()
    out: dict[str, Tensor] = {}
    used: set[str] = set()
    problems: list[str] = []
    for key, target in own.items():
        parts = key.split(".", 2)
        if parts[0] != "towers":
            out[key] = target  # colearn's own (loss.logit_scale: temperature 1)
            continue
        tower, rest = parts[1], parts[2]
        try:
            src, transform = _source(tower, rest)
        except KeyError:
            problems.append(f"{key}: no official counterpart")
            continue
        if src not in state:
            problems.append(f"{key}: the checkpoint has no {src}")
            continue
        value = state[src]
        if transform is not None:
            value = transform(value)
        if value.shape != target.shape:
            problems.append(
                f"{key}: shape {tuple(target.shape)}, but {src} gives {tuple(value.shape)}"
            )
            continue
        out[key] = value.to(target.dtype) if target.dtype != value.dtype else value
        used.add(src)
    if strict:
        prefixes = tuple(
            f"modality_{part}.{OFFICIAL_NAMES[t]}."
            for t in model.tower_names
            for part in ("preprocessors", "trunks", "heads", "postprocessors")
        )
        left = sorted(k for k in state if k.startswith(prefixes) and k not in used | _SKIPPED)
        if left:
            problems.append(f"unused checkpoint tensors: {', '.join(left[:10])}")
    if problems:
        more = f"; ... ({len(problems) - 12} more)" if len(problems) > 12 else ""
        shown = "; ".join(problems[:12]) + more
        raise ConversionError(f"the checkpoint does not match the colearn model: {shown}")
    return out


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """A state dict from ``.safetensors`` or a torch file read with ``weights_only=True``
    (memory-mapped where possible). A ``{"model": ...}`` / ``{"state_dict": ...}`` wrapper is
    unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"checkpoint {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(path))
    else:
        try:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:  # legacy (non-zip) files cannot be memory-mapped
                if "mmap" not in str(exc):
                    raise
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # weights_only refuses anything but tensors and containers
            raise ConversionError(
                f"{path}: not a state dict torch.load can read with weights_only=True; colearn "
                f"never unpickles arbitrary objects ({type(exc).__name__}: {str(exc)[:300]})"
            ) from None
    for wrapper in ("model", "state_dict"):
        if isinstance(state, Mapping) and wrapper in state and isinstance(state[wrapper], Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConversionError(f"{path}: expected a state dict of tensors")
    return dict(state)


def find_bpe(checkpoint: str | os.PathLike[str] | None = None) -> Path:
    """CLIP's ``bpe_simple_vocab_16e6.txt.gz`` (ImageBind's tokenizer): next to the checkpoint,
    in an installed ``imagebind`` package or in ``open_clip``; none found is an error."""
    import importlib.util

    name = "bpe_simple_vocab_16e6.txt.gz"
    candidates = []
    if checkpoint is not None:
        candidates += [Path(checkpoint).parent / name, Path(checkpoint).parent / "bpe" / name]
    for package, sub in (("imagebind", "bpe"), ("open_clip", "")):
        try:
            spec = importlib.util.find_spec(package)  # locates without importing
            roots = list(spec.submodule_search_locations or []) if spec else []
        except ValueError:  # imported without a spec (e.g. entered through a stub package)
            roots = list(getattr(sys.modules.get(package), "__path__", []))
        candidates += [Path(root) / sub / name for root in roots]
    for path in candidates:
        if path.is_file():
            return path
    raise ConversionError(
        f"cannot find {name} (ImageBind's BPE vocabulary); pass --tokenizer PATH (it ships in "
        "the ImageBind repository under imagebind/bpe/ and in open_clip)"
    )


def _install_tokenizer(model: ImageBind, tokenizer: str | os.PathLike[str]) -> None:
    """Give the model's text modality the BPE tokenizer; it saves it as tokenizer.json."""
    from colearn_plugin_text.modality import TextModality

    text = model.modalities["text"].inner  # type: ignore[attr-defined]
    source = TextModality(tokenizer=str(tokenizer), style="clip", context_length=77)
    with tempfile.TemporaryDirectory() as tmp:
        source.save_assets(Path(tmp))
        text.load_assets(Path(tmp))


def from_state_dict(
    state: Mapping[str, Tensor],
    *,
    modalities: Sequence[str] | None = None,
    tokenizer: str | os.PathLike[str] | None = None,
    arch: Mapping[str, Any] | None = None,
    strict: bool = True,
) -> ImageBind:
    """A colearn ImageBind from an official state dict: architecture inferred from the shapes
    (``arch`` overrides ImageBindModel arguments, e.g. head counts), towers ``modalities``
    (default: all the checkpoint has), the text tokenizer from ``tokenizer`` (a BPE
    ``.txt.gz`` or ``tokenizer.json``; needed when converting text). The model is built on the
    meta device and takes the checkpoint's tensors without copying them."""
    found, inferred = infer_architecture(state)
    towers = list(modalities) if modalities is not None else found
    missing = [t for t in towers if t not in found]
    if missing:
        raise ConversionError(f"the checkpoint has no {missing} tower(s); it has {found}")
    config = imagebind_config(towers, **{**inferred, **dict(arch or {})})
    with torch.device("meta"):
        model = ImageBind(config)
    converted = convert_state_dict(state, model, strict=strict)
    for key, value in converted.items():
        if value.is_meta:  # colearn-only tensors built on meta: rebuild them on the CPU
            converted[key] = torch.zeros(value.shape, dtype=value.dtype)
    model.load_state_dict(converted, strict=True, assign=True)
    if "text" in towers:
        if tokenizer is None:
            raise ConversionError("converting the text tower needs its tokenizer (tokenizer=...)")
        _install_tokenizer(model, tokenizer)
    return model.eval()


def convert_checkpoint(
    checkpoint: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    modalities: Sequence[str] | None = None,
    tokenizer: str | os.PathLike[str] | None = None,
    arch: Mapping[str, Any] | None = None,
) -> Path:
    """Convert an official checkpoint file (``imagebind_huge.pth`` or ``.safetensors``) into a
    colearn model folder; returns the folder (see :func:`from_state_dict`)."""
    state = load_checkpoint(checkpoint)
    towers = modalities if modalities is not None else infer_architecture(state)[0]
    if "text" in towers and tokenizer is None:
        tokenizer = find_bpe(checkpoint)
    model = from_state_dict(state, modalities=modalities, tokenizer=tokenizer, arch=arch)
    return model.save_pretrained(out_dir, datasets=None, license="cc-by-nc-4.0")
