"""Training data: loading sources, preprocessing + collation, errors, deterministic order."""

from __future__ import annotations

import datasets
import pytest
import torch

from colearn_core.errors import ConfigError
from colearn_core.registry import registries
from colearn_core.train.data import (
    DataError,
    EpochSampler,
    Examples,
    load_split,
    make_loader,
    split_batch,
)
from colearn_core.train.recipe import DataConfig


@pytest.fixture
def model():
    return registries.methods.get("toy-clip").from_config({"width": 16})


def pairs(n=12):
    return registries.datasets.get("toy-pairs")(n=n, seed=1)


def test_batches_are_the_modalities_preprocess_and_collate(model):
    ds = pairs()
    examples = Examples(ds, {"a": "a", "b": "b"}, model.modalities, label_column="label")
    loader, _ = make_loader(examples, 4, seed=0, shuffle=False)
    batch = next(iter(loader))
    assert set(batch) == {"a", "b", "label"}
    expected_a = torch.tensor(ds["a"][:4], dtype=torch.float32)
    assert torch.equal(batch["a"]["values"], expected_a)
    assert torch.equal(batch["b"]["values"], torch.tensor(ds["b"][:4], dtype=torch.float32))
    assert batch["label"].tolist() == ds["label"][:4]


def test_eval_columns_ride_along_as_lists(model):
    ds = pairs().add_column("note", [f"row {i}" for i in range(12)])
    examples = Examples(ds, {"a": "a"}, model.modalities, extra_columns=["note", "label"])
    loader, _ = make_loader(examples, 5, seed=0, shuffle=False, drop_last=False)
    batches = list(loader)
    assert set(batches[0]) == {"a", "columns"}
    assert batches[0]["columns"] == {
        "note": [f"row {i}" for i in range(5)],
        "label": ds["label"][:5],
    }
    assert sum(len(b["columns"]["note"]) for b in batches) == 12  # the short last batch too
    with pytest.raises(ConfigError, match="key 'data.eval_columns.1': toy has no column 'kind'"):
        Examples(ds, {"a": "a"}, model.modalities, extra_columns=["note", "kind"], name="toy")


def test_workers_give_the_same_batches(model):
    examples = Examples(pairs(), {"a": "a", "b": "b"}, model.modalities)
    plain, _ = make_loader(examples, 4, seed=3)
    workers, _ = make_loader(examples, 4, seed=3, num_workers=2)
    for x, y in zip(plain, workers, strict=True):
        assert torch.equal(x["a"]["values"], y["a"]["values"])


def test_missing_column_and_unknown_tower_are_named(model):
    with pytest.raises(ConfigError) as err:
        Examples(pairs(), {"a": "a", "b": "text"}, model.modalities, name="toy")
    assert "key 'data.columns.b': toy has no column 'text'; its columns: a, b, label" in str(
        err.value
    )
    with pytest.raises(ConfigError, match="key 'data.label_column': toy has no column 'y'"):
        Examples(pairs(), {"a": "a"}, model.modalities, label_column="y", name="toy")
    with pytest.raises(ConfigError, match="the model has no modality 'c'; its modalities: a, b"):
        Examples(pairs(), {"c": "a"}, model.modalities)


def test_empty_dataset(model):
    empty = pairs().select([])
    with pytest.raises(ConfigError, match="toy is empty"):
        Examples(empty, {"a": "a"}, model.modalities, name="toy")


def test_bad_example_names_its_index_and_column(model):
    rows = pairs(6).to_dict()
    rows["b"][4] = [1.0, 2.0]  # the wrong length for dim=8
    examples = Examples(datasets.Dataset.from_dict(rows), {"a": "a", "b": "b"}, model.modalities)
    loader, _ = make_loader(examples, 6, seed=0, shuffle=False)
    with pytest.raises(DataError) as err:
        next(iter(loader))
    message = str(err.value)
    assert "example 4, column 'b' (modality 'b')" in message
    assert "expected a vector of length 8" in message


def test_order_depends_only_on_seed_and_epoch():
    sampler = EpochSampler(50, seed=7)
    sampler.set_epoch(3)
    third = list(sampler)
    replay = EpochSampler(50, seed=7)
    for epoch in range(4):  # iterating earlier epochs changes nothing
        replay.set_epoch(epoch)
        order = list(replay)
    assert order == third and sorted(third) == list(range(50))
    sampler.set_epoch(4)
    assert list(sampler) != third
    assert list(EpochSampler(50, seed=8)) != list(EpochSampler(50, seed=7))
    assert list(EpochSampler(5, seed=7, shuffle=False)) == [0, 1, 2, 3, 4]


def test_split_batch():
    batch = {"a": {"values": torch.arange(8).view(4, 2)}, "label": torch.arange(4)}
    parts = split_batch(batch, 2)
    assert [p["label"].tolist() for p in parts] == [[0, 1], [2, 3]]
    assert parts[1]["a"]["values"].tolist() == [[4, 5], [6, 7]]


def test_sources_builder_saved_folder_and_data_files(tmp_path):
    built = load_split(DataConfig("toy-pairs", {"a": "a"}, builder_args={"n": 10}), "train")
    assert len(built) == 10

    splits = datasets.DatasetDict({"train": pairs(8), "test": pairs(4)})
    splits.save_to_disk(tmp_path / "saved")
    cfg = DataConfig(str(tmp_path / "saved"), {"a": "a"})
    assert len(load_split(cfg, "test")) == 4
    with pytest.raises(ConfigError, match="has no split 'valid'; its splits: train, test"):
        load_split(cfg, "valid")

    files = tmp_path / "files"
    files.mkdir()
    pairs(5).to_json(files / "train.jsonl")
    loaded = load_split(DataConfig(str(files), {"a": "a"}), "train")
    assert torch.allclose(torch.tensor(loaded["a"]), torch.tensor(pairs(5)["a"]))
