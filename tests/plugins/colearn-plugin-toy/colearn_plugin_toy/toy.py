"""Toy modality, encoder and method: small enough for fast tests, real enough to learn."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from colearn_core import (
    Encoder,
    EncoderOutput,
    Method,
    Modality,
    ModelOutput,
    Task,
    registries,
)


class VectorModality(Modality):
    """A fixed-length float vector; ``dim`` is checked."""

    name = "toy-vector"

    def __init__(self, dim: int = 8, **config: Any) -> None:
        super().__init__(dim=dim, **config)
        self.dim = dim

    def preprocess(self, sample: Any) -> dict[str, Tensor]:
        values = torch.as_tensor(sample, dtype=torch.float32)
        if values.shape != (self.dim,):
            raise ValueError(
                f"modality 'toy-vector': expected a vector of length {self.dim}, "
                f"got shape {tuple(values.shape)}"
            )
        return {"values": values}

    @classmethod
    def example_samples(cls, n: int) -> list[Any]:
        return [[float(i + j) for j in range(8)] for i in range(n)]


class MLPEncoder(Encoder):
    """Two-layer MLP; tokens are the hidden units split into ``tokens`` groups."""

    modality = "toy-vector"

    def __init__(self, dim: int = 8, width: int = 32, tokens: int = 1, **config: Any) -> None:
        super().__init__(dim=dim, width=width, tokens=tokens, **config)
        self.width = width
        self.tokens = tokens
        self.net = nn.Sequential(
            nn.Linear(dim, width * tokens), nn.GELU(), nn.Linear(width * tokens, width * tokens)
        )

    def forward(self, inputs: Mapping[str, Tensor]) -> EncoderOutput:
        x = self.net(inputs["values"])  # (B, width * tokens)
        tokens = x.view(x.shape[0], self.tokens, self.width)  # (B, T, D)
        return EncoderOutput(tokens=tokens, pooled=tokens.mean(dim=1))

    @classmethod
    def example_config(cls) -> dict[str, Any]:
        return {"dim": 8, "width": 16, "tokens": 2}

    def example_inputs(self, batch_size: int, generator: torch.Generator | None = None):
        return {"values": torch.randn(batch_size, self.config["dim"], generator=generator)}


class ToyCLIP(Method):
    """Two towers ``a`` and ``b`` over vectors, projected and trained with the core's symmetric
    InfoNCE (learnable temperature; global negatives across processes).

    Config: ``{"dim": 8, "width": 32, "embed_dim": 16, "init_temperature": 0.1,
    "towers": ["a", "b"], "dropout": 0.0, "batch_norm": False, "sleep": 0.0}``. ``dropout``
    acts on the pooled features (to test RNG handling), ``batch_norm`` adds a BatchNorm1d there
    (to test running statistics); ``sleep`` seconds are spent in every ``embed`` call (to
    make a test run slow enough to be killed mid-way).
    """

    contrastive = True

    def __init__(
        self, config: Mapping[str, Any], *, modalities: Sequence[str] | None = None
    ) -> None:
        from colearn_core.losses import InfoNCELoss

        defaults = {
            "dim": 8,
            "width": 32,
            "embed_dim": 16,
            "init_temperature": 0.1,
            "towers": ["a", "b"],
            "dropout": 0.0,
            "batch_norm": False,
            "sleep": 0.0,
        }
        super().__init__({**defaults, **config})
        c = self.config
        towers = list(modalities) if modalities is not None else list(c["towers"])
        unknown = set(towers) - set(c["towers"])
        if unknown:
            raise ValueError(f"toy-clip has no towers {sorted(unknown)}; it has {c['towers']}")
        enc = registries.encoders.get("toy-vector/mlp")
        self.encoders = nn.ModuleDict({t: enc(dim=c["dim"], width=c["width"]) for t in towers})
        self.dropout = nn.Dropout(c["dropout"])
        norm = (lambda: nn.BatchNorm1d(c["width"])) if c["batch_norm"] else nn.Identity
        self.norms = nn.ModuleDict({t: norm() for t in towers})
        self.projections = nn.ModuleDict(
            {t: nn.Linear(c["width"], c["embed_dim"], bias=False) for t in towers}
        )
        # ddp_scaled: the trainer averages gradients over processes, as DDP does.
        self.loss = InfoNCELoss(
            temperature=c["init_temperature"],
            learnable_temperature=True,
            normalize=False,  # embed() already normalises
            ddp_scaled=True,
        )
        self._modalities = {t: VectorModality(dim=c["dim"]) for t in towers}

    @classmethod
    def from_config(cls, config, *, modalities=None):
        return cls(config, modalities=modalities)

    @property
    def logit_scale(self) -> nn.Parameter:
        """``log(1 / temperature)``, the loss's learnable parameter."""
        return self.loss.logit_scale

    @property
    def modalities(self) -> dict[str, Modality]:
        return dict(self._modalities)

    def embed(self, batch) -> dict[str, Tensor]:
        if self.config["sleep"]:
            time.sleep(self.config["sleep"])
        out = {}
        for tower, encoder in self.encoders.items():
            if tower in batch:
                pooled = self.norms[tower](self.dropout(encoder(batch[tower]).pooled))  # (B, width)
                out[tower] = F.normalize(self.projections[tower](pooled), dim=-1)  # (B, E)
        return out

    def losses_from_embeddings(self, embeddings, batch=None) -> dict[str, Tensor]:
        return {"contrastive": self.loss(embeddings["a"], embeddings["b"])}

    def forward(self, batch) -> ModelOutput:
        embeddings = self.embed(batch)
        losses = self.losses_from_embeddings(embeddings) if len(embeddings) == 2 else {}
        return ModelOutput(embeddings=embeddings, losses=losses)


class ToyRetrieval(Task):
    """Recall@1 from tower ``query`` to tower ``target`` over the evaluation batches: the
    fraction of examples whose nearest ``target`` embedding is their own pair."""

    name = "toy-retrieval"

    def __init__(self, query: str = "a", target: str = "b", **config: Any) -> None:
        super().__init__(query=query, target=target, **config)
        self.query, self.target = query, target

    def evaluate(self, model: Method, data: Iterable[Mapping[str, Any]]) -> dict[str, float]:
        queries, targets = [], []
        with torch.no_grad():
            for batch in data:
                embeddings = model.embed(batch)
                queries.append(embeddings[self.query].float())
                targets.append(embeddings[self.target].float())
        q, t = torch.cat(queries), torch.cat(targets)  # (N, E) each
        hits = (q @ t.T).argmax(dim=1) == torch.arange(q.shape[0], device=q.device)
        return {"recall@1": hits.float().mean().item(), "n": float(q.shape[0])}


def build_toy_pairs(n: int = 256, dim: int = 8, seed: int = 0, noise: float = 0.1, **_: Any):
    """A ``datasets.Dataset`` of correlated vector pairs: ``b`` is a fixed rotation of ``a``."""
    import datasets

    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, dim, generator=g)
    rotation = torch.linalg.qr(torch.randn(dim, dim, generator=g))[0]
    b = a @ rotation + noise * torch.randn(n, dim, generator=g)
    labels = (a[:, 0] > 0).long()
    return datasets.Dataset.from_dict({"a": a.tolist(), "b": b.tolist(), "label": labels.tolist()})
