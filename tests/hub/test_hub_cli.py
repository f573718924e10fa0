"""``colearn push | pull | info | zoo`` against the local Hub server."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml

from colearn_core.cli import main
from colearn_core.hub import from_hub, save_pretrained
from colearn_core.hub.zoo import default_zoo_dir, load_entries


@pytest.fixture
def run_dir(tmp_path, make_model):
    """A training run folder as the trainer leaves it: the final model in model/."""
    run = tmp_path / "run"
    save_pretrained(make_model(seed=11), run / "model")
    (run / "train.log").write_text("step 1 loss 1.0\n")
    return run


def colearn(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_push_a_run_dir_to_a_private_branch_then_pull_it(
    hub, run_dir, tmp_path, capsys, make_model, max_abs_diff
):
    code, out, err = colearn(
        capsys, "push", str(run_dir), "tester/toy", "--revision", "dev", "--private",
        "--commit-message", "first model",
    )  # fmt: skip
    assert code == 0, err
    repo = hub.repos["tester/toy"]
    assert repo.private
    commit = repo.commits[repo.branches["dev"]]
    assert commit.message == "first model"
    assert commit.oid in out
    assert "train.log" not in commit.files  # only the model folder is pushed
    assert repo.branches["main"] != commit.oid  # main untouched
    # the card saved without a repo id now shows the real one
    assert 'from_hub("tester/toy")' in commit.files["README.md"].decode()

    code, out, err = colearn(
        capsys, "pull", "tester/toy", "--revision", "dev", "--local-dir", str(tmp_path / "pulled")
    )
    assert code == 0, err
    assert out.splitlines()[0] == str((tmp_path / "pulled").resolve())
    assert (tmp_path / "pulled" / "model.safetensors").is_file()
    assert max_abs_diff(make_model(seed=11), from_hub(tmp_path / "pulled")) == 0.0


def test_push_refuses_a_folder_without_a_model(hub, tmp_path, capsys):
    (tmp_path / "run").mkdir()
    code, out, err = colearn(capsys, "push", str(tmp_path / "run"), "tester/toy")
    assert code == 1
    assert "neither a model folder" in err and "model/" in err
    assert "tester/toy" not in hub.repos


def test_pull_of_a_missing_repo_is_a_clean_error(hub, capsys):
    code, out, err = colearn(capsys, "pull", "tester/absent")
    assert code == 1
    assert err.startswith("colearn pull: error: RepositoryNotFoundError")


def test_info_shows_config_card_and_files(hub, make_model, capsys):
    model = make_model()
    info = model.push_to_hub("tester/toy", results={"zero-shot/toy-pairs": {"accuracy": 0.5}})
    code, out, err = colearn(capsys, "info", "tester/toy")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"tester/toy @ {info.oid}"
    assert "method: toy-clip  format version: 1" in out
    assert "requires: colearn-plugin-toy>=0.1.0,<0.2" in out
    assert '"width": 16' in out  # the method config
    files = hub.repos["tester/toy"].commits[info.oid].files
    size = len(files["model.safetensors"])
    assert any(
        line.split()[0] == "model.safetensors" and line.split()[1] == f"{size / 1000:.1f}"
        for line in lines
    )
    assert "zero-shot" in out and "from colearn_core import from_hub" in out  # the card

    code, out, err = colearn(capsys, "info", "tester/toy", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["revision"] == info.oid
    assert data["config"]["method"] == "toy-clip"
    assert data["card"]["data"]["library_name"] == "colearn"
    assert {f["path"]: f["size"] for f in data["files"]} == {p: len(b) for p, b in files.items()}


def test_info_on_a_local_folder(run_dir, capsys):
    code, out, err = colearn(capsys, "info", str(run_dir / "model"), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["revision"] is None
    assert {f["path"] for f in data["files"]} == {"config.json", "model.safetensors", "README.md"}
    assert data["config"]["embed_dim"] == 16


# --- zoo ----------------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def zoo(hub, make_model, tmp_path):
    """A zoo folder with one entry for a sharded model pushed to the local Hub."""
    info = make_model(seed=3).push_to_hub("tester/toy", max_shard_size=1500)
    files = hub.repos["tester/toy"].commits[info.oid].files
    weights = {p: sha256(b) for p, b in files.items() if p.endswith(".safetensors")}
    assert len(weights) > 1
    folder = tmp_path / "zoo"
    folder.mkdir()
    entry = {
        "name": "toy-demo",
        "repo_id": "tester/toy",
        "revision": info.oid,
        "method": "toy-clip",
        "recipe": "recipes/toy.yaml",
        "files": weights,
        "results": {"zero-shot/toy-pairs": {"accuracy": 0.5}},
    }
    (folder / "toy-demo.yaml").write_text(yaml.safe_dump(entry))
    # the newest push changes the weights on main; the entry stays pinned to its commit
    make_model(seed=4).push_to_hub("tester/toy", max_shard_size=1500)
    return folder


def test_zoo_list(zoo, capsys):
    code, out, err = colearn(capsys, "zoo", "--zoo-dir", str(zoo), "list")
    assert code == 0, err
    name, method, where = out.split()[:3]
    assert (name, method) == ("toy-demo", "toy-clip")
    revision = yaml.safe_load((zoo / "toy-demo.yaml").read_text())["revision"]
    assert where == f"tester/toy@{revision[:12]}"
    assert "zero-shot/toy-pairs: accuracy=0.5" in out


def test_zoo_verify_checks_every_weight_file(zoo, capsys, monkeypatch):
    monkeypatch.setenv("COLEARN_ZOO", str(zoo))
    code, out, err = colearn(capsys, "zoo", "verify", "toy-demo")
    assert code == 0, err
    entry = yaml.safe_load((zoo / "toy-demo.yaml").read_text())
    for name in entry["files"]:
        assert f"{name}: ok" in out
    n = len(entry["files"])
    assert f"toy-demo: {n}/{n} weight files verified" in out


def test_zoo_verify_catches_a_wrong_hash_and_an_unlisted_shard(zoo, capsys):
    path = zoo / "toy-demo.yaml"
    entry = yaml.safe_load(path.read_text())
    first, second = sorted(entry["files"])[:2]
    entry["files"][first] = "0" * 64
    del entry["files"][second]
    path.write_text(yaml.safe_dump(entry))
    code, out, err = colearn(capsys, "zoo", "--zoo-dir", str(zoo), "verify", "toy-demo")
    assert code == 1
    assert f"{first}: SHA256 MISMATCH: expected {'0' * 64}" in out
    assert f"{second}: NOT IN ENTRY" in out


def test_zoo_rejects_malformed_entries(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text(
        yaml.safe_dump({"name": "bad", "repo_id": "a/b", "revision": "main", "files": {}})
    )
    code, out, err = colearn(capsys, "zoo", "--zoo-dir", str(tmp_path), "list")
    assert code == 1
    assert "bad.yaml: field 'revision' must be a full 40-character commit sha" in err
    code, out, err = colearn(capsys, "zoo", "--zoo-dir", str(tmp_path / "none"), "verify", "x")
    assert code == 1 and "no zoo entry 'x'" in err


def test_the_published_zoo_entries_are_well_formed():
    for entry in load_entries(default_zoo_dir()):
        assert entry.path is not None and entry.path.stem == entry.name
        if entry.recipe:
            assert (default_zoo_dir().parent / entry.recipe).is_file(), entry.recipe
