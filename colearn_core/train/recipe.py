"""Training recipes: a YAML file validated into typed dataclasses.

A recipe has five sections (see ``hub/recipes/toy.yaml``)::

    method:  {name: clip, config: {...}}                 # a registered method and its config
    data:    {dataset: ..., columns: {image: img, text: caption}, ...}
    optim:   {lr: 5.0e-4, weight_decay: 0.1, warmup_steps: 100, ...}
    trainer: {max_steps: 1000, batch_size: 256, ...}
    eval:    [{task: zero-shot, ...task arguments}]

Every key is checked against the dataclasses below: an unknown key, a wrong type or a missing
required key is a :class:`~colearn_core.errors.ConfigError` naming the key, the file and the
expected type. ``--set a.b=value`` overrides (values parsed as YAML) are applied before checking.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..errors import ConfigError

__all__ = [
    "DataConfig",
    "EvalConfig",
    "MethodConfig",
    "OptimConfig",
    "Recipe",
    "TrainerConfig",
    "apply_overrides",
    "load_recipe",
    "parse_recipe",
    "recipe_to_dict",
]


@dataclass
class MethodConfig:
    """``name``: a registered method; ``config``: its JSON-serialisable config."""

    name: str
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Where the examples come from and which column feeds which modality (tower).

    ``dataset``: a builder registered by a plugin (``registries.datasets``), a local folder
    (``datasets.load_from_disk`` or ``datasets.load_dataset``) or a Hub dataset id;
    ``builder_args`` go to the builder / ``load_dataset``. ``columns`` maps each of the model's
    modalities (towers) to a column; ``label_column`` becomes ``batch["label"]``;
    ``eval_columns`` are columns the eval tasks read as they are, one list per column in
    ``batch["columns"]`` (e.g. a question type for accuracy per type); training batches do not
    carry them.
    """

    dataset: str
    columns: dict[str, str]
    builder_args: dict[str, Any] = field(default_factory=dict)
    split: str = "train"
    eval_split: str | None = None
    label_column: str | None = None
    eval_columns: list[str] = field(default_factory=list)
    num_workers: int = 0


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule (linear warmup, then cosine decay or constant)."""

    lr: float = 1.0e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1.0e-8
    warmup_steps: int = 0
    schedule: Literal["cosine", "constant"] = "cosine"
    clip_grad_norm: float | None = None
    optimizer: str = "adamw"


@dataclass
class TrainerConfig:
    """How long, how big and where. ``batch_size`` is global: summed over processes and
    accumulated micro-batches (each process sees ``batch_size / processes / grad_accum_steps``
    examples per micro-batch). Exactly one of ``max_steps`` / ``epochs``. ``trackers``: accelerate
    tracker names; None picks tensorboard when it is installed."""

    batch_size: int
    max_steps: int | None = None
    epochs: int | None = None
    grad_accum_steps: int = 1
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    seed: int = 0
    checkpoint_every: int | None = None
    keep_last: int = 3
    eval_every: int | None = None
    log_every: int = 10
    output_dir: str | None = None
    trackers: list[str] | None = None


@dataclass
class EvalConfig:
    """One evaluation: a registered task and the keyword arguments its constructor takes."""

    task: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class Recipe:
    """A whole training run. ``source`` names where it came from, for error messages."""

    method: MethodConfig
    data: DataConfig
    trainer: TrainerConfig
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: list[EvalConfig] = field(default_factory=list)
    source: str = field(default="<recipe>", compare=False)


# --- type checking --------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is Any:
        return "any value"
    if tp is type(None):
        return "null"
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is tuple:
        args = typing.get_args(tp)
        return f"a list of {len(args)} {_type_name(args[0])}"
    if origin is dict:
        return f"a mapping of {_type_name(typing.get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "int", float: "float", str: "str", bool: "bool"}.get(tp, str(tp))


def _got(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if value is not None else "null"


class _Checker:
    """Validates plain YAML data against the recipe dataclasses, collecting the key path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: key '{key}': {message}")

    def value(self, key: str, tp: Any, value: Any) -> Any:
        origin = typing.get_origin(tp)
        if tp is Any:
            return value
        if origin in (typing.Union, types.UnionType):
            options = typing.get_args(tp)
            if value is None and type(None) in options:
                return None
            errors = []
            for option in options:
                if option is type(None):
                    continue
                try:
                    return self.value(key, option, value)
                except ConfigError as exc:
                    errors.append(exc)
            raise self.fail(key, f"expected {_type_name(tp)}, got {_got(value)}")
        if origin is Literal:
            if value not in typing.get_args(tp):
                raise self.fail(key, f"expected {_type_name(tp)}, got {_got(value)}")
            return value
        if dataclasses.is_dataclass(tp):
            return self.dataclass(key, tp, value)
        if origin is list:
            if not isinstance(value, list):
                raise self.fail(key, f"expected {_type_name(tp)}, got {_got(value)}")
            (item,) = typing.get_args(tp)
            return [self.value(f"{key}.{i}", item, v) for i, v in enumerate(value)]
        if origin is tuple:
            items = typing.get_args(tp)
            if not isinstance(value, (list, tuple)) or len(value) != len(items):
                raise self.fail(key, f"expected {_type_name(tp)}, got {_got(value)}")
            pairs = enumerate(zip(items, value))
            return tuple(self.value(f"{key}.{i}", t, v) for i, (t, v) in pairs)
        if origin is dict:
            _, item = typing.get_args(tp)
            if not isinstance(value, Mapping):
                raise self.fail(key, f"expected {_type_name(tp)}, got {_got(value)}")
            for k in value:
                if not isinstance(k, str):
                    raise self.fail(key, f"keys must be strings, got {_got(k)}")
            return {k: self.value(f"{key}.{k}", item, v) for k, v in value.items()}
        return self.scalar(key, tp, value)

    def scalar(self, key: str, tp: type, value: Any) -> Any:
        if tp is bool:
            if isinstance(value, bool):
                return value
        elif tp is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif tp is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            # PyYAML reads 1e-3 (no dot) as a string; accept what float() accepts.
            if isinstance(value, str):
                try:
                    number = float(value)
                except ValueError:
                    pass
                else:
                    if math.isfinite(number):
                        return number
        elif tp is str:
            if isinstance(value, str):
                return value
        else:  # pragma: no cover - only the types above appear in the dataclasses
            raise TypeError(tp)
        raise self.fail(key, f"expected {_type_name(tp)}, got {_got(value)}")

    def dataclass(self, key: str, cls: type, value: Any) -> Any:
        where = f"section '{key}'" if key else "the recipe"
        if not isinstance(value, Mapping):
            raise ConfigError(f"{self.source}: {where} must be a mapping, got {_got(value)}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
        for name in value:
            if name not in fields:
                full = f"{key}.{name}" if key else str(name)
                close = difflib.get_close_matches(str(name), list(fields), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ConfigError(
                    f"{self.source}: unknown key '{full}'{hint}; valid keys in {where}: "
                    + ", ".join(fields)
                )
        kwargs = {}
        for name, f in fields.items():
            full = f"{key}.{name}" if key else name
            if name in value:
                kwargs[name] = self.value(full, hints[name], value[name])
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(
                    f"{self.source}: missing required key '{full}' (expected "
                    f"{_type_name(hints[name])})"
                )
        return cls(**kwargs)


def _eval_entries(source: str, raw: Any) -> list[dict[str, Any]]:
    """``[{task: name, **args}]`` -> ``[{task: name, args: {...}}]`` for the checker."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError(
            f"{source}: key 'eval': expected a list of {{task: <name>, ...arguments}}, "
            f"got {_got(raw)}"
        )
    out = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, Mapping) or "task" not in entry:
            raise ConfigError(
                f"{source}: key 'eval.{i}': expected a mapping with a 'task' key (str), "
                f"got {_got(entry)}"
            )
        args = {k: v for k, v in entry.items() if k != "task"}
        out.append({"task": entry["task"], "args": args})
    return out


def _check_semantics(recipe: Recipe) -> None:
    source, t, o = recipe.source, recipe.trainer, recipe.optim

    def positive(key: str, value: float | None, allow_zero: bool = False) -> None:
        if value is not None and (value < 0 or (value == 0 and not allow_zero)):
            bound = ">= 0" if allow_zero else "> 0"
            raise ConfigError(f"{source}: key '{key}': must be {bound}, got {value}")

    if (t.max_steps is None) == (t.epochs is None):
        raise ConfigError(
            f"{source}: set exactly one of 'trainer.max_steps' and 'trainer.epochs' (int), "
            f"got max_steps={t.max_steps}, epochs={t.epochs}"
        )
    for key in ("batch_size", "max_steps", "epochs", "grad_accum_steps", "checkpoint_every"):
        positive(f"trainer.{key}", getattr(t, key))
    for key in ("keep_last", "eval_every", "log_every"):
        positive(f"trainer.{key}", getattr(t, key))
    positive("data.num_workers", recipe.data.num_workers, allow_zero=True)
    positive("optim.lr", o.lr, allow_zero=True)
    positive("optim.weight_decay", o.weight_decay, allow_zero=True)
    positive("optim.warmup_steps", o.warmup_steps, allow_zero=True)
    positive("optim.clip_grad_norm", o.clip_grad_norm)
    positive("optim.eps", o.eps)
    for i, beta in enumerate(o.betas):
        if not 0 <= beta < 1:
            raise ConfigError(f"{source}: key 'optim.betas.{i}': must be in [0, 1), got {beta}")
    if t.batch_size % t.grad_accum_steps:
        raise ConfigError(
            f"{source}: 'trainer.batch_size' ({t.batch_size}) must be a multiple of "
            f"'trainer.grad_accum_steps' ({t.grad_accum_steps})"
        )
    if not recipe.data.columns:
        raise ConfigError(
            f"{source}: key 'data.columns': map at least one modality to a column, "
            "e.g. {image: img, text: caption}"
        )


def parse_recipe(data: Any, source: str = "<recipe>") -> Recipe:
    """Validate plain data (as read from YAML) into a :class:`Recipe`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a recipe must be a mapping of sections, got {_got(data)}")
    data = dict(data)
    if "eval" in data:
        data["eval"] = _eval_entries(source, data["eval"])
    recipe = _Checker(source).dataclass("", Recipe, data)
    recipe.source = source
    _check_semantics(recipe)
    return recipe


# --- overrides ------------------------------------------------------------------------------


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` strings to nested recipe data (values parsed as YAML).

    Missing intermediate mappings are created; a list is indexed by a number (``eval.0.k``).
    Returns a new dict; validation happens afterwards in :func:`parse_recipe`.
    """
    import copy

    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set optim.lr=3.0e-4")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML: {exc}") from None
        parts = key.strip().split(".")
        node: Any = data
        for depth, part in enumerate(parts[:-1]):
            where = ".".join(parts[: depth + 1])
            if isinstance(node, list):
                node = node[_index(item, where, part, node)]
            elif isinstance(node, dict):
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
            else:
                raise ConfigError(f"--set {item!r}: '{where}' is not a mapping")
            if not isinstance(node, (dict, list)):
                raise ConfigError(f"--set {item!r}: '{where}' is a value, not a mapping")
        last = parts[-1]
        if isinstance(node, list):
            node[_index(item, key, last, node)] = value
        else:
            node[last] = value
    return data


def _index(item: str, where: str, part: str, node: list[Any]) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--set {item!r}: '{where}' must index the list (0..{len(node) - 1})")
    return int(part)


# --- files ----------------------------------------------------------------------------------


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """Read a YAML recipe, apply ``--set`` overrides and validate it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {path} does not exist (or is not a file)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        raise ConfigError(f"{path}: the recipe is empty")
    source = str(path)
    if overrides:
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a recipe must be a mapping of sections")
        data = apply_overrides(data, overrides)
        source += " (with --set " + " ".join(overrides) + ")"
    return parse_recipe(data, source)


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """The recipe as plain data in the YAML layout (eval args flattened back)."""
    out = {
        "method": dataclasses.asdict(recipe.method),
        "data": dataclasses.asdict(recipe.data),
        "optim": dataclasses.asdict(recipe.optim),
        "trainer": dataclasses.asdict(recipe.trainer),
        "eval": [{"task": e.task, **e.args} for e in recipe.eval],
    }
    out["optim"]["betas"] = list(recipe.optim.betas)
    return out
