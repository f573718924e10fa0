"""Every way a saved model can be wrong gives a clear error naming the file and the problem."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from huggingface_hub import HfApi
from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError
from safetensors.torch import load_file, save_file

from colearn_core import ConfigError
from colearn_core.hub import WeightsError, from_hub, save_pretrained


@pytest.fixture
def saved(tmp_path, make_model):
    """A saved toy model folder."""
    return save_pretrained(make_model(), tmp_path / "m")


def edit_config(folder, **changes):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            del config[key]
        else:
            config[key] = value
    path.write_text(json.dumps(config))


# --- config.json ----------------------------------------------------------------------------


def test_missing_config(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no config.json in .*empty"):
        from_hub(tmp_path / "empty")


def test_config_that_is_not_json(saved):
    (saved / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="config.json: not valid JSON"):
        from_hub(saved)


@pytest.mark.parametrize("field", ["format_version", "method", "config"])
def test_missing_field(saved, field):
    edit_config(saved, **{field: None})
    with pytest.raises(ConfigError, match=f"config.json: missing field '{field}'"):
        from_hub(saved)


@pytest.mark.parametrize(
    "field,value,expected",
    [
        ("format_version", "1", "an integer"),
        ("format_version", True, "an integer"),
        ("method", 3, "a method name"),
        ("config", [1, 2], "an object"),
        ("required_plugins", ["colearn-plugin-toy"], "an object"),
        ("embed_dim", 1.5, "an integer or null"),
    ],
)
def test_wrong_type(saved, field, value, expected):
    edit_config(saved, **{field: value})
    with pytest.raises(ConfigError, match=f"config.json: field '{field}' must be {expected}"):
        from_hub(saved)


def test_newer_format_version_asks_for_a_newer_colearn(saved):
    edit_config(saved, format_version=2)
    with pytest.raises(ConfigError) as info:
        from_hub(saved)
    message = str(info.value)
    assert "config.json" in message and "'format_version' is 2" in message
    assert "pip install -U colearn-core" in message


def test_missing_plugin_names_the_pip_install(saved):
    edit_config(
        saved,
        method="nope-clip",
        required_plugins={
            "colearn-plugin-toy": ">=0.1.0,<0.2",
            "colearn-plugin-nope": ">=0.3,<0.4",
        },
    )
    with pytest.raises(ConfigError) as info:
        from_hub(saved)
    message = str(info.value)
    assert "field 'required_plugins'" in message
    assert (
        "colearn-plugin-nope is not installed: pip install 'colearn-plugin-nope>=0.3,<0.4'"
        in message
    )
    assert "colearn-plugin-toy" not in message.split("needs plugins")[1]  # installed: not blamed


def test_incompatible_plugin_version(saved):
    edit_config(saved, required_plugins={"colearn-plugin-toy": ">=0.2,<0.3"})
    with pytest.raises(
        ConfigError,
        match=r"colearn-plugin-toy 0\.1\.0 is installed but the model needs >=0\.2,<0\.3",
    ):
        from_hub(saved)


def test_unknown_method(saved):
    edit_config(saved, method="toy-clap", required_plugins={})
    with pytest.raises(ConfigError) as info:
        from_hub(saved)
    message = str(info.value)
    assert "field 'method'" in message and "unknown method 'toy-clap'" in message
    assert "Did you mean: 'toy-clip'" in message
    assert "pip install colearn-plugin-toy-clap" in message


def test_weights_of_another_config_are_rejected(saved):
    edit_config(saved, config={"towers": ["a"], "width": 16})  # the file also has tower b
    with pytest.raises(WeightsError, match=r"unexpected keys \(5\): encoders\.b\."):
        from_hub(saved)


def test_config_the_method_cannot_build(saved):
    edit_config(saved, config={"towers": ["a"], "width": "wide"})
    with pytest.raises(
        ConfigError, match="method 'toy-clip' could not be built from field 'config'"
    ):
        from_hub(saved)


# --- weights ------------------------------------------------------------------------------


def test_pickle_only_folder_is_refused_without_unpickling(saved, tmp_path):
    (saved / "model.safetensors").unlink()
    marker = tmp_path / "unpickled"

    class Boom:  # unpickling this would create the marker file
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (saved / "pytorch_model.bin").write_bytes(pickle.dumps(Boom()))
    with pytest.raises(WeightsError) as info:
        from_hub(saved)
    message = str(info.value)
    assert "pytorch_model.bin" in message and "never unpickles" in message
    assert not marker.exists()


def test_pickle_only_hub_repo_is_refused_without_downloading_the_pickle(hub, saved):
    (saved / "model.safetensors").unlink()
    (saved / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    api = HfApi()
    api.create_repo("tester/pickled")
    api.upload_folder(repo_id="tester/pickled", folder_path=saved)
    with pytest.raises(WeightsError, match="repo 'tester/pickled' has only pickle weights"):
        from_hub("tester/pickled")
    assert not any(path.endswith(".bin") for _, path, _ in hub.requests if "/resolve/" in path)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b[: len(b) // 2], id="truncated"),
        pytest.param(lambda b: b"", id="empty"),
        pytest.param(lambda b: b[:8] + b"{garbage" + b[16:], id="corrupt-header"),
    ],
)
def test_damaged_safetensors_is_reported_by_file_name(saved, damage):
    path = saved / "model.safetensors"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(WeightsError) as info:
        from_hub(saved)
    message = str(info.value)
    assert "model.safetensors" in message and "not a valid safetensors file" in message


def test_missing_unexpected_and_mismatched_keys_are_listed(saved):
    path = saved / "model.safetensors"
    weights = load_file(path)
    del weights["projections.a.weight"]
    weights["projections.c.weight"] = torch.zeros(16, 16)
    weights["encoders.b.net.0.bias"] = torch.zeros(3)
    save_file(weights, path)
    with pytest.raises(WeightsError) as info:
        from_hub(saved)
    message = str(info.value)
    assert "missing keys (1): projections.a.weight" in message
    assert "unexpected keys (1): projections.c.weight" in message
    assert "shape mismatches (1): encoders.b.net.0.bias: file (3,) vs model (16,)" in message


def test_partial_loading_still_checks_the_towers_it_builds(saved):
    path = saved / "model.safetensors"
    weights = load_file(path)
    del weights["encoders.a.net.2.weight"]  # a tower that is loaded
    weights["encoders.z.net.0.weight"] = torch.zeros(1)  # in no tower of the full model
    save_file(weights, path)
    with pytest.raises(WeightsError) as info:
        from_hub(saved, modalities=["a"])
    message = str(info.value)
    assert "missing keys (1): encoders.a.net.2.weight" in message
    assert "unexpected keys (1): encoders.z.net.0.weight" in message
    # tower b's keys are in the file but b was not built: not reported
    assert "encoders.b" not in message


# --- Hub lookups ---------------------------------------------------------------------------


def test_unknown_repo_and_revision_raise_the_hub_errors(hub, make_model):
    with pytest.raises(RepositoryNotFoundError):
        from_hub("tester/nothing-here")
    make_model().push_to_hub("tester/toy")
    with pytest.raises(RevisionNotFoundError):
        from_hub("tester/toy", revision="no-such-branch")


def test_local_paths_and_revisions_do_not_mix(saved, tmp_path):
    with pytest.raises(ConfigError, match="is a local folder"):
        from_hub(saved, revision="main")
    with pytest.raises(ConfigError, match="no such model folder"):
        from_hub(tmp_path / "missing")
    with pytest.raises(ConfigError, match="no such model folder"):
        from_hub("./missing")
