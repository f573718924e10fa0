"""The ``clip`` method (Radford et al. 2021): an image tower and a text tower, each followed by a
bias-free linear projection into one embedding space, trained with the symmetric InfoNCE loss
over the ``N x N`` image-text similarities of a batch and a learnable temperature.

Per batch of ``N`` pairs (shapes in comments)::

    pixels (N, C, H, W)  -> image encoder -> pooled (N, Wi) -> image projection -> (N, E)
    input_ids (N, L)     -> text encoder  -> pooled (N, Wt) -> text projection  -> (N, E)
    both L2-normalised; logits = exp(logit_scale) * img @ txt.T     (N, N)
    loss = (CE(rows) + CE(columns)) / 2                           colearn_core InfoNCELoss

``logit_scale = log(1 / temperature)`` starts at ``log(1 / 0.07)`` and the scale is clamped at
100, as in CLIP. The config (see :data:`DEFAULT_CONFIG`) names any registered image encoder and
text encoder; the modalities' preprocessing config and the tokenizer travel with the model
(``config.json`` and ``tokenizer.json``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from colearn_plugin_text.modality import trim_padding
from torch import Tensor, nn

from colearn_core import Batch, ConfigError, Method, Modality, ModelOutput, registries
from colearn_core.losses import InfoNCELoss

__all__ = ["CLIP", "DEFAULT_CONFIG", "TOWERS"]

#: The two towers, in the order of the loss's arguments.
TOWERS: tuple[str, str] = ("image", "text")

#: Every config key and its default; a model's ``config`` is this merged with the user's and
#: completed with values resolved at construction (text ``vocab_size``/``context_length``,
#: image ``in_chans``), so a saved config rebuilds exactly the same model.
DEFAULT_CONFIG: dict[str, Any] = {
    "embed_dim": 512,
    # Each tower: the modality's config (preprocessing, tokenizer) and a registered encoder.
    "image": {
        "modality": {},
        "encoder": {"name": "image/vit", "size": "base", "patch_size": 16},
    },
    "text": {
        "modality": {},
        "encoder": {"name": "text/transformer"},
    },
    # "linear": a bias-free Linear(width -> embed_dim) per tower (CLIP's); "none": the encoder
    # already outputs embed_dim features.
    "projection": "linear",
    "init_temperature": 0.07,
    "learnable_temperature": True,
    "max_scale": 100.0,
    # Rows per block of the loss's logits (memory), or None for one block.
    "chunk_size": None,
    # Drop the padding columns after the longest text of a batch before the text encoder
    # (exact for the causal text/transformer and the padding-masked text/bert): captions much
    # shorter than context_length cost what they use.
    "trim_text_padding": True,
}
#: Text encoders whose outputs do not depend on trailing padding columns.
_TRIMMABLE = ("text/transformer", "text/bert")
_TOWER_KEYS = {"modality", "encoder"}
_CHANNEL_AWARE = ("image/vit", "image/resnet", "image/simclr-cnn")


def _merge(config: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(config, Mapping):
        raise ConfigError(f"method 'clip': config must be a mapping, got {type(config).__name__}")
    unknown = set(config) - set(DEFAULT_CONFIG)
    if unknown:
        raise ConfigError(
            f"method 'clip': unknown config keys {sorted(unknown)}; known: {sorted(DEFAULT_CONFIG)}"
        )
    merged = copy.deepcopy(DEFAULT_CONFIG)
    for key, value in config.items():
        if key in TOWERS:
            if not isinstance(value, Mapping) or set(value) - _TOWER_KEYS:
                raise ConfigError(
                    f"method 'clip': config key {key!r} must be a mapping with keys "
                    f"{sorted(_TOWER_KEYS)}, got {value!r:.200}"
                )
            for part, sub in value.items():
                if not isinstance(sub, Mapping):
                    raise ConfigError(
                        f"method 'clip': config key '{key}.{part}' must be a mapping, got {sub!r}"
                    )
                # a given encoder or modality config replaces the default one wholesale
                merged[key][part] = copy.deepcopy(dict(sub))
        else:
            merged[key] = copy.deepcopy(value)
    embed_dim = merged["embed_dim"]
    if isinstance(embed_dim, bool) or not isinstance(embed_dim, int) or embed_dim < 1:
        raise ConfigError(f"method 'clip': embed_dim must be a positive int, got {embed_dim!r}")
    if merged["projection"] not in ("linear", "none"):
        raise ConfigError(
            f"method 'clip': projection must be 'linear' or 'none', got {merged['projection']!r}"
        )
    return merged


class CLIP(Method):
    """``clip``: see the module docstring; config keys and defaults: :data:`DEFAULT_CONFIG`.

    The batch is ``{"image": {"pixels": (N, C, H, W)}, "text": {"input_ids": (N, L),
    "attention_mask": (N, L)}}``; either tower alone gives embeddings, both give the loss.
    ``from_config(config, modalities=["image"])`` builds only the image tower (and its
    projection); the temperature is always built.
    """

    contrastive = True

    def __init__(self, config: Mapping[str, Any], *, towers: Sequence[str] | None = None) -> None:
        merged = _merge(config)
        super().__init__(merged)
        built = list(TOWERS) if towers is None else list(towers)
        unknown = [t for t in built if t not in TOWERS]
        if unknown or not built:
            raise ConfigError(
                f"method 'clip' has the towers {list(TOWERS)}; cannot build {unknown or built}"
            )
        self.towers = tuple(t for t in TOWERS if t in built)
        self._modalities: dict[str, Modality] = {}
        self.encoders = nn.ModuleDict()
        self.projections = nn.ModuleDict()
        embed_dim = int(merged["embed_dim"])
        for tower in TOWERS:
            # Every tower's config is resolved (so config.json is complete), even when only
            # some towers are built.
            modality, encoder_cfg = self._resolve_tower(tower)
            if tower not in self.towers:
                continue
            self._modalities[tower] = modality
            name = encoder_cfg.pop("name")
            encoder = registries.encoders.get(name)(**encoder_cfg)
            width = int(encoder.width)
            self.encoders[tower] = encoder
            if merged["projection"] == "linear":
                projection: nn.Module = nn.Linear(width, embed_dim, bias=False)
                nn.init.normal_(projection.weight, std=width**-0.5)  # CLIP's init
            elif width != embed_dim:
                raise ConfigError(
                    f"method 'clip': projection 'none' needs the {tower} encoder to output "
                    f"embed_dim={embed_dim} features, but {name} has width {width}; set its "
                    "output_dim or use projection 'linear'"
                )
            else:
                projection = nn.Identity()
            self.projections[tower] = projection
        self._trim = bool(merged["trim_text_padding"]) and (
            merged["text"]["encoder"]["name"] in _TRIMMABLE
        )
        self.loss = InfoNCELoss(
            temperature=float(merged["init_temperature"]),
            learnable_temperature=bool(merged["learnable_temperature"]),
            max_scale=float(merged["max_scale"]),
            normalize=False,  # embed() returns unit vectors already
            chunk_size=merged["chunk_size"],
            # the trainer averages gradients over processes as DDP does (see InfoNCELoss)
            ddp_scaled=True,
        )

    def _resolve_tower(self, tower: str) -> tuple[Modality, dict[str, Any]]:
        """The tower's modality object and its encoder config with ``name``; fills in what
        the encoder must agree with the modality on and records it in :attr:`config`."""
        section = self.config[tower]
        try:
            # preprocessing runs on the CPU, even when the model is built on another device
            # (or on "meta" to skip initialisation)
            with torch.device("cpu"):
                modality = registries.modalities.get(tower)(**section["modality"])
        except TypeError as exc:
            raise ConfigError(f"method 'clip': config key '{tower}.modality': {exc}") from exc
        section["modality"] = dict(modality.config)
        encoder_cfg = dict(section["encoder"])
        name = encoder_cfg.get("name")
        if not isinstance(name, str) or not name.startswith(f"{tower}/"):
            raise ConfigError(
                f"method 'clip': config key '{tower}.encoder.name' must name a registered "
                f"{tower} encoder ('{tower}/...'), got {name!r}; registered: "
                + ", ".join(n for n in registries.encoders.names() if n.startswith(f"{tower}/"))
            )
        if tower == "image" and name in _CHANNEL_AWARE and "in_chans" not in encoder_cfg:
            encoder_cfg["in_chans"] = modality.config["channels"]
        if tower == "text" and name == "text/transformer":
            if "context_length" not in encoder_cfg:
                encoder_cfg["context_length"] = modality.config["context_length"]
            if "vocab_size" not in encoder_cfg:
                # builds the tokenizer once; saved configs carry the number
                encoder_cfg["vocab_size"] = int(modality.vocab_size)  # type: ignore[attr-defined]
        section["encoder"] = dict(encoder_cfg)
        return modality, encoder_cfg

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, modalities: Sequence[str] | None = None
    ) -> CLIP:
        return cls(config, towers=modalities)

    # --- the public surface ---------------------------------------------------------------

    @property
    def modalities(self) -> dict[str, Modality]:
        """The configured ``image`` and ``text`` modalities of the built towers."""
        return dict(self._modalities)

    @property
    def embed_dim(self) -> int:
        """Width ``E`` of the joint embedding space."""
        return int(self.config["embed_dim"])

    @property
    def logit_scale(self) -> Tensor:
        """``log(1 / temperature)``, the learnable parameter (unclamped)."""
        return self.loss.logit_scale

    @property
    def temperature(self) -> float:
        """The temperature in use (after clamping the scale at ``max_scale``)."""
        return self.loss.temperature

    def encode(self, tower: str, inputs: Mapping[str, Tensor], normalize: bool = True) -> Tensor:
        """Preprocessed, collated ``inputs`` of one tower -> embeddings ``(B, E)``."""
        if tower not in self.encoders:
            raise KeyError(
                f"this clip model has no {tower!r} tower (built: {list(self.towers)}); load it "
                "with modalities=None or including it"
            )
        if tower == "text" and self._trim:
            inputs = trim_padding(inputs)
        pooled = self.encoders[tower](inputs).pooled  # (B, W)
        z = self.projections[tower](pooled)  # (B, E)
        return F.normalize(z, dim=-1) if normalize else z

    def embed(self, batch: Batch) -> dict[str, Tensor]:
        """Unit-norm embeddings ``(B, E)`` of every built tower present in ``batch``."""
        return {tower: self.encode(tower, batch[tower]) for tower in self.towers if tower in batch}

    def losses_from_embeddings(
        self, embeddings: Mapping[str, Tensor], batch: Batch | None = None
    ) -> dict[str, Tensor]:
        """``{"contrastive": symmetric InfoNCE}`` of paired image and text embeddings."""
        missing = [t for t in TOWERS if t not in embeddings]
        if missing:
            raise KeyError(
                f"clip's loss needs both towers' embeddings; missing {missing} (is every tower "
                "mapped to a column in data.columns?)"
            )
        # CLIP clamps logit_scale after every optimiser step; doing it before the loss is the
        # same and keeps a scale pushed past the clamp learnable (no gradient flows past it).
        self.loss.clamp_()
        return {"contrastive": self.loss(embeddings["image"], embeddings["text"])}

    def forward(self, batch: Batch) -> ModelOutput:
        """Embeddings of the towers in ``batch``; with both, the loss and (in eval mode) the
        ``image_text`` logits ``(B_image, B_text)``."""
        embeddings = self.embed(batch)
        if not all(t in embeddings for t in TOWERS):
            return ModelOutput(embeddings=embeddings)
        output = ModelOutput(
            embeddings=embeddings, losses=self.losses_from_embeddings(embeddings, batch)
        )
        if not self.training:
            output.logits["image_text"] = (
                self.loss.scale() * embeddings["image"] @ embeddings["text"].T
            )
        return output

    # --- convenience for raw samples ------------------------------------------------------

    def preprocess(self, tower: str, samples: Sequence[Any]) -> dict[str, Tensor]:
        """Raw samples (PIL images / arrays, strings) -> a collated batch on the model's
        device, through the tower's modality."""
        modality = self.modalities.get(tower)
        if modality is None:
            raise KeyError(f"this clip model has no {tower!r} tower (built: {list(self.towers)})")
        tokenize = getattr(modality, "tokenize", None)
        if tokenize is not None:
            batch = tokenize(list(samples))
        else:
            batch = modality.collate([modality.preprocess(s) for s in samples])
        device = self.logit_scale.device
        return {k: v.to(device) for k, v in batch.items()}

    @torch.no_grad()
    def embed_raw(self, tower: str, samples: Sequence[Any], batch_size: int = 256) -> Tensor:
        """Unit-norm embeddings ``(N, E)`` of raw samples, e.g.
        ``model.embed_raw("text", ["a photo of a dog"])``."""
        parts = [
            self.encode(tower, self.preprocess(tower, samples[i : i + batch_size]))
            for i in range(0, len(samples), batch_size)
        ]
        if not parts:
            return torch.empty(0, self.embed_dim, device=self.logit_scale.device)
        return torch.cat(parts)
