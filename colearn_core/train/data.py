"""Training data: a Hugging Face ``datasets`` dataset, one column per modality (tower).

Each example's mapped columns go through ``model.modalities[tower].preprocess``; a batch of
them through ``.collate``. Both happen inside the DataLoader (so in its worker processes when
``num_workers > 0``). The order is a pure function of ``(seed, epoch)``, which is what lets a
resumed run see exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import ColearnError, ConfigError
from ..interfaces import Modality
from .recipe import DataConfig

__all__ = [
    "Collate",
    "DataError",
    "EpochSampler",
    "Examples",
    "load_split",
    "make_loader",
]


class DataError(ColearnError, ValueError):
    """An example could not be read or preprocessed; the message names its index and column."""


# --- loading --------------------------------------------------------------------------------


def _load_source(cfg: DataConfig) -> Any:
    """A ``Dataset`` or ``DatasetDict`` from a registered builder, a folder or the Hub."""
    import datasets

    from ..registry import registries

    if cfg.dataset in registries.datasets:
        return registries.datasets.get(cfg.dataset)(**cfg.builder_args)
    path = Path(cfg.dataset).expanduser()
    if path.is_dir():
        saved = (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()
        if saved:  # written by save_to_disk
            return datasets.load_from_disk(str(path))
        return datasets.load_dataset(str(path), **cfg.builder_args)
    try:
        return datasets.load_dataset(cfg.dataset, **cfg.builder_args)
    except FileNotFoundError as exc:
        raise ConfigError(
            f"key 'data.dataset': {cfg.dataset!r} is not a registered dataset builder "
            f"({', '.join(registries.datasets.names()) or 'none registered'}), not a local "
            f"folder, and could not be loaded from the Hub: {exc}"
        ) from exc


def load_split(cfg: DataConfig, split: str) -> Any:
    """The ``datasets.Dataset`` for one split. A source that is a single ``Dataset`` (not a
    ``DatasetDict``) serves every split."""
    import datasets

    source = _load_source(cfg)
    if isinstance(source, (datasets.DatasetDict, dict)):
        if split not in source:
            raise ConfigError(
                f"dataset {cfg.dataset!r} has no split {split!r}; its splits: "
                f"{', '.join(source)} (set data.split / data.eval_split)"
            )
        source = source[split]
    if not isinstance(source, datasets.Dataset):
        raise ConfigError(
            f"dataset {cfg.dataset!r} gave a {type(source).__name__}, expected a "
            "datasets.Dataset (streaming datasets are not supported yet)"
        )
    return source


# --- examples -------------------------------------------------------------------------------


class Examples(Dataset):
    """Rows of a ``datasets.Dataset`` turned into ``{tower: preprocessed tensors}``.

    ``columns`` maps tower -> column; ``label_column`` adds ``"label"``; ``extra_columns``
    adds ``"columns": {column: value}`` with each value as the dataset gives it. Rows are read
    in batches (``__getitems__``), which is much faster than one row at a time.
    """

    def __init__(
        self,
        dataset: Any,
        columns: Mapping[str, str],
        modalities: Mapping[str, Modality],
        *,
        label_column: str | None = None,
        extra_columns: Sequence[str] = (),
        name: str = "dataset",
    ) -> None:
        self.name = name
        for tower in columns:
            if tower not in modalities:
                raise ConfigError(
                    f"key 'data.columns.{tower}': the model has no modality {tower!r}; "
                    f"its modalities: {', '.join(modalities) or 'none'}"
                )
        wanted = dict(columns)
        if label_column is not None:
            wanted["label"] = label_column
        extra = [str(c) for c in extra_columns]
        wanted.update({f"eval_columns.{i}": c for i, c in enumerate(extra)})
        available = list(dataset.column_names)
        for key, column in wanted.items():
            if column not in available:
                what = "data.label_column" if key == "label" else f"data.columns.{key}"
                if key.startswith("eval_columns."):
                    what = f"data.{key}"
                raise ConfigError(
                    f"key '{what}': {name} has no column {column!r}; its columns: "
                    f"{', '.join(available)}"
                )
        if len(dataset) == 0:
            raise ConfigError(f"{name} is empty (0 examples); check data.dataset and the split")
        self.dataset = dataset.select_columns(sorted(set(wanted.values())))
        self.columns = dict(columns)
        self.label_column = label_column
        self.extra_columns = extra
        self.modalities = {tower: modalities[tower] for tower in columns}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        indices = [int(i) for i in indices]
        try:
            rows = self.dataset[indices]  # {column: [values]}, decoded
        except Exception as exc:
            raise self._read_error(indices, exc) from exc
        out = []
        for j, index in enumerate(indices):
            example: dict[str, Any] = {}
            for tower, column in self.columns.items():
                value = rows[column][j]
                try:
                    example[tower] = self.modalities[tower].preprocess(value)
                except Exception as exc:
                    raise DataError(
                        f"{self.name}: example {index}, column {column!r} (modality "
                        f"{tower!r}): {type(exc).__name__}: {exc}"
                    ) from exc
            if self.label_column is not None:
                label = rows[self.label_column][j]
                if label is None:
                    raise DataError(
                        f"{self.name}: example {index}, column {self.label_column!r}: "
                        "the label is missing (None)"
                    )
                example["label"] = label
            if self.extra_columns:
                example["columns"] = {c: rows[c][j] for c in self.extra_columns}
            out.append(example)
        return out

    def _read_error(self, indices: Sequence[int], exc: Exception) -> DataError:
        """The example and column that failed when a batch was read: ``datasets`` decodes
        every cell of the batch at once (Image and Audio features), so read them one by one."""
        for index in indices:
            for column in self.dataset.column_names:
                try:
                    self.dataset.select_columns([column])[index]
                except Exception as cell_exc:
                    towers = [t for t, c in self.columns.items() if c == column]
                    modality = f" (modality {towers[0]!r})" if towers else ""
                    return DataError(
                        f"{self.name}: example {index}, column {column!r}{modality}: could "
                        f"not read or decode it: {type(cell_exc).__name__}: {cell_exc}"
                    )
        return DataError(
            f"{self.name}: could not read examples {list(indices[:8])}"
            f"{'...' if len(indices) > 8 else ''}: {type(exc).__name__}: {exc}"
        )


class Collate:
    """A list of :class:`Examples` items -> a batch ``{tower: modality.collate(...), "label"}``
    (and ``"columns": {column: [values]}`` when the examples carry extra columns)."""

    def __init__(self, modalities: Mapping[str, Modality]) -> None:
        self.modalities = dict(modalities)

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = {
            tower: modality.collate([e[tower] for e in examples])
            for tower, modality in self.modalities.items()
        }
        if examples and "label" in examples[0]:
            batch["label"] = torch.as_tensor([e["label"] for e in examples])
        if examples and "columns" in examples[0]:
            batch["columns"] = {
                c: [e["columns"][c] for e in examples] for c in examples[0]["columns"]
            }
        return batch


class EpochSampler(Sampler[int]):
    """Every index once per epoch, shuffled by a generator seeded from ``(seed, epoch)`` only,
    so the order of any epoch can be reproduced without replaying the ones before it."""

    def __init__(self, size: int, seed: int, shuffle: bool = True) -> None:
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.size))
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())


def make_loader(
    examples: Examples,
    batch_size: int,
    *,
    seed: int,
    shuffle: bool = True,
    drop_last: bool = True,
    num_workers: int = 0,
) -> tuple[DataLoader, EpochSampler]:
    """A DataLoader over ``examples`` in :class:`EpochSampler` order, and that sampler."""
    sampler = EpochSampler(len(examples), seed, shuffle)
    loader = DataLoader(
        examples,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=drop_last,
        collate_fn=Collate(examples.modalities),
        num_workers=num_workers,
        # Worker seeds come from this generator, not from the global RNG, so building an
        # iterator never shifts the training RNG (dropout) between a run and its resumption.
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,
    )
    return loader, sampler


def split_batch(batch: Any, parts: int) -> list[Any]:
    """Split every tensor of a (nested) batch into ``parts`` equal chunks along dim 0."""
    if isinstance(batch, Tensor):
        return list(batch.chunk(parts))
    if isinstance(batch, Mapping):
        chunks = {key: split_batch(value, parts) for key, value in batch.items()}
        return [{key: chunks[key][i] for key in batch} for i in range(parts)]
    if isinstance(batch, (list, tuple)):
        size = len(batch) // parts
        return [batch[i * size : (i + 1) * size] for i in range(parts)]
    return [batch] * parts
