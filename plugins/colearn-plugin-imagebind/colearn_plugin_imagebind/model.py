"""The ``imagebind`` method (Girdhar et al. 2023): one tower per modality, each bound to images.

Every tower is ImageBind's four stages (shapes for a batch of B)::

    raw samples -> modality.preprocess/collate (the preprocessor)   {tensors with B rows}
    -> encoder (the trunk, ending in its LayerNorm and pooling)     pooled (B, W)
    -> head: bias-free Linear(W -> E)                               (B, E)
    -> postprocessor: L2-normalise, times the tower's logit scale   (B, E)

The logit scale is ImageBind's ``LearnableLogitScaling``: ``clip(exp(log_scale), max=100)``,
none for the anchor (images), learnable from ``1/0.07`` for text, fixed at 20 for audio, 5 for
depth and 10 for thermal. Because the anchor's embeddings are unit vectors, ``image @ m.T`` is
already ``scale_m * cos``: the logits of the pair (image, m). The loss is, for every other tower
``m`` present in a batch, ImageBind's symmetric InfoNCE ``L(I, M) + L(M, I)`` over the rows
where both are present (the core's ``InfoNCELoss(combine="sum")`` at temperature 1 on these
embeddings). No loss ever compares two non-anchor towers.

Towers whose inputs hold several clips per example (``clips: true``; audio) embed each clip and
average the postprocessed clip embeddings, as ImageBind does for audio and video.

Any registered modality can be a tower: a tower is configured by its modality name (the key),
the modality's config, and a registered encoder's name and config; see
:data:`DEFAULT_CONFIG` and :data:`TOWER_DEFAULTS`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from colearn_core import Batch, ConfigError, Method, Modality, ModelOutput, registries
from colearn_core.losses import InfoNCELoss

from .missing import OptionalModality, presence, split_presence

__all__ = [
    "DEFAULT_CONFIG",
    "IMAGEBIND_SCALES",
    "TOWER_DEFAULTS",
    "ImageBind",
    "LogitScale",
    "Tower",
    "huge_config",
]

#: Method-level config keys and their defaults.
DEFAULT_CONFIG: dict[str, Any] = {
    # Width E of the joint space (every head projects to it).
    "embed_dim": 1024,
    # The modality every other one is bound to.
    "anchor": "image",
    # tower (= modality name) -> tower config (keys: TOWER_DEFAULTS). Required.
    "towers": {},
    # Towers whose parameters are not trained (ImageBind freezes image and text).
    "freeze": [],
    # Copy the image and text towers from a colearn `clip` model: a repo id or folder, or
    # {"repo": ..., "revision": ...}. Consumed at construction: the saved config records it in
    # "initialized_from" and holds the towers' resolved configs instead.
    "init_from_clip": None,
    "initialized_from": None,
    # tower -> weight of its term L(anchor, tower) + L(tower, anchor) (default 1).
    "loss_weights": {},
    # Rows per block of the loss's logits (memory), or None.
    "chunk_size": None,
}

#: ImageBind's per-modality logit scales (``LearnableLogitScaling``), by modality name.
IMAGEBIND_SCALES: dict[str, dict[str, Any] | None] = {
    "image": None,
    "text": {"init": 1 / 0.07, "learnable": True, "max": 100.0},
    "audio": {"init": 20.0, "learnable": False, "max": 100.0},
    "depth": {"init": 5.0, "learnable": False, "max": 100.0},
    "thermal": {"init": 10.0, "learnable": False, "max": 100.0},
}
#: The scale of a tower of any other modality, unless its config gives one.
OTHER_SCALE: dict[str, Any] = {"init": 1 / 0.07, "learnable": True, "max": 100.0}

#: Tower config keys and defaults. ``logit_scale`` defaults to :data:`IMAGEBIND_SCALES` (the
#: anchor: none); ``clips`` to True for audio.
TOWER_DEFAULTS: dict[str, Any] = {
    "modality": {},  # the modality's own config (preprocessing)
    "encoder": None,  # {"name": "<modality>/<arch>", ...encoder config}; required
    "head": "linear",  # "linear": bias-free Linear(width -> embed_dim); "none": identity
    "logit_scale": "default",  # {"init", "learnable", "max"} or None
    "clips": "default",  # inputs are (B, clips, ...): embed clips, average embeddings
    # LayerNorm eps of an ImageBindTrunk's patch stem (colearn-plugin-depth uses the blocks'
    # eps there; ImageBind's stems use PyTorch's default 1e-5). None: leave as built.
    "patch_norm_eps": None,
    # Pass the tower's training batches through its modality's augment() (a random view per
    # step, e.g. crops and colour for images); evaluation and frozen towers never augment.
    "augment": False,
}


def huge_config(
    modalities: Sequence[str] = ("image", "text", "audio", "depth", "thermal"),
) -> dict[str, Any]:
    """The config of ImageBind-huge (``imagebind_huge()``), for the given towers.

    Preprocessing is ImageBind's: CLIP's image normalisation at 224 px, CLIP's BPE with 77
    tokens (the text modality's ``tokenizer`` must point at ``bpe_simple_vocab_16e6.txt.gz`` or
    a saved ``tokenizer.json``), 3 clips of 2 s as 128 x 204 log-mel spectrograms.
    """
    stem = {"patch_norm_eps": 1e-5}
    towers: dict[str, Any] = {
        "image": {
            "modality": {"image_size": 224},
            "encoder": {
                "name": "image/vit",
                "width": 1280,
                "depth": 32,
                "heads": 16,
                "image_size": 224,
                "patch_size": 14,
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
                "width": 1024,
                "depth": 24,
                "heads": 16,
                "norm_eps": 1e-6,
                "eot_token_id": 49407,
            },
        },
        "audio": {"encoder": {"name": "audio/ast", "size": "imagebind-huge"}, **stem},
        "depth": {"encoder": {"name": "depth/vit", "size": "imagebind-huge"}, **stem},
        "thermal": {"encoder": {"name": "thermal/vit", "size": "imagebind-huge"}, **stem},
    }
    unknown = [m for m in modalities if m not in towers]
    if unknown or "image" not in modalities:
        raise ConfigError(
            f"imagebind-huge has the towers {list(towers)} (image required); got {list(modalities)}"
        )
    return {"embed_dim": 1024, "anchor": "image", "towers": {m: towers[m] for m in modalities}}


# --- modules ----------------------------------------------------------------------------------


class LogitScale(nn.Module):
    """ImageBind's ``LearnableLogitScaling``: ``x * min(exp(log_logit_scale), max)``.

    ``log_logit_scale`` is a parameter when learnable, a (saved) buffer otherwise.
    """

    def __init__(self, init: float, learnable: bool, max: float = 100.0) -> None:
        super().__init__()
        if not (init > 0 and max > 0):
            raise ConfigError(f"logit_scale: init and max must be > 0, got {init}, {max}")
        self.max = float(max)
        value = torch.tensor(math.log(init), dtype=torch.float32)
        if learnable:
            self.log_logit_scale = nn.Parameter(value)
        else:
            self.register_buffer("log_logit_scale", value)

    def scale(self) -> Tensor:
        return torch.clip(self.log_logit_scale.exp(), max=self.max)

    def forward(self, x: Tensor) -> Tensor:
        return self.scale() * x

    def extra_repr(self) -> str:
        learnable = isinstance(self.log_logit_scale, nn.Parameter)
        return f"scale={float(self.scale()):.4g}, learnable={learnable}, max={self.max:g}"


class Tower(nn.Module):
    """encoder -> head -> L2 normalisation -> logit scale: collated inputs -> ``(B, E)``."""

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module,
        scale: LogitScale | None,
        clips: bool,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.scale = scale
        self.clips = clips

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        if self.clips:  # (B, S, ...) -> (B * S, ...): every clip is one example
            b, s = next(iter(inputs.values())).shape[:2]
            inputs = {k: v.flatten(0, 1) for k, v in inputs.items()}
        z = self.head(self.encoder(inputs).pooled)  # (B [* S], E)
        z = F.normalize(z, dim=-1)
        if self.scale is not None:
            z = self.scale(z)
        if self.clips:
            z = z.unflatten(0, (b, s)).mean(dim=1)  # (B, E), ImageBind's reduce_list
        return z


# --- config -----------------------------------------------------------------------------------


def _check_str_list(key: str, value: Any) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"method 'imagebind': {key} must be a list of tower names, got {value!r}")
    return list(value)


def _merge(config: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(config, Mapping):
        raise ConfigError(
            f"method 'imagebind': config must be a mapping, got {type(config).__name__}"
        )
    unknown = set(config) - set(DEFAULT_CONFIG)
    if unknown:
        raise ConfigError(
            f"method 'imagebind': unknown config keys {sorted(unknown)}; known: "
            f"{sorted(DEFAULT_CONFIG)}"
        )
    merged = copy.deepcopy(DEFAULT_CONFIG)
    merged.update(copy.deepcopy(dict(config)))
    dim = merged["embed_dim"]
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ConfigError(f"method 'imagebind': embed_dim must be a positive int, got {dim!r}")
    if not isinstance(merged["towers"], Mapping):
        raise ConfigError(
            "method 'imagebind': towers must map modality names to tower configs, e.g. "
            "{image: {encoder: {name: image/vit}}, audio: {encoder: {name: audio/ast}}}"
        )
    merged["towers"] = {name: dict(cfg or {}) for name, cfg in merged["towers"].items()}
    merged["freeze"] = _check_str_list("freeze", merged["freeze"])
    if not isinstance(merged["loss_weights"], Mapping):
        raise ConfigError("method 'imagebind': loss_weights must map tower names to numbers")
    return merged


def _tower_config(name: str, raw: Mapping[str, Any], anchor: str) -> dict[str, Any]:
    unknown = set(raw) - set(TOWER_DEFAULTS)
    if unknown:
        raise ConfigError(
            f"method 'imagebind': tower {name!r} has unknown keys {sorted(unknown)}; known: "
            f"{sorted(TOWER_DEFAULTS)}"
        )
    if name not in registries.modalities:
        raise ConfigError(
            f"method 'imagebind': tower {name!r}: no registered modality of that name (a tower "
            f"is named after its modality); registered: {', '.join(registries.modalities.names())}"
            " (is the modality's plugin installed? `colearn plugins` lists them)"
        )
    cfg = {**copy.deepcopy(TOWER_DEFAULTS), **copy.deepcopy(dict(raw))}
    if cfg["logit_scale"] == "default":
        cfg["logit_scale"] = (
            None if name == anchor else copy.deepcopy(IMAGEBIND_SCALES.get(name, OTHER_SCALE))
        )
    if cfg["clips"] == "default":
        cfg["clips"] = name == "audio"
    scale = cfg["logit_scale"]
    if scale is not None:
        if not isinstance(scale, Mapping) or set(scale) - {"init", "learnable", "max"}:
            raise ConfigError(
                f"method 'imagebind': towers.{name}.logit_scale must be null or "
                f"{{init, learnable, max}}, got {scale!r}"
            )
        cfg["logit_scale"] = {"init": 1 / 0.07, "learnable": True, "max": 100.0, **scale}
    if cfg["head"] not in ("linear", "none"):
        raise ConfigError(
            f"method 'imagebind': towers.{name}.head must be 'linear' or 'none', "
            f"got {cfg['head']!r}"
        )
    if not isinstance(cfg["clips"], bool):
        raise ConfigError(f"method 'imagebind': towers.{name}.clips must be true or false")
    if not isinstance(cfg["augment"], bool):
        raise ConfigError(
            f"method 'imagebind': towers.{name}.augment must be true or false, "
            f"got {cfg['augment']!r}"
        )
    if not isinstance(cfg["modality"], Mapping):
        raise ConfigError(f"method 'imagebind': towers.{name}.modality must be a mapping")
    encoder = cfg["encoder"]
    if not isinstance(encoder, Mapping) or not isinstance(encoder.get("name"), str):
        known = [n for n in registries.encoders.names() if n.startswith(f"{name}/")]
        raise ConfigError(
            f"method 'imagebind': towers.{name}.encoder must be a mapping with the name of a "
            f"registered encoder, e.g. {{name: {known[0] if known else name + '/...'}}}; "
            f"registered {name} encoders: {', '.join(known) or 'none'}"
        )
    return cfg


def _agree(modality: Modality, encoder_cfg: dict[str, Any]) -> None:
    """Fill in encoder settings that must match the modality's preprocessing (when not set),
    so that e.g. a 1-channel 28-px image modality gets a ViT for 1-channel 28-px inputs."""
    name, c = encoder_cfg["name"], modality.config
    options = getattr(modality, "options", {}) or {}
    if name in ("image/vit", "image/resnet", "image/simclr-cnn"):
        encoder_cfg.setdefault("in_chans", c.get("channels", 3))
    if name == "image/vit" and "image_size" in c:
        encoder_cfg.setdefault("image_size", c["image_size"])
    if name == "text/transformer":
        encoder_cfg.setdefault("context_length", c.get("context_length", 77))
        if "vocab_size" not in encoder_cfg:
            encoder_cfg["vocab_size"] = int(modality.vocab_size)  # type: ignore[attr-defined]
    if name == "audio/ast":
        for key in ("num_mel_bins", "target_length"):
            if key in options:
                encoder_cfg.setdefault(key, options[key])
    if name in ("depth/vit", "thermal/vit") and "image_size" in options:
        encoder_cfg.setdefault("image_size", options["image_size"])


def _clip_source(value: Any) -> tuple[str, str | None]:
    if isinstance(value, str):
        return value, None
    if isinstance(value, Mapping) and isinstance(value.get("repo"), str):
        if set(value) - {"repo", "revision"}:
            raise ConfigError("method 'imagebind': init_from_clip takes the keys repo, revision")
        return value["repo"], value.get("revision")
    raise ConfigError(
        "method 'imagebind': init_from_clip must be a repo id / folder or {repo, revision}, "
        f"got {value!r}"
    )


# --- the method -------------------------------------------------------------------------------


class ImageBind(Method):
    """``imagebind``: see the module docstring; config: :data:`DEFAULT_CONFIG`.

    A batch is ``{tower: collated inputs}`` for any subset of the towers; a tower's inputs may
    carry a ``"present"`` ``(B,)`` mask (examples without that modality). ``embed`` gives each
    tower's postprocessed embeddings ``(B, E)`` (zeros for absent rows), ``forward`` adds the
    loss terms ``"<anchor>_<tower>"`` of every tower paired with the anchor in the batch.
    ``from_config(config, modalities=[...])`` builds only those towers.
    """

    contrastive = True

    def __init__(self, config: Mapping[str, Any], *, towers: Sequence[str] | None = None) -> None:
        merged = _merge(config)
        clip_model = None
        if merged["init_from_clip"] is not None:
            clip_model = self._load_clip(merged)
        super().__init__(merged)
        anchor = merged["anchor"]
        all_towers = list(merged["towers"])
        if anchor not in all_towers or len(all_towers) < 2:
            raise ConfigError(
                f"method 'imagebind': towers must hold the anchor {anchor!r} and at least one "
                f"other modality, got {all_towers}"
            )
        built = all_towers if towers is None else list(towers)
        unknown = [t for t in built if t not in all_towers]
        if unknown or not built:
            raise ConfigError(
                f"this imagebind model has the towers {all_towers}; cannot build {unknown or built}"
            )
        for key in ("freeze", "loss_weights"):
            bad = [t for t in merged[key] if t not in all_towers]
            if bad:
                raise ConfigError(
                    f"method 'imagebind': {key} names {bad}, which are not towers ({all_towers})"
                )
        self.anchor = anchor
        self.tower_names = tuple(t for t in all_towers if t in built)
        self._modalities: dict[str, OptionalModality] = {}
        self.towers = nn.ModuleDict()
        embed_dim = int(merged["embed_dim"])
        # Every tower's config is checked and resolved (config.json is complete), built or
        # not, before anything is built.
        resolved = {}
        for name in all_towers:
            cfg = _tower_config(name, merged["towers"][name], anchor)
            resolved[name] = self._resolve(name, cfg)
            merged["towers"][name] = cfg
        for name in self.tower_names:
            modality, encoder_cfg = resolved[name]
            self._modalities[name] = OptionalModality(modality)
            self.towers[name] = self._build_tower(
                name, merged["towers"][name], encoder_cfg, embed_dim
            )
        if clip_model is not None:
            self._copy_clip(clip_model)
        for name in merged["freeze"]:
            if name in self.towers:
                self.towers[name].requires_grad_(False)
        self.loss = InfoNCELoss(
            temperature=1.0,  # the towers' logit scales are the temperatures
            normalize=False,
            combine="sum",  # L(I, M) + L(M, I)
            chunk_size=merged["chunk_size"],
            # the trainer averages gradients over processes as DDP does (see InfoNCELoss)
            ddp_scaled=True,
        )

    # --- construction -------------------------------------------------------------------

    def _resolve(self, name: str, cfg: dict[str, Any]) -> tuple[Modality, dict[str, Any]]:
        modality_cls = registries.modalities.get(name)
        try:
            # preprocessing runs on the CPU even when the model is built on "meta"
            with torch.device("cpu"):
                modality = modality_cls(**cfg["modality"])
        except TypeError as exc:
            raise ConfigError(f"method 'imagebind': towers.{name}.modality: {exc}") from exc
        cfg["modality"] = dict(modality.config)
        encoder_cfg = dict(cfg["encoder"])
        _agree(modality, encoder_cfg)
        cfg["encoder"] = dict(encoder_cfg)
        return modality, encoder_cfg

    def _build_tower(
        self, name: str, cfg: dict[str, Any], encoder_cfg: dict[str, Any], embed_dim: int
    ) -> Tower:
        encoder_name = encoder_cfg.pop("name")
        encoder = registries.encoders.get(encoder_name)(**encoder_cfg)
        width = int(encoder.width)
        if cfg["patch_norm_eps"] is not None:
            stem = getattr(getattr(encoder, "trunk", None), "patch_embed", None)
            norm = getattr(stem, "norm", None)
            if not isinstance(norm, nn.LayerNorm):
                raise ConfigError(
                    f"method 'imagebind': towers.{name}.patch_norm_eps is set but encoder "
                    f"{encoder_name!r} has no patch LayerNorm (trunk.patch_embed.norm)"
                )
            norm.eps = float(cfg["patch_norm_eps"])
        if cfg["head"] == "linear":
            head: nn.Module = nn.Linear(width, embed_dim, bias=False)
            nn.init.normal_(head.weight, std=width**-0.5)
        elif width != embed_dim:
            raise ConfigError(
                f"method 'imagebind': towers.{name}.head 'none' needs encoder width == embed_dim "
                f"({embed_dim}), but {encoder_name} has width {width}"
            )
        else:
            head = nn.Identity()
        scale_cfg = cfg["logit_scale"]
        scale = None
        if scale_cfg is not None:
            scale = LogitScale(
                float(scale_cfg["init"]), bool(scale_cfg["learnable"]), float(scale_cfg["max"])
            )
        return Tower(encoder, head, scale, bool(cfg["clips"]))

    @staticmethod
    def _load_clip(merged: dict[str, Any]) -> Any:
        """Load the CLIP model named by init_from_clip and take its towers' configs."""
        from colearn_core import from_hub

        repo, revision = _clip_source(merged["init_from_clip"])
        clip = from_hub(repo, revision, modalities=["image", "text"])
        if getattr(type(clip), "method_name", "") != "clip":
            raise ConfigError(
                f"method 'imagebind': init_from_clip {repo!r} is a "
                f"{getattr(type(clip), 'method_name', '?')!r} model, not a 'clip' model"
            )
        c = clip.config
        user_dim = merged["embed_dim"]
        if user_dim != DEFAULT_CONFIG["embed_dim"] and user_dim != c["embed_dim"]:
            raise ConfigError(
                f"method 'imagebind': embed_dim {user_dim} differs from the CLIP model's "
                f"{c['embed_dim']} (init_from_clip {repo!r}); drop embed_dim or set it to that"
            )
        merged["embed_dim"] = int(c["embed_dim"])
        head = "linear" if c["projection"] == "linear" else "none"
        for tower in ("image", "text"):
            if tower not in merged["towers"]:
                continue
            own = merged["towers"][tower]
            given = [k for k in ("modality", "encoder", "head") if k in own]
            if given:
                raise ConfigError(
                    f"method 'imagebind': towers.{tower} sets {given}, but init_from_clip takes "
                    "the image and text towers from the CLIP model; remove them"
                )
            encoder = dict(c[tower]["encoder"])
            trunk = getattr(clip.encoders[tower], "trunk", None)
            if encoder["name"] == "image/vit" and "image_size" not in encoder and trunk:
                # the size the CLIP ViT was built for (ImageBind would take the modality's)
                h, w = trunk.image_size
                encoder["image_size"] = h if h == w else [h, w]
            own.update({"modality": c[tower]["modality"], "encoder": encoder, "head": head})
        if "text" in merged["towers"]:
            merged["towers"]["text"].setdefault(
                "logit_scale",
                {
                    "init": 1.0 / float(clip.temperature),
                    "learnable": bool(c["learnable_temperature"]),
                    "max": float(c["max_scale"]),
                },
            )
        merged["initialized_from"] = {"clip": repo, "revision": revision}
        merged["init_from_clip"] = None
        return clip

    @torch.no_grad()
    def _copy_clip(self, clip: Any) -> None:
        """Image and text encoders, projections (as heads), tokenizer and temperature."""
        for tower in ("image", "text"):
            if tower not in self.towers:
                continue
            own = self.towers[tower]
            own.encoder.load_state_dict(clip.encoders[tower].state_dict(), strict=True)
            own.head.load_state_dict(clip.projections[tower].state_dict(), strict=True)
            # the CLIP model's modality carries the tokenizer it was trained with
            self._modalities[tower] = OptionalModality(clip.modalities[tower])
        text = self.towers["text"] if "text" in self.towers else None
        if text is not None and text.scale is not None:
            text.scale.log_logit_scale.copy_(torch.log(clip.loss.scale().detach()))

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, modalities: Sequence[str] | None = None
    ) -> ImageBind:
        return cls(config, towers=modalities)

    # --- the public surface ---------------------------------------------------------------

    @property
    def modalities(self) -> dict[str, Modality]:
        """The built towers' modalities (wrapped in :class:`OptionalModality`: a ``None``
        sample is a missing one)."""
        return dict(self._modalities)

    @property
    def embed_dim(self) -> int:
        """Width ``E`` of the joint embedding space."""
        return int(self.config["embed_dim"])

    @property
    def frozen(self) -> tuple[str, ...]:
        """The built towers whose parameters are frozen."""
        return tuple(t for t in self.config["freeze"] if t in self.towers)

    def logit_scale(self, tower: str) -> float:
        """The scale a tower's unit embeddings are multiplied by (1.0 for the anchor)."""
        scale = self._tower(tower).scale
        return 1.0 if scale is None else float(scale.scale().detach())

    def train(self, mode: bool = True) -> ImageBind:
        super().train(mode)
        for name in self.frozen:  # frozen towers keep eval behaviour (no dropout/drop-path)
            self.towers[name].eval()
        return self

    def _tower(self, tower: str) -> Tower:
        if tower not in self.towers:
            raise KeyError(
                f"this imagebind model has no {tower!r} tower (built: {list(self.tower_names)}, "
                f"configured: {list(self.config['towers'])}); load it with modalities=None or "
                "including it"
            )
        return self.towers[tower]  # type: ignore[return-value]

    def encode(self, tower: str, inputs: Mapping[str, Tensor]) -> Tensor:
        """Collated ``inputs`` of one tower -> postprocessed embeddings ``(B, E)``.

        Rows whose ``"present"`` mask is False are not encoded; their embeddings are zeros.
        In training mode a tower configured with ``augment: true`` encodes a random view of
        ``inputs`` (its modality's ``augment``, drawing from torch's global RNG, which the
        trainer restores when it recomputes a micro-batch).
        """
        module = self._tower(tower)
        if self.training and self._augments(tower):
            inputs = self._modalities[tower].augment(inputs)
        tensors, present = split_presence(inputs)
        if present is None or (tensors and bool(present.all())):
            z = self._run(tower, module, tensors)
        else:
            rows = present.shape[0]
            device = present.device
            z = torch.zeros(rows, self.embed_dim, device=device)
            if bool(present.any()):
                idx = present.nonzero().flatten()
                part = self._run(tower, module, {k: v[idx] for k, v in tensors.items()})
                z = z.to(part.dtype).index_copy(0, idx, part)
        if torch.is_grad_enabled() and not z.requires_grad:
            # A frozen tower or a micro-batch without the modality: a leaf that accepts a
            # gradient, so the trainer's cached-feature backward can treat every tower alike.
            z.requires_grad_()
        return z

    def _augments(self, tower: str) -> bool:
        return bool(self.config["towers"][tower]["augment"]) and tower not in self.frozen

    def _run(self, tower: str, module: Tower, tensors: Mapping[str, Tensor]) -> Tensor:
        if tower in self.config["freeze"]:
            with torch.no_grad():
                return module(tensors)
        return module(tensors)

    def embed(self, batch: Batch) -> dict[str, Tensor]:
        """Postprocessed embeddings ``(B, E)`` of every built tower present in ``batch``
        (the anchor's are unit vectors, the others' have norm = their logit scale)."""
        return {t: self.encode(t, batch[t]) for t in self.tower_names if t in batch}

    def losses_from_embeddings(
        self, embeddings: Mapping[str, Tensor], batch: Batch | None = None
    ) -> dict[str, Tensor]:
        """``{"<anchor>_<tower>": L(I, M) + L(M, I)}`` over the rows where both are present,
        for every tower paired with the anchor in ``embeddings`` (towers without any such row
        give no term)."""
        anchor = self.anchor
        if anchor not in embeddings:
            raise KeyError(
                f"imagebind's loss binds every modality to {anchor!r}, but the batch has no "
                f"{anchor!r} (towers: {sorted(embeddings)}); map the {anchor} column in "
                "data.columns"
            )
        a = embeddings[anchor]
        rows = a.shape[0]
        a_mask = presence(batch, anchor, rows, a.device)
        weights = self.config["loss_weights"]
        losses: dict[str, Tensor] = {}
        for tower in self.config["towers"]:
            if tower == anchor or tower not in embeddings:
                continue
            z = embeddings[tower]
            both = a_mask & presence(batch, tower, rows, z.device)
            if not bool(both.any()):
                continue
            x, y = (a, z) if bool(both.all()) else (a[both], z[both])
            loss = self.loss(x, y)
            weight = float(weights.get(tower, 1.0))
            losses[f"{anchor}_{tower}"] = loss * weight if weight != 1.0 else loss
        return losses

    def forward(self, batch: Batch) -> ModelOutput:
        """Embeddings of the towers in ``batch``; with the anchor and another tower, the loss
        terms and (in eval mode) the logits ``"<anchor>_<tower>"`` ``(B, B)``."""
        embeddings = self.embed(batch)
        output = ModelOutput(embeddings=embeddings)
        if self.anchor in embeddings and len(embeddings) > 1:
            output.losses = self.losses_from_embeddings(embeddings, batch)
            if not self.training:
                a = embeddings[self.anchor]
                for tower, z in embeddings.items():
                    if tower != self.anchor:
                        output.logits[f"{self.anchor}_{tower}"] = a @ z.T
        return output

    # --- convenience for raw samples ------------------------------------------------------

    def preprocess(self, tower: str, samples: Sequence[Any]) -> dict[str, Tensor]:
        """Raw samples -> a collated batch on the model's device, through the tower's
        modality (``None`` samples are missing)."""
        if tower not in self._modalities:
            self._tower(tower)  # raises the explanatory KeyError
        modality = self._modalities[tower]
        if hasattr(modality.inner, "tokenize") and all(s is not None for s in samples):
            batch = modality.inner.tokenize(list(samples))  # type: ignore[attr-defined]
        else:
            batch = modality.collate([modality.preprocess(s) for s in samples])
        device = next(iter(self.parameters())).device
        return {k: v.to(device) for k, v in batch.items()}

    @torch.no_grad()
    def embed_raw(self, tower: str, samples: Sequence[Any], batch_size: int = 64) -> Tensor:
        """Postprocessed embeddings ``(N, E)`` of raw samples, e.g.
        ``model.embed_raw("audio", ["dog.wav"])``."""
        parts = [
            self.encode(tower, self.preprocess(tower, samples[i : i + batch_size]))
            for i in range(0, len(samples), batch_size)
        ]
        return torch.cat(parts)
