"""The model zoo: one YAML entry per published checkpoint in ``hub/zoo/<name>.yaml``.

An entry pins a repo at a commit and the sha256 of every weight file there::

    name: clip-vit-tiny-fmnist          # = the file name without .yaml
    repo_id: colearn/clip-vit-tiny-fmnist
    revision: 0123456789abcdef0123456789abcdef01234567   # a full commit sha
    method: clip
    recipe: recipes/clip-vit-tiny-fmnist.yaml           # relative to hub/, optional
    card: cards/clip-vit-tiny-fmnist.md                 # relative to hub/, optional
    files:
      model.safetensors: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    results:
      zero-shot/fashion_mnist: {accuracy: 0.71}

The zoo folder is ``$COLEARN_ZOO`` if set, else ``hub/zoo`` of the colearn source checkout.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

__all__ = ["ZooEntry", "FileCheck", "default_zoo_dir", "get_entry", "load_entries", "verify"]

_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
WEIGHT_SUFFIXES = (".safetensors",)


@dataclass(frozen=True)
class ZooEntry:
    """One published checkpoint."""

    name: str
    repo_id: str
    revision: str
    files: dict[str, str]
    method: str = ""
    recipe: str | None = None
    card: str | None = None
    results: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


@dataclass(frozen=True)
class FileCheck:
    """The outcome of checking one weight file of an entry."""

    path: str
    expected: str | None
    actual: str | None

    @property
    def ok(self) -> bool:
        return self.expected is not None and self.expected == self.actual


def default_zoo_dir() -> Path:
    """``$COLEARN_ZOO``, else ``hub/zoo`` next to the colearn_core package (source checkout)."""
    env = os.environ.get("COLEARN_ZOO")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "hub" / "zoo"


def _parse(path: Path) -> ZooEntry:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of fields, got {type(data).__name__}")

    def field_(name: str, kind: type, required: bool = True) -> Any:
        if name not in data:
            if required:
                raise ConfigError(f"{path}: missing field {name!r}")
            return None
        if not isinstance(data[name], kind):
            raise ConfigError(
                f"{path}: field {name!r} must be a {kind.__name__}, got {data[name]!r:.80}"
            )
        return data[name]

    name = field_("name", str)
    if name != path.stem:
        raise ConfigError(f"{path}: field 'name' is {name!r} but the file is named {path.name}")
    revision = field_("revision", str)
    if not _SHA1.match(revision):
        raise ConfigError(
            f"{path}: field 'revision' must be a full 40-character commit sha (branches move), "
            f"got {revision!r}"
        )
    files = field_("files", dict)
    if not files:
        raise ConfigError(f"{path}: field 'files' lists no weight file")
    for file, digest in files.items():
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise ConfigError(
                f"{path}: field 'files' entry {file!r} must be a sha256 hex digest, got {digest!r}"
            )
    return ZooEntry(
        name=name,
        repo_id=field_("repo_id", str),
        revision=revision,
        files=dict(files),
        method=field_("method", str, required=False) or "",
        recipe=field_("recipe", str, required=False),
        card=field_("card", str, required=False),
        results=field_("results", dict, required=False) or {},
        path=path,
    )


def load_entries(zoo_dir: str | Path | None = None) -> list[ZooEntry]:
    """All entries of the zoo, sorted by name; a malformed entry is a ConfigError."""
    folder = Path(zoo_dir) if zoo_dir is not None else default_zoo_dir()
    if not folder.is_dir():
        return []
    return [_parse(p) for p in sorted(folder.glob("*.yaml"))]


def get_entry(name: str, zoo_dir: str | Path | None = None) -> ZooEntry:
    """The entry called ``name``."""
    entries = {e.name: e for e in load_entries(zoo_dir)}
    if name not in entries:
        known = ", ".join(entries) or "none"
        folder = zoo_dir if zoo_dir is not None else default_zoo_dir()
        raise ConfigError(f"no zoo entry {name!r} in {folder}; entries: {known}")
    return entries[name]


def _sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(
    entry: ZooEntry,
    *,
    token: str | bool | None = None,
    endpoint: str | None = None,
    cache_dir: str | Path | None = None,
    force_download: bool = False,
) -> list[FileCheck]:
    """Download every weight file of ``entry`` at its revision and compare sha256 digests.

    A weight file in the repo that the entry does not list is reported with ``expected=None``.
    """
    from huggingface_hub import HfApi, hf_hub_download

    api = HfApi(token=token, endpoint=endpoint)
    in_repo = {
        f.path
        for f in api.list_repo_tree(entry.repo_id, revision=entry.revision, recursive=True)
        if f.path.endswith(WEIGHT_SUFFIXES) and hasattr(f, "size")
    }
    checks = []
    for path in sorted(set(entry.files) | in_repo):
        actual = None
        if path in in_repo:
            local = hf_hub_download(
                entry.repo_id,
                path,
                revision=entry.revision,
                token=token,
                endpoint=endpoint,
                cache_dir=cache_dir,
                force_download=force_download,
            )
            actual = _sha256(local)
        checks.append(FileCheck(path, entry.files.get(path), actual))
    return checks
