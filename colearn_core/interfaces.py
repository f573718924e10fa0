"""The core's nouns: Modality, Encoder, Fusion, Loss, Task, Method and the data they exchange.

Shapes use B for batch, T for tokens and D for width. A *batch* is a mapping from a modality
name to that modality's collated tensors, e.g.
``{"image": {"pixels": (B, 3, H, W)}, "text": {"input_ids": (B, L), "attention_mask": (B, L)}}``,
plus optional non-modality keys such as ``"label"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

__all__ = [
    "Batch",
    "Encoder",
    "EncoderOutput",
    "Fusion",
    "Loss",
    "Method",
    "Modality",
    "ModelOutput",
    "Task",
]

Batch = Mapping[str, Any]


@dataclass
class EncoderOutput:
    """What every encoder returns.

    tokens: ``(B, T, D)`` token features; pooled: ``(B, D)`` one vector per example;
    mask: ``(B, T)`` bool, True where a token is real (None when all are).
    """

    tokens: Tensor
    pooled: Tensor
    mask: Tensor | None = None


@dataclass
class ModelOutput:
    """What a method's forward returns.

    embeddings: per-modality vectors ``(B, D)``; logits: named prediction heads;
    losses: named, already weighted loss terms whose sum is :attr:`loss`.
    """

    embeddings: dict[str, Tensor] = field(default_factory=dict)
    logits: dict[str, Tensor] = field(default_factory=dict)
    losses: dict[str, Tensor] = field(default_factory=dict)

    @property
    def loss(self) -> Tensor:
        """The total training loss: the sum of :attr:`losses`."""
        if not self.losses:
            raise ValueError("this output carries no loss terms (was the batch unlabeled?)")
        return torch.stack(list(self.losses.values())).sum()


class Modality:
    """A kind of data: how a raw sample becomes tensors and how samples are collated.

    Instances are configured (image size, normalisation, sampling rate, ...); that config is
    JSON-serialisable and travels in a model's ``config.json`` so preprocessing is reproduced.
    """

    name: ClassVar[str] = ""
    #: ``datasets`` feature types this modality decodes, e.g. ``("Image",)`` or ``("Audio",)``.
    feature_types: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **config: Any) -> None:
        self.config: dict[str, Any] = dict(config)

    def preprocess(self, sample: Any) -> dict[str, Tensor]:
        """Turn one raw sample (PIL image, string, waveform, ...) into named tensors."""
        raise NotImplementedError(f"{type(self).__name__}.preprocess")

    def collate(self, samples: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
        """Stack preprocessed samples into a batch; override for padding."""
        if not samples:
            raise ValueError(f"modality {self.name!r}: cannot collate an empty list of samples")
        return {key: torch.stack([s[key] for s in samples]) for key in samples[0]}

    def augment(
        self, batch: Mapping[str, Tensor], *, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """Random augmentation of a collated batch (a "view"); identity by default."""
        return dict(batch)

    def save_assets(self, folder: Path) -> None:
        """Write files preprocessing needs (e.g. ``tokenizer.json``) next to a model."""

    def load_assets(self, folder: Path) -> None:
        """Read what :meth:`save_assets` wrote."""

    @classmethod
    def example_samples(cls, n: int) -> list[Any]:
        """A few raw samples for contract tests (see :mod:`colearn_core.testing`)."""
        raise NotImplementedError(f"{cls.__name__}.example_samples")


class Encoder(nn.Module):
    """Preprocessed tensors of one modality -> :class:`EncoderOutput`.

    Built from keyword config, which :attr:`config` keeps for ``config.json``.
    Registered under ``"<modality>/<architecture>"``, e.g. ``"image/vit"``.
    """

    modality: ClassVar[str] = ""

    def __init__(self, **config: Any) -> None:
        super().__init__()
        self.config: dict[str, Any] = dict(config)

    #: Width D of the features this encoder returns.
    width: int

    def forward(self, inputs: Mapping[str, Tensor]) -> EncoderOutput:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def example_config(cls) -> dict[str, Any]:
        """A tiny config for contract tests."""
        return {}

    def example_inputs(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """Random inputs this encoder accepts, for contract tests."""
        raise NotImplementedError(f"{type(self).__name__}.example_inputs")


class Fusion(nn.Module):
    """How modality features meet: ``{modality: EncoderOutput} -> {modality: EncoderOutput}``."""

    def forward(self, features: Mapping[str, EncoderOutput]) -> dict[str, EncoderOutput]:
        raise NotImplementedError  # pragma: no cover


class Loss(nn.Module):
    """A training objective. Contrastive losses take ``(a, b)`` feature matrices ``(B, D)``."""

    def example_inputs(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, ...]:
        """Inputs for contract tests; default: two ``(B, 16)`` feature matrices."""
        return (
            torch.randn(batch_size, 16, generator=generator),
            torch.randn(batch_size, 16, generator=generator),
        )


class Task:
    """An evaluation: ``evaluate(model, data) -> {metric: value}``."""

    name: ClassVar[str] = ""

    def __init__(self, **config: Any) -> None:
        self.config: dict[str, Any] = dict(config)

    def evaluate(self, model: Method, data: Iterable[Batch]) -> dict[str, float]:
        raise NotImplementedError(f"{type(self).__name__}.evaluate")


class Method(nn.Module):
    """A model assembled from a JSON-serialisable config; the config is what goes to the Hub.

    Contrastive methods also implement :meth:`embed` and :meth:`losses_from_embeddings`, which
    lets the trainer cache features across accumulated micro-batches (every micro-batch then
    serves as negatives for the others).
    """

    #: Set by registration to the name the method is registered under.
    method_name: ClassVar[str] = ""
    #: True when :meth:`embed`/:meth:`losses_from_embeddings` are implemented.
    contrastive: ClassVar[bool] = False

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        self.config: dict[str, Any] = dict(config)

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, modalities: Sequence[str] | None = None
    ) -> Method:
        """Build the model; ``modalities`` restricts it to those towers where supported."""
        if modalities is not None:
            raise ValueError(f"method {cls.method_name!r} cannot load a subset of modalities")
        return cls(config)

    @property
    def modalities(self) -> dict[str, Modality]:
        """The configured modality objects this model consumes, by name."""
        return {}

    def forward(self, batch: Batch) -> ModelOutput:  # pragma: no cover
        raise NotImplementedError

    def embed(self, batch: Batch) -> dict[str, Tensor]:
        """Per-modality embeddings ``(B, D)`` (contrastive methods)."""
        raise NotImplementedError(f"method {self.method_name!r} has no embed()")

    def losses_from_embeddings(
        self, embeddings: Mapping[str, Tensor], batch: Batch | None = None
    ) -> dict[str, Tensor]:
        """Loss terms computed from (possibly cached, gathered) embeddings."""
        raise NotImplementedError(f"method {self.method_name!r} has no losses_from_embeddings()")

    def save_assets(self, folder: Path) -> None:
        """Write non-weight files (tokenizers, ...) that loading needs."""
        for modality in self.modalities.values():
            modality.save_assets(folder)

    def load_assets(self, folder: Path) -> None:
        """Read what :meth:`save_assets` wrote."""
        for modality in self.modalities.values():
            modality.load_assets(folder)

    def save_pretrained(self, folder: str | Path, **kwargs: Any) -> Path:
        """Write config.json, safetensors weights, assets and a model card to ``folder``
        atomically; see :func:`colearn_core.hub.save_pretrained` for the options."""
        from .hub.pretrained import save_pretrained

        return save_pretrained(self, folder, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> Any:
        """Save and upload to the Hugging Face Hub as one commit (revision=, private=, token=,
        results=, ...); see :func:`colearn_core.hub.push_to_hub`."""
        from .hub.pretrained import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)
