"""colearn embed: the Python API against the model's own embed, files on disk, CLI errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from core_cli_helpers import run_colearn
from safetensors import safe_open

from colearn_core import ConfigError, InputError, registries
from colearn_core.embed import embed_inputs, save_embeddings


@pytest.fixture
def toy():
    torch.manual_seed(0)
    return registries.methods.get("toy-clip").from_config({"dim": 8}).eval()


def test_embeddings_equal_the_models_own(toy):
    samples = [np.linspace(i, i + 1, 8).tolist() for i in range(5)]
    got = embed_inputs(toy, "a", samples, batch_size=2)  # three batches
    with torch.no_grad():
        want = toy.embed({"a": {"values": torch.tensor(samples, dtype=torch.float32)}})["a"]
    assert got.shape == (5, 16)
    torch.testing.assert_close(got, want)


def test_bad_tower_and_bad_input_are_named(toy):
    with pytest.raises(ConfigError, match="no 'image' tower; it has: a, b"):
        embed_inputs(toy, "image", [[0.0] * 8])
    with pytest.raises(InputError, match="nothing to embed"):
        embed_inputs(toy, "a", [])
    with pytest.raises(Exception, match="expected a vector of length 8"):
        embed_inputs(toy, "a", [[0.0] * 8, [1.0] * 3])


def test_files_on_disk(tmp_path):
    emb = torch.arange(6.0).reshape(3, 2)
    out = save_embeddings(emb, tmp_path / "e.safetensors", names=["x", "y", "z"], modality="a")
    with safe_open(str(out), "pt") as f:
        assert torch.equal(f.get_tensor("embeddings"), emb)
        assert json.loads(f.metadata()["inputs"]) == ["x", "y", "z"]
    npy = save_embeddings(emb, tmp_path / "e.npy", names=["x", "y", "z"], modality="a")
    np.testing.assert_array_equal(np.load(npy, allow_pickle=False), emb.numpy())
    with pytest.raises(ConfigError, match=r"\.safetensors or \.npy"):
        save_embeddings(emb, tmp_path / "e.pt", names=["x"] * 3, modality="a")


def test_cli_names_the_missing_tower(toy, tmp_path):
    toy.save_pretrained(tmp_path / "model")
    out = tmp_path / "o.npy"
    args = ["--modality", "image", "--out", str(out), str(tmp_path / "model"), "x.png"]
    result = run_colearn("embed", *args)
    assert result.returncode == 1
    assert "'image'" in result.stderr and "tower" in result.stderr, result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["embed", "--modality", "a", "--out", "o.npy", "MODEL", "x", "y"],
        ["embed", "MODEL", "--modality", "a", "--out", "o.npy", "x", "y"],
        ["embed", "MODEL", "x", "--modality", "a", "y", "--out", "o.npy"],
    ],
)
def test_cli_inputs_may_follow_the_options(argv):
    from colearn_core.cli import build_parser, parse_args

    args = parse_args(build_parser(), argv)
    assert (args.model, args.modality, args.out, args.inputs) == ("MODEL", "a", "o.npy", ["x", "y"])


def test_cli_unknown_options_still_fail(capsys):
    from colearn_core.cli import build_parser, parse_args

    with pytest.raises(SystemExit) as exc:
        parse_args(build_parser(), ["embed", "MODEL", "--modality", "a", "--out", "o", "--bogus"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a command without an intermixed positional
        parse_args(build_parser(), ["plugins", "stray"])
