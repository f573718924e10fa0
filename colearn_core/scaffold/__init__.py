"""``colearn new-plugin``: write a ready-to-install plugin distribution from a template.

The templates live in ``templates/`` next to this file (shipped in the wheel). Each ``*.tmpl``
file is rendered by replacing ``{{key}}`` placeholders; ``__module__`` and ``__slug__`` in a
path become the package name and the test-file prefix. The result installs with pip and its
tests pass before any edit, so a plugin author starts from green and changes one thing at a time.
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from .. import __version__
from ..errors import ConfigError
from ..hookspecs import Register, hookimpl

__all__ = ["KINDS", "new_plugin", "plugin_names", "validate_name"]

#: What a generated plugin brings: a modality with its encoder, or a method (training recipe).
KINDS: tuple[str, ...] = ("modality", "method")

#: Longer names would push generated lines past 100 characters.
MAX_NAME_LENGTH = 24
_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_PREFIX = "colearn-plugin-"
_DESCRIPTIONS = {
    "modality": "colearn modality plugin: the {name} modality (preprocessing) and a conv encoder",
    "method": "colearn method plugin: {name}, a two-tower contrastive method",
}


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid plugin name, else raise :class:`ConfigError`."""
    if name.startswith(_PREFIX):
        raise ConfigError(
            f"plugin name {name!r}: give the short name without the {_PREFIX!r} prefix "
            f"(e.g. `colearn new-plugin {name[len(_PREFIX) :] or 'imu'}`)"
        )
    if len(name) > MAX_NAME_LENGTH or not _NAME.match(name):
        raise ConfigError(
            f"invalid plugin name {name!r}: use lowercase letters, digits and single hyphens, "
            f"starting with a letter, at most {MAX_NAME_LENGTH} characters "
            "(e.g. 'imu' or 'eeg-signal')"
        )
    return name


def plugin_names(name: str) -> dict[str, str]:
    """The names derived from a plugin name, as used in the templates.

    ``name``: registry name (``eeg-signal``); ``dist``: distribution
    (``colearn-plugin-eeg-signal``); ``module``: package (``colearn_plugin_eeg_signal``);
    ``slug``: test-file suffix (``eeg_signal``); ``Class``: class-name prefix (``EegSignal``).
    """
    validate_name(name)
    slug = name.replace("-", "_")
    return {
        "name": name,
        "dist": _PREFIX + name,
        "module": "colearn_plugin_" + slug,
        "slug": slug,
        "Class": "".join(part.capitalize() for part in name.split("-")),
        "core_version": ".".join(__version__.split(".")[:2]),
    }


def _render(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def _walk(node: Traversable, rel: tuple[str, ...] = ()):
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name == "__pycache__":
            continue
        if child.is_dir():
            yield from _walk(child, (*rel, child.name))
        elif child.name.endswith(".tmpl"):
            yield (*rel, child.name[: -len(".tmpl")]), child


def new_plugin(name: str, kind: str = "modality", directory: str | Path = ".") -> Path:
    """Write the distribution ``colearn-plugin-NAME/`` into ``directory``; return its path.

    Refuses to overwrite an existing folder. Files are written to a temporary folder first and
    moved into place at the end, so a failure leaves nothing half-written.
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown plugin kind {kind!r}: choose one of {', '.join(KINDS)}")
    values = plugin_names(name)
    values["kind"] = kind
    values["description"] = _DESCRIPTIONS[kind].format(name=name)
    parent = Path(directory)
    target = parent / values["dist"]
    if target.exists():
        raise ConfigError(f"{target} already exists; remove it or choose another folder with --dir")
    parent.mkdir(parents=True, exist_ok=True)
    root = resources.files(__name__) / "templates"
    staging = Path(tempfile.mkdtemp(prefix=f".{values['dist']}-", dir=parent))
    try:
        for source_root in (root / "common", root / kind):
            for rel, source in _walk(source_root):
                parts = [
                    part.replace("__module__", values["module"]).replace("__slug__", values["slug"])
                    for part in rel
                ]
                out = staging.joinpath(*parts)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(_render(source.read_text(encoding="utf-8"), values), "utf-8")
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="short plugin name, e.g. 'imu' (makes colearn-plugin-imu)")
    p.add_argument(
        "--kind",
        choices=KINDS,
        default="modality",
        help="modality: a modality + encoder; method: a two-tower contrastive method "
        "(default: modality)",
    )
    p.add_argument(
        "--dir", default=".", help="folder to create the distribution in (default: current)"
    )


def _run(args: argparse.Namespace) -> int:
    path = new_plugin(args.name, args.kind, args.dir)
    dist = path.name
    print(f"created {path}")
    print("next steps:")
    print(f"  pip install -e '{path}[test]'")
    print(f"  pytest {path / 'tests'}")
    print(f"  colearn plugins   # lists {dist} and what it registered")
    return 0


@hookimpl
def register_commands(register: Register) -> None:
    from ..cli import Command

    register(
        "new-plugin",
        Command(
            help="create a new plugin distribution (modality or method) from a template",
            add_arguments=_arguments,
            run=_run,
            description=(
                "Write colearn-plugin-NAME/: pyproject.toml with the `colearn` entry point,\n"
                "the package with hook implementations and small working defaults, tests\n"
                "that run colearn_core.testing's contracts, and a README explaining each file.\n"
                "Install it with `pip install -e 'colearn-plugin-NAME[test]'`; its tests pass\n"
                "before any edit."
            ),
        ),
    )
