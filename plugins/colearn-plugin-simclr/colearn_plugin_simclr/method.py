"""The ``simclr`` method (Chen et al. 2020): two augmented views per image, an encoder, a
2-layer MLP projection head and NT-Xent over the ``2N`` views.

Per batch of ``N`` images (shapes in comments)::

    pixels (N, C, H, W) --augment x2 on the batch's device--> views (2N, C, H, W)
    encoder -> h (2N, F)     the representation (what probes read, ``features()``)
    head    -> z (2N, P)     Linear -> [BatchNorm] -> ReLU -> Linear
    NT-Xent(z[:N], z[N:])    colearn_core.losses.NTXentLoss, temperature T, optional L2 norm

The views come from the image modality's batched :meth:`augment` inside :meth:`embed`, so
augmentation runs on the training device, once per batch, not per sample in data workers.

With ``online_probe`` set, a linear classifier on ``h.detach()`` of both views is trained
beside the model with its own cross-entropy term (only when the batch has ``"label"``); it
tracks representation quality during training without influencing it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from colearn_core import Batch, ConfigError, Method, ModelOutput, registries
from colearn_core.losses import NTXentLoss

__all__ = ["DEFAULT_CONFIG", "ProjectionHead", "SimCLR"]

TOWER = "image"

#: Every config key and its default; a model's ``config`` is this merged with the user's.
DEFAULT_CONFIG: dict[str, Any] = {
    # ImageModality config: preprocessing and the augmentation set (see colearn-plugin-image).
    "modality": {},
    # A registered image encoder and its config.
    "encoder": {"name": "image/resnet", "arch": "resnet18", "small_stem": True},
    "projection": {"hidden_dim": 2048, "output_dim": 128, "batch_norm": True},
    # NTXentLoss options: temperature, normalize (L2), chunk_size, distributed, ...
    "loss": {"temperature": 0.5, "normalize": True},
    # {"num_classes": K} trains an online linear probe on detached features; None: off.
    "online_probe": None,
}
_SECTIONS = set(DEFAULT_CONFIG)
_CHANNEL_AWARE = ("image/resnet", "image/vit", "image/simclr-cnn")


class ProjectionHead(nn.Module):
    """SimCLR's 2-layer MLP ``g``: ``Linear(F, hidden) -> [BatchNorm] -> ReLU -> Linear(hidden,
    out)`` (the batch norm is what the paper's implementation uses)."""

    def __init__(self, in_dim: int, hidden_dim: int, output_dim: int, batch_norm: bool = True):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim, bias=not batch_norm),
            nn.BatchNorm1d(hidden_dim) if batch_norm else nn.Identity(),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, output_dim),
        )

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h)


def _merge(config: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(config) - _SECTIONS
    if unknown:
        raise ConfigError(
            f"method 'simclr': unknown config keys {sorted(unknown)}; known: {sorted(_SECTIONS)}"
        )
    merged = copy.deepcopy(DEFAULT_CONFIG)
    for key, value in config.items():
        if key in ("encoder",) and isinstance(value, Mapping):
            merged[key] = dict(value)  # an encoder config replaces the default one wholesale
        elif isinstance(merged[key], dict) and isinstance(value, Mapping):
            merged[key].update(value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class SimCLR(Method):
    """``simclr``: see the module docstring. Config sections: :data:`DEFAULT_CONFIG`.

    The batch is ``{"image": {"pixels": (N, C, H, W)}, "label": (N,) optional}``.
    """

    contrastive = True

    def __init__(self, config: Mapping[str, Any]) -> None:
        merged = _merge(config)
        super().__init__(merged)
        modality_cls = registries.modalities.get(TOWER)
        self.modality = modality_cls(**merged["modality"])
        # Record the resolved modality config (defaults filled in) for config.json.
        self.config["modality"] = dict(self.modality.config)

        enc = dict(merged["encoder"])
        name = enc.pop("name", None)
        if not isinstance(name, str) or not name.startswith(f"{TOWER}/"):
            raise ConfigError(
                f"method 'simclr': encoder.name must name a registered image encoder "
                f"(image/resnet, image/vit, image/simclr-cnn, ...), got {name!r}"
            )
        if name in _CHANNEL_AWARE and "in_chans" not in enc:
            # The encoder reads as many channels as the modality produces.
            enc["in_chans"] = self.config["encoder"]["in_chans"] = self.modality.config["channels"]
        self.encoder = registries.encoders.get(name)(**enc)
        width = int(self.encoder.width)

        proj = merged["projection"]
        try:
            self.head = ProjectionHead(
                width, int(proj["hidden_dim"]), int(proj["output_dim"]), bool(proj["batch_norm"])
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                "method 'simclr': projection needs hidden_dim (int), output_dim (int) and "
                f"batch_norm (bool), got {proj!r}"
            ) from exc
        if not isinstance(merged["loss"], Mapping):
            raise ConfigError(f"method 'simclr': loss must be a mapping, got {merged['loss']!r}")
        self.loss = NTXentLoss(**merged["loss"])

        probe = merged["online_probe"]
        self.online_probe: nn.Linear | None = None
        if probe is not None:
            classes = probe.get("num_classes") if isinstance(probe, Mapping) else None
            if not isinstance(classes, int) or isinstance(classes, bool) or classes < 2:
                raise ConfigError(
                    "method 'simclr': online_probe must be null or {num_classes: K} with K >= 2, "
                    f"got {probe!r}"
                )
            self.online_probe = nn.Linear(width, classes)

    # --- the public surface ---------------------------------------------------------------

    @property
    def modalities(self) -> dict[str, Any]:
        return {TOWER: self.modality}

    @property
    def feature_dim(self) -> int:
        """Width ``F`` of the representation :meth:`features` returns."""
        return int(self.encoder.width)

    def views(
        self, inputs: Mapping[str, Tensor], *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Two independently augmented views ``(N, C, H, W)`` each of a collated image batch,
        computed on the batch's device by the modality's batched pipeline."""
        first = self.modality.augment(inputs, generator=generator)["pixels"]
        second = self.modality.augment(inputs, generator=generator)["pixels"]
        return first, second

    def features(self, batch: Batch) -> Tensor:
        """The representation ``h`` ``(N, F)`` of un-augmented images: the encoder output
        before the projection head (what linear probes and kNN read)."""
        return self.encoder(self._inputs(batch)).pooled

    def embed(self, batch: Batch, *, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Projections of the two views and their detached representations.

        Returns ``view1``/``view2``: ``(N, P)`` projections (row i of each is the same image),
        and ``features1``/``features2``: ``(N, F)`` detached encoder outputs for the online
        probe. Each entry is per view, so concatenating the entries of several micro-batches
        (the trainer's contrastive accumulation) keeps the positive pairs aligned.
        """
        v1, v2 = self.views(self._inputs(batch), generator=generator)
        n = v1.shape[0]
        h = self.encoder({"pixels": torch.cat([v1, v2])}).pooled  # (2N, F): one pass, shared BN
        z = self.head(h)  # (2N, P)
        h = h.detach()
        return {"view1": z[:n], "view2": z[n:], "features1": h[:n], "features2": h[n:]}

    def losses_from_embeddings(
        self, embeddings: Mapping[str, Tensor], batch: Batch | None = None
    ) -> dict[str, Tensor]:
        """``ntxent`` over the ``2N`` views; ``online_probe`` cross-entropy when the model has a
        probe and ``batch`` carries ``"label"`` ``(N,)`` matching the embeddings' rows."""
        for key in ("view1", "view2"):
            if key not in embeddings:
                raise KeyError(
                    f"method 'simclr': embeddings lack {key!r} (got {sorted(embeddings)}); pass "
                    "what embed() returned"
                )
        losses = {"ntxent": self.loss(embeddings["view1"], embeddings["view2"])}
        logits = self._probe_logits(embeddings)
        if logits is not None and batch is not None and batch.get("label") is not None:
            labels = torch.as_tensor(batch["label"], device=logits.device).long().flatten()
            n = embeddings["features1"].shape[0]
            if labels.shape[0] != n:
                raise ValueError(
                    f"method 'simclr': batch['label'] has {labels.shape[0]} entries but the "
                    f"embeddings have {n} rows; pass the labels of the same examples"
                )
            losses["online_probe"] = F.cross_entropy(logits, labels.repeat(2))
        return losses

    def forward(self, batch: Batch) -> ModelOutput:
        embeddings = self.embed(batch)
        losses = self.losses_from_embeddings(embeddings, batch)
        logits = self._probe_logits(embeddings)
        out = ModelOutput(embeddings=dict(embeddings), losses=losses)
        if logits is not None:
            out.logits["online_probe"] = logits  # (2N, K): both views, view1 rows first
        return out

    # --- helpers --------------------------------------------------------------------------

    def _inputs(self, batch: Batch) -> Mapping[str, Tensor]:
        if TOWER not in batch:
            raise KeyError(
                f"method 'simclr': the batch has no {TOWER!r} entry (keys: {sorted(batch)}); map "
                "the image column to the tower 'image' (data.columns: {image: <column>})"
            )
        return batch[TOWER]

    def _probe_logits(self, embeddings: Mapping[str, Tensor]) -> Tensor | None:
        if self.online_probe is None or "features1" not in embeddings:
            return None
        h = torch.cat([embeddings["features1"], embeddings["features2"]]).detach()
        return self.online_probe(h)

    @classmethod
    def example_config(cls) -> dict[str, Any]:
        """A tiny config for tests: 12x12 grayscale, a 2-stage CNN."""
        return {
            "modality": {
                "image_size": 12,
                "channels": 1,
                "mean": [0.5],
                "std": [0.25],
                "resize": "stretch",
                "blur_p": 0.0,
            },
            "encoder": {"name": "image/simclr-cnn", "widths": [4, 8]},
            "projection": {"hidden_dim": 16, "output_dim": 8, "batch_norm": True},
            "loss": {"temperature": 0.5},
            "online_probe": {"num_classes": 3},
        }
