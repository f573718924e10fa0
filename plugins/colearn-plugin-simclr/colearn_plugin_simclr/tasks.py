"""Evaluation tasks on frozen features: ``linear-probe`` and ``knn``.

Both read a model's representation: ``model.features(batch)`` when the method has it (SimCLR:
the encoder output before the projection head), else ``model.embed(batch)[tower]``. They fit
on a *training* set and report top-1 on a *test* set:

- the test set is the ``data`` the trainer passes to ``evaluate`` (its eval split), or the
  ``test:`` source in the task's arguments;
- the training set is the ``train:`` source (or ``train_data=`` from Python).

A source is ``{dataset, split, builder_args, column, label_column, limit}``: a dataset the
trainer could load (a registered builder, a folder or a Hub id), preprocessed by the model's
own modality. ``baselines`` adds the same evaluation on raw pixels (``pixels``: the
preprocessed input flattened) and on the same method freshly initialised (``random-init``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from colearn_core import Batch, ConfigError, Method, Task

from .probes import accuracy, fit_logistic_regression, knn_predict, select_l2

__all__ = ["KNNTask", "LinearProbeTask", "extract_features", "load_source"]

_SOURCE_KEYS = {"dataset", "split", "builder_args", "column", "label_column", "limit", "batch_size"}
_BASELINES = ("pixels", "random-init")
FeatureFn = Callable[[Batch], Tensor]


def load_source(spec: Mapping[str, Any], model: Method, tower: str, what: str) -> Iterable[Batch]:
    """Batches ``{tower: tensors, "label": (B,)}`` of a dataset source (see module docstring),
    preprocessed with ``model.modalities[tower]``."""
    from colearn_core.train.data import Examples, load_split, make_loader
    from colearn_core.train.recipe import DataConfig

    unknown = set(spec) - _SOURCE_KEYS
    if unknown or "dataset" not in spec:
        raise ConfigError(
            f"{what}: a data source is a mapping with 'dataset' and optionally "
            f"{sorted(_SOURCE_KEYS - {'dataset'})}; got keys {sorted(spec)}"
        )
    if tower not in model.modalities:
        raise ConfigError(
            f"{what}: the model has no modality {tower!r} (it has {sorted(model.modalities)}); "
            "set the task's 'tower'"
        )
    column, label_column = spec.get("column", tower), spec.get("label_column", "label")
    cfg = DataConfig(
        dataset=str(spec["dataset"]),
        columns={tower: column},
        builder_args=dict(spec.get("builder_args", {})),
        split=str(spec.get("split", "train")),
        label_column=label_column,
    )
    dataset = load_split(cfg, cfg.split)
    if spec.get("limit") is not None:
        dataset = dataset.select(range(min(int(spec["limit"]), len(dataset))))
    examples = Examples(
        dataset,
        cfg.columns,
        {tower: model.modalities[tower]},
        label_column=label_column,
        name=f"{what} ({cfg.dataset}, split {cfg.split!r})",
    )
    loader, _ = make_loader(
        examples, int(spec.get("batch_size", 512)), seed=0, shuffle=False, drop_last=False
    )
    return loader


def _feature_fn(model: nn.Module, tower: str) -> FeatureFn:
    if hasattr(model, "features"):
        return model.features  # type: ignore[return-value]

    def embed(batch: Batch) -> Tensor:
        return model.embed(batch)[tower]  # type: ignore[operator]

    return embed


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, Mapping):
        return {k: _to_device(v, device) for k, v in value.items()}
    return value


@torch.no_grad()
def extract_features(
    model: nn.Module, batches: Iterable[Batch], tower: str, fn: FeatureFn | None = None
) -> tuple[Tensor, Tensor]:
    """Run ``fn`` (default: the model's representation) over labelled batches in eval mode;
    returns ``(features (N, D) float32 on CPU, labels (N,) long)``."""
    fn = fn or _feature_fn(model, tower)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    feats, labels = [], []
    try:
        for i, batch in enumerate(batches):
            if batch.get("label") is None:
                raise ValueError(
                    f"batch {i} has no 'label': evaluation data needs labels (set "
                    "data.label_column or the source's label_column)"
                )
            feats.append(fn(_to_device(batch, device)).float().cpu())
            labels.append(torch.as_tensor(batch["label"]).long().flatten().cpu())
    finally:
        model.train(was_training)
    if not feats:
        raise ValueError("no evaluation batches: the data is empty")
    return torch.cat(feats), torch.cat(labels)


def _pixels_fn(tower: str) -> FeatureFn:
    def pixels(batch: Batch) -> Tensor:
        inputs = batch[tower]
        key = "pixels" if "pixels" in inputs else next(iter(inputs))
        return inputs[key].flatten(1)

    return pixels


def _random_init(model: Method, seed: int) -> Method:
    """The same method and config, freshly initialised (the global RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = type(model).from_config(model.config)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    return fresh.to(device)


class _FrozenFeatureTask(Task):
    """Shared plumbing: sources, materialised batches, baselines."""

    metric = "top1"

    def __init__(
        self,
        *,
        train: Mapping[str, Any] | None = None,
        test: Mapping[str, Any] | None = None,
        tower: str = "image",
        baselines: Iterable[str] = (),
        seed: int = 0,
        **config: Any,
    ) -> None:
        self.train_source, self.test_source = train, test
        self.tower = tower
        self.baselines = list(baselines)
        unknown = set(self.baselines) - set(_BASELINES)
        if unknown:
            raise ConfigError(
                f"{self.name}: unknown baselines {sorted(unknown)}; choose from {list(_BASELINES)}"
            )
        self.seed = int(seed)
        super().__init__(
            train=train, test=test, tower=tower, baselines=self.baselines, seed=seed, **config
        )

    def score(
        self, train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor]
    ) -> dict[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def evaluate(
        self,
        model: Method,
        data: Iterable[Batch] | None = None,
        *,
        train_data: Iterable[Batch] | None = None,
    ) -> dict[str, float]:
        """Fit on the training set, score on the test set; see the module docstring.

        Returns ``top1`` (and the task's extras) for the model, and ``<baseline>/top1`` for
        each baseline, plus ``seconds``.
        """
        start = time.perf_counter()
        if train_data is None:
            if self.train_source is None:
                raise ConfigError(
                    f"{self.name}: no training set: give the task a 'train:' source, e.g. "
                    "{dataset: fashion-mnist, split: train}"
                )
            train_data = load_source(self.train_source, model, self.tower, f"{self.name} train")
        if self.test_source is not None:
            data = load_source(self.test_source, model, self.tower, f"{self.name} test")
        if data is None:
            raise ConfigError(f"{self.name}: no test set: pass data or a 'test:' source")
        # Materialise once when several feature functions read the same batches.
        if self.baselines:
            train_data, data = list(train_data), list(data)
        results: dict[str, float] = {}
        runs: list[tuple[str, nn.Module, FeatureFn | None]] = [("", model, None)]
        for baseline in self.baselines:
            if baseline == "pixels":
                runs.append(("pixels/", model, _pixels_fn(self.tower)))
            else:
                runs.append(("random-init/", _random_init(model, self.seed), None))
        for prefix, net, fn in runs:
            train = extract_features(net, train_data, self.tower, fn)
            test = extract_features(net, data, self.tower, fn)
            results.update({prefix + k: v for k, v in self.score(train, test).items()})
        results["seconds"] = time.perf_counter() - start
        return results


class LinearProbeTask(_FrozenFeatureTask):
    """``linear-probe``: multinomial logistic regression on frozen features.

    Arguments: ``train``/``test`` sources, ``tower`` ("image"), ``baselines`` (``pixels``,
    ``random-init``), ``l2`` (a value or a list; a list is searched on ``val_fraction`` of the
    training set, default [1e-5, 1e-4, 1e-3]), ``max_iter`` (L-BFGS iterations, 500).
    Reports ``top1`` and ``l2`` (the value used).
    """

    name = "linear-probe"

    def __init__(
        self,
        *,
        l2: float | list[float] = (1e-5, 1e-4, 1e-3),  # type: ignore[assignment]
        val_fraction: float = 0.1,
        max_iter: int = 500,
        **config: Any,
    ) -> None:
        candidates = [l2] if isinstance(l2, (int, float)) else list(l2)
        if not candidates or any(c < 0 for c in candidates):
            raise ConfigError(f"linear-probe: l2 must be >= 0 (a value or a list), got {l2!r}")
        self.l2 = [float(c) for c in candidates]
        self.val_fraction, self.max_iter = float(val_fraction), int(max_iter)
        super().__init__(l2=self.l2, val_fraction=val_fraction, max_iter=max_iter, **config)

    def score(self, train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor]) -> dict[str, float]:
        (x, y), (tx, ty) = train, test
        l2, _ = select_l2(
            x, y, self.l2, val_fraction=self.val_fraction, seed=self.seed, max_iter=self.max_iter
        )
        classes = int(max(y.max(), ty.max())) + 1
        probe = fit_logistic_regression(x, y, l2=l2, num_classes=classes, max_iter=self.max_iter)
        return {"top1": accuracy(probe.predict(tx), ty), "l2": l2}


class KNNTask(_FrozenFeatureTask):
    """``knn``: cosine k-nearest-neighbour classification on frozen features.

    Arguments: ``train``/``test`` sources, ``tower``, ``baselines``, ``k`` (200),
    ``weighting`` (``distance``: InstDisc's ``exp(sim / temperature)`` vote, the default;
    ``majority``: one vote per neighbour), ``temperature`` (0.07). Reports ``top1``.
    """

    name = "knn"

    def __init__(
        self, *, k: int = 200, weighting: str = "distance", temperature: float = 0.07, **config: Any
    ) -> None:
        if weighting not in ("distance", "majority"):
            raise ConfigError(f"knn: weighting must be 'distance' or 'majority', got {weighting!r}")
        if not isinstance(k, int) or k < 1:
            raise ConfigError(f"knn: k must be a positive int, got {k!r}")
        self.k, self.weighting, self.temperature = k, weighting, float(temperature)
        super().__init__(k=k, weighting=weighting, temperature=temperature, **config)

    def score(self, train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor]) -> dict[str, float]:
        (x, y), (tx, ty) = train, test
        classes = int(max(y.max(), ty.max())) + 1
        predictions = knn_predict(
            x,
            y,
            tx,
            k=self.k,
            weighting=self.weighting,
            temperature=self.temperature,
            num_classes=classes,
        )
        return {"top1": accuracy(predictions, ty)}
