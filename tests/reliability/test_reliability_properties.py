"""Property-based tests: random valid recipes and model configs survive a round trip through
their files unchanged; random invalid keys and types are refused with the key named."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colearn_core.errors import ConfigError
from colearn_core.hub import from_hub, read_config, save_pretrained
from colearn_core.hub.config import build_config, validate_config
from colearn_core.registry import registries
from colearn_core.train.recipe import (
    DataConfig,
    MethodConfig,
    OptimConfig,
    TrainerConfig,
    load_recipe,
    parse_recipe,
    recipe_to_dict,
)

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# --- recipes ------------------------------------------------------------------------------

names = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=12)
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=16)
json_scalars = st.none() | st.booleans() | st.integers(-(10**9), 10**9) | texts
json_scalars |= st.floats(allow_nan=False, allow_infinity=False, width=64)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=8,
)
positive = st.integers(1, 10**6)
rates = st.floats(0, 10, allow_nan=False)


@st.composite
def recipes(draw: st.DrawFn) -> dict[str, Any]:
    """Plain data of a valid recipe, with every optional key present or absent at random."""

    def maybe(section: dict[str, Any], key: str, strategy: st.SearchStrategy) -> None:
        if draw(st.booleans()):
            section[key] = draw(strategy)

    method: dict[str, Any] = {"name": draw(names)}
    maybe(method, "config", st.dictionaries(names, json_values, max_size=4))
    data: dict[str, Any] = {
        "dataset": draw(names),
        "columns": draw(st.dictionaries(names, names, min_size=1, max_size=3)),
    }
    maybe(data, "builder_args", st.dictionaries(names, json_values, max_size=3))
    maybe(data, "split", names)
    maybe(data, "eval_split", st.none() | names)
    maybe(data, "label_column", st.none() | names)
    maybe(data, "num_workers", st.integers(0, 64))
    optim: dict[str, Any] = {}
    maybe(optim, "lr", rates)
    maybe(optim, "weight_decay", rates)
    maybe(optim, "betas", st.lists(st.floats(0, 0.999), min_size=2, max_size=2))
    maybe(optim, "eps", st.floats(1e-12, 1))
    maybe(optim, "warmup_steps", st.integers(0, 10**5))
    maybe(optim, "schedule", st.sampled_from(["cosine", "constant"]))
    maybe(optim, "clip_grad_norm", st.none() | st.floats(1e-6, 100))
    maybe(optim, "optimizer", names)
    accum = draw(st.integers(1, 8))
    trainer: dict[str, Any] = {"batch_size": accum * draw(st.integers(1, 512))}
    trainer[draw(st.sampled_from(["max_steps", "epochs"]))] = draw(positive)
    if accum > 1 or draw(st.booleans()):
        trainer["grad_accum_steps"] = accum
    maybe(trainer, "mixed_precision", st.sampled_from(["no", "bf16", "fp16"]))
    maybe(trainer, "seed", st.integers(-(2**31), 2**31))
    for key in ("checkpoint_every", "eval_every"):
        maybe(trainer, key, st.none() | positive)
    for key in ("keep_last", "log_every"):
        maybe(trainer, key, positive)
    maybe(trainer, "output_dir", st.none() | names)
    maybe(trainer, "trackers", st.none() | st.lists(names, max_size=2))
    recipe: dict[str, Any] = {"method": method, "data": data, "trainer": trainer}
    if optim or draw(st.booleans()):
        recipe["optim"] = optim
    if draw(st.booleans()):
        args = st.dictionaries(names.filter(lambda k: k != "task"), json_values, max_size=3)
        recipe["eval"] = [
            {"task": draw(names), **draw(args)} for _ in range(draw(st.integers(0, 2)))
        ]
    return recipe


def check_given_values(given_data: dict[str, Any], recipe_data: dict[str, Any]) -> None:
    """Every value the recipe gave is in the parsed recipe."""
    for section in ("method", "data", "optim", "trainer"):
        for key, value in given_data.get(section, {}).items():
            assert recipe_data[section][key] == value, (section, key)
    assert recipe_data["eval"] == given_data.get("eval", [])


@SETTINGS
@given(data=recipes())
def test_valid_recipes_round_trip_through_data_and_yaml(tmp_path: Path, data: dict) -> None:
    recipe = parse_recipe(data, "random.yaml")
    as_data = recipe_to_dict(recipe)
    check_given_values(data, as_data)
    assert parse_recipe(as_data, "again") == recipe
    path = tmp_path / "recipe.yaml"
    # as the trainer writes <run>/recipe.yaml
    path.write_text(yaml.safe_dump(as_data, sort_keys=False), encoding="utf-8")
    assert load_recipe(path) == recipe
    assert isinstance(recipe.optim.lr, float) and isinstance(recipe.optim.betas, tuple)


SECTIONS = {
    "method": MethodConfig,
    "data": DataConfig,
    "optim": OptimConfig,
    "trainer": TrainerConfig,
}


@SETTINGS
@given(data=recipes(), where=st.sampled_from(["", *SECTIONS]), key=names, value=json_values)
def test_an_unknown_key_is_refused_and_named(data: dict, where: str, key: str, value: Any) -> None:
    valid = {f.name for f in dataclasses.fields(SECTIONS[where])} if where else {*SECTIONS, "eval"}
    if key in valid:
        return
    if where:
        data.setdefault(where, {})[key] = value
        full = f"{where}.{key}"
    else:
        data[key] = value
        full = key
    with pytest.raises(ConfigError) as info:
        parse_recipe(data, "random.yaml")
    message = str(info.value)
    assert message.startswith("random.yaml: ") and f"unknown key '{full}'" in message


def wrong_values(tp: Any) -> st.SearchStrategy:
    """Values that are not of type ``tp`` (as the recipe checker defines types)."""
    origin = typing.get_origin(tp)
    options = typing.get_args(tp) if origin in (typing.Union, types.UnionType) else ()
    nullable = type(None) in options
    base = next((o for o in options if o is not type(None)), tp)
    base_origin = typing.get_origin(base)
    candidates: list[st.SearchStrategy] = [st.dictionaries(names, st.integers(), min_size=1)]
    if not nullable:
        candidates.append(st.none())
    if base is int:
        candidates += [texts, st.floats(allow_nan=False), st.booleans()]
    elif base is float:
        not_a_number = texts.filter(lambda s: not _parses_as_finite_float(s))
        candidates += [not_a_number, st.booleans(), st.lists(st.floats(), min_size=1)]
    elif base is str:
        candidates += [st.integers(), st.booleans(), st.lists(names, min_size=1)]
    elif base_origin is typing.Literal:
        allowed = typing.get_args(base)
        candidates += [texts.filter(lambda s: s not in allowed), st.integers()]
    elif base_origin is tuple:
        candidates += [st.lists(st.floats(0, 0.5), min_size=3, max_size=4), texts]
    elif base_origin is list:
        candidates += [texts, st.integers()]
    elif base_origin is dict:
        candidates = [st.lists(names, min_size=1), texts, st.integers()]
        if not nullable:
            candidates.append(st.none())
    else:  # a new kind of recipe field: say here what is wrong for it
        raise AssertionError(f"no wrong values known for {tp}")
    return st.one_of(candidates)


def _parses_as_finite_float(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


TYPED_FIELDS = [
    (section, f.name, typing.get_type_hints(cls)[f.name])
    for section, cls in SECTIONS.items()
    for f in dataclasses.fields(cls)
    if typing.get_type_hints(cls)[f.name] is not Any
]


@SETTINGS
@given(data=recipes(), field=st.sampled_from(TYPED_FIELDS), values=st.data())
def test_a_value_of_the_wrong_type_is_refused_with_the_key_named(
    data: dict, field: tuple[str, str, Any], values: st.DataObject
) -> None:
    section, name, tp = field
    value = values.draw(wrong_values(tp), label=f"{section}.{name}")
    data.setdefault(section, {})[name] = value
    with pytest.raises(ConfigError) as info:
        parse_recipe(data, "random.yaml")
    message = str(info.value)
    assert message.startswith("random.yaml: ") and f"key '{section}.{name}'" in message, message
    assert "expected" in message


# --- config.json --------------------------------------------------------------------------

SPECS = ["", ">=0.1.0,<0.2", "==1.2.3", ">=2", "~=0.3"]


@st.composite
def config_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid config.json document (the schema of colearn_core.hub.config)."""
    doc: dict[str, Any] = {
        "format_version": 1,
        "method": draw(names),
        "config": draw(st.dictionaries(names, json_values, max_size=4)),
    }
    optional = {
        "library_name": st.just("colearn"),
        "colearn_version": st.sampled_from(["0.1.0", "0.2.0.dev1"]),
        "modalities": st.dictionaries(
            names,
            st.fixed_dictionaries(
                {"modality": names, "config": st.dictionaries(names, json_values, max_size=2)}
            ),
            max_size=2,
        ),
        "embed_dim": st.none() | st.integers(1, 4096),
        "required_plugins": st.dictionaries(names, st.sampled_from(SPECS), max_size=3),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            doc[key] = draw(strategy)
    return doc


@SETTINGS
@given(doc=config_documents())
def test_config_documents_round_trip_through_json(tmp_path: Path, doc: dict) -> None:
    text = json.dumps(doc, indent=2)
    assert validate_config(json.loads(text), "config.json") == doc
    (tmp_path / "config.json").write_text(text, encoding="utf-8")
    assert read_config(tmp_path) == doc


CONFIG_WRONG = {
    "format_version": st.one_of(
        texts, st.booleans(), st.floats(1, 2), st.none(), st.integers(-5, 0)
    ),
    "method": st.one_of(st.integers(), st.booleans(), st.lists(names, min_size=1), st.none()),
    "config": st.one_of(st.lists(st.integers()), texts, st.integers(), st.none()),
    "required_plugins": st.one_of(st.lists(names), texts, st.integers()),
    "colearn_version": st.one_of(st.integers(), st.lists(names)),
    "modalities": st.one_of(st.lists(names), texts),
    "embed_dim": st.one_of(st.floats(0.5, 9.5).filter(lambda x: not x.is_integer()), texts),
    "library_name": st.one_of(st.integers(), st.lists(names)),
}


@SETTINGS
@given(doc=config_documents(), field=st.sampled_from(sorted(CONFIG_WRONG)), values=st.data())
def test_a_config_field_missing_or_of_the_wrong_type_is_named(
    doc: dict, field: str, values: st.DataObject
) -> None:
    if values.draw(st.booleans(), label="remove") and field in (
        "format_version",
        "method",
        "config",
    ):
        del doc[field]
        expected = f"missing field '{field}'"
    else:
        doc[field] = values.draw(CONFIG_WRONG[field], label=field)
        expected = f"field '{field}'"
    with pytest.raises(ConfigError) as info:
        validate_config(json.loads(json.dumps(doc)), "m/config.json")
    message = str(info.value)
    assert message.startswith("m/config.json: ") and expected in message, message


toy_configs = st.fixed_dictionaries(
    {},
    optional={
        "dim": st.integers(1, 6),
        "width": st.integers(1, 6),
        "embed_dim": st.integers(1, 6),
        "init_temperature": st.floats(0.01, 1.0),
        "dropout": st.floats(0.0, 0.5),
        "towers": st.sampled_from([["a", "b"], ["a"], ["b", "a"]]),
    },
)


@settings(max_examples=25, deadline=None)
@given(config=toy_configs, seed=st.integers(0, 2**16))
def test_saved_models_round_trip_config_and_weights(
    tmp_path_factory: pytest.TempPathFactory, config: dict, seed: int
) -> None:
    import torch
    from reliability_helpers import state_digest

    torch.manual_seed(seed)
    model = registries.methods.get("toy-clip").from_config(config)
    folder = save_pretrained(model, tmp_path_factory.mktemp("model") / "m")
    written = read_config(folder)
    assert written == json.loads(json.dumps(build_config(model)))
    assert written["config"] == model.config and {**model.config, **config} == model.config
    loaded = from_hub(folder)
    assert loaded.config == model.config
    assert state_digest(loaded.state_dict()) == state_digest(model.state_dict())
