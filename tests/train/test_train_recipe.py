"""Recipes: typed validation with errors naming key, file and expected type; --set overrides."""

from __future__ import annotations

import pytest
import yaml
from train_helpers import BASE

from colearn_core.errors import ConfigError
from colearn_core.train.recipe import apply_overrides, load_recipe, parse_recipe, recipe_to_dict


def write(tmp_path, data, name="r.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_toy_recipe_in_the_hub_folder_is_valid():
    recipe = load_recipe("hub/recipes/toy.yaml")
    assert recipe.method.name == "toy-clip"
    assert recipe.optim.betas == (0.9, 0.98)
    assert recipe.optim.lr == 3.0e-3 and isinstance(recipe.optim.lr, float)
    assert recipe.eval[0].task == "toy-retrieval" and recipe.eval[0].args == {
        "query": "a",
        "target": "b",
    }


def test_defaults_and_round_trip(tmp_path):
    recipe = load_recipe(write(tmp_path, BASE))
    assert recipe.trainer.grad_accum_steps == 1
    assert recipe.optim.schedule == "cosine" and recipe.optim.optimizer == "adamw"
    assert recipe.data.split == "train" and recipe.eval == []
    again = parse_recipe(recipe_to_dict(recipe), "again")
    assert again == recipe


def test_unknown_key_names_key_file_and_valid_keys(tmp_path):
    path = write(tmp_path, apply_overrides(BASE, ["optim.lrr=0.1"]))
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    message = str(err.value)
    assert str(path) in message
    assert "unknown key 'optim.lrr'" in message
    assert "did you mean 'lr'" in message
    assert "weight_decay" in message  # the valid keys are listed


def test_unknown_top_level_section(tmp_path):
    path = write(tmp_path, {**BASE, "trainr": {}})
    with pytest.raises(ConfigError, match=r"unknown key 'trainr' \(did you mean 'trainer'\?\)"):
        load_recipe(path)


@pytest.mark.parametrize(
    ("setting", "key", "expected"),
    [
        ("trainer.batch_size=abc", "trainer.batch_size", "expected int, got str 'abc'"),
        ("trainer.batch_size=1.5", "trainer.batch_size", "expected int, got float 1.5"),
        ("trainer.batch_size=true", "trainer.batch_size", "expected int, got bool True"),
        ("optim.lr=fast", "optim.lr", "expected float, got str 'fast'"),
        ("optim.betas=[0.9]", "optim.betas", "expected a list of 2 float"),
        ("optim.schedule=linear", "optim.schedule", "expected 'cosine' or 'constant'"),
        ("trainer.max_steps=[1]", "trainer.max_steps", "expected int or null"),
        ("data.columns=[a, b]", "data.columns", "expected a mapping of str"),
        ("data.columns.a=3", "data.columns.a", "expected str, got int 3"),
        ("trainer.mixed_precision=fp8", "trainer.mixed_precision", "'no' or 'bf16' or 'fp16'"),
    ],
)
def test_wrong_type_names_key_file_and_expected_type(tmp_path, setting, key, expected):
    path = write(tmp_path, apply_overrides(BASE, [setting]))
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    message = str(err.value)
    assert str(path) in message and f"key '{key}'" in message and expected in message


def test_missing_required_key(tmp_path):
    data = apply_overrides(BASE, [])
    del data["trainer"]["batch_size"]
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    assert f"{path}: missing required key 'trainer.batch_size' (expected int)" in str(err.value)
    del data["method"]
    with pytest.raises(ConfigError, match="missing required key 'method'"):
        load_recipe(write(tmp_path, data))


def test_section_of_the_wrong_kind(tmp_path):
    with pytest.raises(ConfigError, match="section 'optim' must be a mapping, got list"):
        load_recipe(write(tmp_path, {**BASE, "optim": [1, 2]}))
    with pytest.raises(ConfigError, match="a recipe must be a mapping"):
        load_recipe(write(tmp_path, "- just\n- a list\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(write(tmp_path, "method: {name: [\n"))


def test_semantic_checks(tmp_path):
    cases = {
        "trainer.epochs=2": "exactly one of 'trainer.max_steps' and 'trainer.epochs'",
        "trainer.max_steps=null": "exactly one of",
        "trainer.batch_size=0": "key 'trainer.batch_size': must be > 0",
        "optim.lr=-1.0": "key 'optim.lr': must be >= 0",
        "optim.betas=[0.9, 1.0]": "key 'optim.betas.1': must be in [0, 1)",
        "trainer.grad_accum_steps=3": "must be a multiple of 'trainer.grad_accum_steps' (3)",
        "data.columns={}": "map at least one modality",
    }
    for setting, expected in cases.items():
        with pytest.raises(ConfigError) as err:
            load_recipe(write(tmp_path, apply_overrides(BASE, [setting])))
        assert expected in str(err.value), setting


def test_eval_entries(tmp_path):
    recipe = load_recipe(write(tmp_path, {**BASE, "eval": [{"task": "t", "k": 5}]}))
    assert recipe.eval[0].task == "t" and recipe.eval[0].args == {"k": 5}
    with pytest.raises(ConfigError, match=r"key 'eval.0': expected a mapping with a 'task' key"):
        load_recipe(write(tmp_path, {**BASE, "eval": [{"k": 5}]}))
    with pytest.raises(ConfigError, match=r"key 'eval.0.task': expected str"):
        load_recipe(write(tmp_path, {**BASE, "eval": [{"task": 3}]}))


def test_set_overrides_are_typed_nested_and_named_in_errors(tmp_path):
    path = write(tmp_path, BASE)
    recipe = load_recipe(
        path,
        [
            "optim.lr=1e-4",  # PyYAML reads this as a string; floats accept it
            "trainer.max_steps=9",
            "method.config.dropout=0.5",  # a new key inside the free-form method config
            "trainer.trackers=[]",
            "data.eval_split=test",
        ],
    )
    assert recipe.optim.lr == 1e-4
    assert recipe.trainer.max_steps == 9
    assert recipe.method.config["dropout"] == 0.5 and recipe.method.config["width"] == 16
    assert recipe.trainer.trackers == [] and recipe.data.eval_split == "test"
    with pytest.raises(ConfigError) as err:
        load_recipe(path, ["trainer.max_step=9"])
    assert "--set trainer.max_step=9" in str(err.value)
    assert "unknown key 'trainer.max_step'" in str(err.value)
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_recipe(path, ["optim.lr"])
    with pytest.raises(ConfigError, match="'trainer.max_steps' is a value, not a mapping"):
        load_recipe(path, ["trainer.max_steps.x=1"])


def test_set_indexes_lists():
    data = {"eval": [{"task": "a"}, {"task": "b"}]}
    assert apply_overrides(data, ["eval.1.k=3"])["eval"][1] == {"task": "b", "k": 3}
    assert data["eval"][1] == {"task": "b"}  # the input is not modified
    with pytest.raises(ConfigError, match="must index the list"):
        apply_overrides(data, ["eval.5.k=3"])


def test_missing_recipe_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")
