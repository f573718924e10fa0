"""save_pretrained / push_to_hub / from_hub round trips through a local folder and the Hub API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml
from safetensors.torch import load_file

import colearn_core
from colearn_core.hub import FORMAT_VERSION, WeightsError, from_hub, save_pretrained


def test_save_pretrained_writes_config_weights_and_card(tmp_path, make_model):
    model = make_model()
    folder = model.save_pretrained(
        tmp_path / "m",
        results={"zero-shot/toy-pairs": {"accuracy": 0.75, "top5": 1.0}},
        datasets=["toy-pairs"],
        license="apache-2.0",
    )
    assert sorted(os.listdir(folder)) == ["README.md", "config.json", "model.safetensors"]

    config = json.loads((folder / "config.json").read_text())
    assert config["format_version"] == FORMAT_VERSION == 1
    assert config["method"] == "toy-clip"
    assert config["config"] == model.config
    assert config["embed_dim"] == 16
    assert config["colearn_version"] == colearn_core.__version__
    assert config["required_plugins"] == {"colearn-plugin-toy": ">=0.1.0,<0.2"}
    assert config["modalities"] == {
        "a": {"modality": "toy-vector", "config": {"dim": 8}},
        "b": {"modality": "toy-vector", "config": {"dim": 8}},
    }

    weights = load_file(folder / "model.safetensors")
    assert weights.keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(weights[key], value), key

    card = (folder / "README.md").read_text()
    front, body = card.split("---\n")[1], card.split("---\n", 2)[2]
    meta = yaml.safe_load(front)
    assert meta["library_name"] == "colearn"
    assert meta["tags"] == ["colearn", "toy-clip", "toy-vector"]
    assert meta["datasets"] == ["toy-pairs"]
    assert meta["license"] == "apache-2.0"
    [entry] = meta["model-index"]
    [result] = entry["results"]
    assert result["task"]["type"] == "zero-shot"
    assert result["dataset"]["name"] == "toy-pairs"
    assert {m["type"]: m["value"] for m in result["metrics"]} == {"accuracy": 0.75, "top5": 1.0}
    assert "from colearn_core import from_hub" in body
    assert "pip install colearn-core colearn-plugin-toy" in body


def test_local_folder_round_trip_is_exact_and_in_eval_mode(tmp_path, make_model, max_abs_diff):
    model = make_model().train()
    save_pretrained(model, tmp_path / "m")
    loaded = colearn_core.from_hub(tmp_path / "m")
    assert type(loaded) is type(model)
    assert not loaded.training
    assert max_abs_diff(model, loaded) == 0.0
    loaded_str = from_hub(str(tmp_path / "m"), device="cpu")
    assert max_abs_diff(model, loaded_str) == 0.0


def test_push_then_from_hub_gives_identical_outputs(hub, make_model, max_abs_diff, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    model = make_model(seed=1)
    info = model.push_to_hub("tester/toy", private=True, results={"zero-shot/x": {"acc": 0.5}})
    repo = hub.repos["tester/toy"]
    assert repo.private
    assert repo.branches["main"] == info.oid
    assert {"config.json", "model.safetensors", "README.md"} <= set(repo.commits[info.oid].files)
    card = repo.commits[info.oid].files["README.md"].decode()
    assert 'from_hub("tester/toy")' in card
    # every repo request carried the token (huggingface_hub's own telemetry calls aside)
    repo_calls = [r for r in hub.requests if "tester/toy" in r[1] or r[1] == "/api/repos/create"]
    assert len(repo_calls) >= 3
    assert all(auth == "Bearer hf_test_token" for _, _, auth in repo_calls)

    loaded = from_hub("tester/toy")
    assert not loaded.training
    assert max_abs_diff(model, loaded) == 0.0
    downloads = [path for method, path, _ in hub.requests if "/resolve/" in path]
    assert any(p.endswith("/model.safetensors") for p in downloads)


def test_pinned_revision_returns_older_weights_after_newer_push(hub, make_model, max_abs_diff):
    old, new = make_model(seed=1), make_model(seed=2)
    assert max_abs_diff(old, new) > 0
    first = old.push_to_hub("tester/toy").oid
    second = new.push_to_hub("tester/toy").oid
    assert first != second
    assert max_abs_diff(from_hub("tester/toy"), new) == 0.0
    assert max_abs_diff(from_hub("tester/toy", revision=first), old) == 0.0
    assert max_abs_diff(from_hub("tester/toy", revision=second), new) == 0.0
    # a branch is a revision too; main is untouched by a push to it
    branch = make_model(seed=3)
    branch.push_to_hub("tester/toy", revision="experiment")
    assert max_abs_diff(from_hub("tester/toy", revision="experiment"), branch) == 0.0
    assert max_abs_diff(from_hub("tester/toy"), new) == 0.0


def test_hf_hub_offline_loads_from_the_cache(hub, make_model, max_abs_diff, tmp_path):
    model = make_model(seed=4)
    model.push_to_hub("tester/toy")
    from_hub("tester/toy")  # fills the cache
    requests_before = len(hub.requests)
    out = tmp_path / "offline.json"
    script = textwrap.dedent(
        f"""
        import json, torch
        from colearn_core import from_hub
        m = from_hub("tester/toy")
        g = torch.Generator().manual_seed(0)
        x = {{"a": {{"values": torch.randn(3, 8, generator=g)}}}}
        with torch.no_grad():
            json.dump(m.embed(x)["a"].tolist(), open({str(out)!r}, "w"))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert len(hub.requests) == requests_before, hub.requests[requests_before:]
    g = torch.Generator().manual_seed(0)
    x = {"a": {"values": torch.randn(3, 8, generator=g)}}
    with torch.no_grad():
        expected = model.embed(x)["a"]
    assert torch.equal(torch.tensor(json.loads(out.read_text())), expected)


def test_offline_without_cache_fails_with_the_hub_error(hub, monkeypatch):
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(LocalEntryNotFoundError):
        from_hub("tester/never-downloaded")
    assert hub.requests == []


def test_partial_modalities_build_and_load_only_those_towers(hub, make_model, batch):
    model = make_model(seed=5)
    model.push_to_hub("tester/toy")
    only_a = from_hub("tester/toy", modalities=["a"])
    keys = set(only_a.state_dict())
    assert keys == {k for k in model.state_dict() if ".b." not in k}
    assert any(".a." in k for k in keys) and not any(".b." in k for k in keys)
    assert list(only_a.modalities) == ["a"]
    with torch.no_grad():
        assert torch.equal(only_a.embed(batch)["a"], model.embed(batch)["a"])
        assert "b" not in only_a.embed(batch)
    with pytest.raises(colearn_core.ConfigError, match="modalities=\\['c'\\]"):
        from_hub("tester/toy", modalities=["c"])


def test_sharded_save_and_load(tmp_path, hub, make_model, max_abs_diff):
    model = make_model(seed=6)
    folder = save_pretrained(model, tmp_path / "m", max_shard_size=1500)
    shards = sorted(p.name for p in folder.glob("model-*.safetensors"))
    assert len(shards) > 1
    assert not (folder / "model.safetensors").exists()
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(model.state_dict())
    assert sorted(set(index["weight_map"].values())) == shards
    for shard in shards:
        assert (folder / shard).stat().st_size <= 1500 + 1024  # header + one oversized tensor max
    assert max_abs_diff(model, from_hub(folder)) == 0.0

    # through the Hub, then an unsharded push replaces the shards in one commit
    model.push_to_hub("tester/toy", max_shard_size=1500)
    assert max_abs_diff(model, from_hub("tester/toy")) == 0.0
    other = make_model(seed=7)
    info = other.push_to_hub("tester/toy")
    files = set(hub.repos["tester/toy"].commits[info.oid].files)
    assert "model.safetensors" in files
    assert not any(f.startswith("model-") or f.endswith(".index.json") for f in files)
    assert max_abs_diff(other, from_hub("tester/toy")) == 0.0


def test_a_missing_shard_is_reported(tmp_path, make_model):
    folder = save_pretrained(make_model(), tmp_path / "m", max_shard_size=1500)
    victim = sorted(folder.glob("model-*.safetensors"))[0]
    victim.unlink()
    with pytest.raises(WeightsError, match=victim.name):
        from_hub(folder)


def test_save_replaces_an_existing_model_atomically(tmp_path, make_model, max_abs_diff):
    first, second = make_model(seed=1), make_model(seed=2)
    target = tmp_path / "m"
    save_pretrained(first, target)
    save_pretrained(second, target)
    assert max_abs_diff(second, from_hub(target)) == 0.0
    assert sorted(os.listdir(tmp_path)) == ["m"]  # no temporary or old folder left


def test_a_crash_while_saving_leaves_the_old_model_intact(
    tmp_path, make_model, max_abs_diff, monkeypatch
):
    first, second = make_model(seed=1), make_model(seed=2)
    target = tmp_path / "m"
    save_pretrained(first, target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}

    def crash(folder):
        assert (folder / "model.safetensors").exists()  # weights were already half-way written
        raise RuntimeError("disk full")

    monkeypatch.setattr(second, "save_assets", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        save_pretrained(second, target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(os.listdir(tmp_path)) == ["m"]
    assert max_abs_diff(first, from_hub(target)) == 0.0
    # a crash on a first save leaves nothing at all
    with pytest.raises(RuntimeError):
        save_pretrained(second, tmp_path / "new")
    assert sorted(os.listdir(tmp_path)) == ["m"]


def test_save_refuses_to_replace_a_folder_that_is_not_a_model(tmp_path, make_model):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(colearn_core.ConfigError, match="does not look like a colearn model"):
        save_pretrained(make_model(), tmp_path / "notes")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_modality_assets_travel_with_the_model(hub, make_model, monkeypatch):
    model = make_model()
    vocab = '{"version": "1.0", "vocab": ["a", "b"]}'
    monkeypatch.setattr(
        model, "save_assets", lambda folder: (folder / "tokenizer.json").write_text(vocab)
    )
    model.push_to_hub("tester/toy")
    assert (
        hub.repos["tester/toy"]
        .commits[hub.repos["tester/toy"].branches["main"]]
        .files["tokenizer.json"]
        == vocab.encode()
    )

    seen = {}

    def load_assets(self, folder):
        seen["tokenizer"] = (folder / "tokenizer.json").read_text()
        seen["weights_loaded"] = torch.equal(self.logit_scale, model.logit_scale)

    monkeypatch.setattr(type(model), "load_assets", load_assets)
    from_hub("tester/toy")
    assert seen == {"tokenizer": vocab, "weights_loaded": False}  # assets come before weights
