"""``colearn push | pull | info | zoo``: the Hub from the command line.

This module is imported when plugins load, so it imports nothing heavy at module level.
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..cli import Command
from ..errors import ColearnError
from ..hookspecs import Register, hookimpl

__all__ = ["INFO_COMMAND", "PULL_COMMAND", "PUSH_COMMAND", "ZOO_COMMAND", "model_info"]


class HubCommandError(ColearnError):
    """A Hub request failed; the message is huggingface_hub's."""


def _hub_errors(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Report huggingface_hub's errors (repo not found, offline, ...) as one clean line."""

    @functools.wraps(run)
    def wrapper(args: argparse.Namespace) -> int:
        from huggingface_hub.errors import (
            EntryNotFoundError,
            HfHubHTTPError,
            HFValidationError,
            LocalTokenNotFoundError,
            OfflineModeIsEnabled,
        )

        try:
            return run(args)
        except (
            HfHubHTTPError,
            EntryNotFoundError,
            HFValidationError,
            LocalTokenNotFoundError,
            OfflineModeIsEnabled,
        ) as exc:
            message = " ".join(str(exc).split())
            raise HubCommandError(f"{type(exc).__name__}: {message}") from exc

    return wrapper


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"  # pragma: no cover


# --- push -----------------------------------------------------------------------------------


def _push_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "path", metavar="RUN_OR_MODEL_DIR", help="a model folder, or a run folder with model/"
    )
    p.add_argument("repo_id", metavar="REPO_ID", help="e.g. your-name/clip-tiny")
    p.add_argument("--revision", metavar="BRANCH", help="branch to commit to (created from main)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--commit-message", help="commit title")


@_hub_errors
def _push_run(args: argparse.Namespace) -> int:
    from .pretrained import push_folder, resolve_model_dir

    folder = resolve_model_dir(args.path)
    info = push_folder(
        folder,
        args.repo_id,
        revision=args.revision,
        private=True if args.private else None,
        commit_message=args.commit_message,
    )
    print(f"pushed {folder} to {args.repo_id}@{args.revision or 'main'}: commit {info.oid}")
    print(info.commit_url)
    return 0


PUSH_COMMAND = Command(
    help="upload a saved model (or a run's model/) to the Hugging Face Hub",
    add_arguments=_push_arguments,
    run=_push_run,
)


# --- pull -----------------------------------------------------------------------------------


def _pull_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("repo_id", metavar="REPO_ID")
    p.add_argument("--revision", help="branch, tag or commit sha (default: main)")
    p.add_argument("--local-dir", help="put the files here instead of only in the Hub cache")


@_hub_errors
def _pull_run(args: argparse.Namespace) -> int:
    from .config import check_plugins, read_config
    from .pretrained import download

    folder = download(args.repo_id, args.revision, local_dir=args.local_dir)
    config = read_config(folder)
    print(folder)
    try:
        check_plugins(config, str(folder / "config.json"))
    except ColearnError as exc:
        print(f"note: {exc}")
    return 0


PULL_COMMAND = Command(
    help="download a model repo into the Hub cache (or --local-dir) and print its folder",
    add_arguments=_pull_arguments,
    run=_pull_run,
)


# --- info -----------------------------------------------------------------------------------


def model_info(repo_id_or_path: str, revision: str | None = None) -> dict[str, Any]:
    """Config, model card and files (with sizes) of a local model folder or a Hub repo."""
    from huggingface_hub import HfApi, ModelCard, hf_hub_download

    from .config import validate_config
    from .pretrained import _is_local

    if _is_local(repo_id_or_path):
        folder = Path(repo_id_or_path).expanduser()
        source, sha = str(folder), None
        files = [
            {"path": p.relative_to(folder).as_posix(), "size": p.stat().st_size}
            for p in sorted(folder.rglob("*"))
            if p.is_file() and ".cache" not in p.relative_to(folder).parts
        ]

        def fetch(name: str) -> Path | None:
            return folder / name if (folder / name).is_file() else None

    else:
        api = HfApi()
        sha = api.model_info(repo_id_or_path, revision=revision).sha
        source = repo_id_or_path
        files = [
            {"path": f.path, "size": f.size}
            for f in api.list_repo_tree(repo_id_or_path, revision=sha, recursive=True)
            if hasattr(f, "size")
        ]
        names = {f["path"] for f in files}

        def fetch(name: str) -> Path | None:
            if name not in names:
                return None
            return Path(hf_hub_download(repo_id_or_path, name, revision=sha))

    config_path = fetch("config.json")
    config = None
    if config_path is not None:
        try:
            data = json.loads(config_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ColearnError(f"{source}: config.json is not valid JSON ({exc})") from None
        config = validate_config(data, f"{source}/config.json")
    card_path = fetch("README.md")
    card = None
    if card_path is not None:
        parsed = ModelCard(card_path.read_text(encoding="utf-8"), ignore_metadata_errors=True)
        card = {"data": parsed.data.to_dict(), "text": parsed.text}
    return {"source": source, "revision": sha, "config": config, "card": card, "files": files}


def _info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("repo", metavar="REPO_ID_OR_PATH")
    p.add_argument("--revision", help="branch, tag or commit sha (Hub repos)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


@_hub_errors
def _info_run(args: argparse.Namespace) -> int:
    info = model_info(args.repo, args.revision)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    at = f" @ {info['revision']}" if info["revision"] else ""
    print(f"{info['source']}{at}")
    config = info["config"]
    if config is None:
        print("config: none (no config.json: not a colearn model)")
    else:
        print(
            f"method: {config['method']}  format version: {config['format_version']}  "
            f"written by colearn {config.get('colearn_version', '?')}"
        )
        if config.get("embed_dim") is not None:
            print(f"embedding dim: {config['embed_dim']}")
        towers = config.get("modalities", {})
        if towers:
            names = [f"{k} ({v.get('modality')})" for k, v in towers.items()]
            print("modalities: " + ", ".join(names))
        plugins = config.get("required_plugins", {})
        print("requires: " + (", ".join(f"{d}{s}" for d, s in plugins.items()) or "no plugins"))
        print("config:")
        print("  " + json.dumps(config["config"], indent=2).replace("\n", "\n  "))
    print("files:")
    width = max((len(f["path"]) for f in info["files"]), default=0)
    for f in info["files"]:
        print(f"  {f['path']:<{width}}  {_size(f['size']):>9}")
    total = sum(f["size"] or 0 for f in info["files"])
    print(f"  {'total':<{width}}  {_size(total):>9}")
    if info["card"] is None:
        print("card: none (no README.md)")
    else:
        print("card:")
        meta = json.dumps(info["card"]["data"], sort_keys=True)
        print(f"  metadata: {meta}")
        print("  " + info["card"]["text"].strip().replace("\n", "\n  "))
    return 0


INFO_COMMAND = Command(
    help="show a model's config, card and files (a Hub repo or a local folder)",
    add_arguments=_info_arguments,
    run=_info_run,
)


# --- zoo ------------------------------------------------------------------------------------


def _zoo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--zoo-dir", help="folder of entries (default: $COLEARN_ZOO or hub/zoo)")
    sub = p.add_subparsers(dest="zoo_command", metavar="ACTION", required=True)
    sub.add_parser("list", help="list published checkpoints")
    verify = sub.add_parser("verify", help="download an entry's weights and check their sha256")
    verify.add_argument("name", metavar="NAME")
    verify.add_argument("--force-download", action="store_true", help="ignore the local cache")


@_hub_errors
def _zoo_run(args: argparse.Namespace) -> int:
    from . import zoo

    if args.zoo_command == "list":
        entries = zoo.load_entries(args.zoo_dir)
        if not entries:
            print(f"no zoo entries in {args.zoo_dir or zoo.default_zoo_dir()}")
        for e in entries:
            results = "; ".join(
                f"{k}: " + ", ".join(f"{m}={v}" for m, v in metrics.items())
                for k, metrics in e.results.items()
                if isinstance(metrics, dict)
            )
            print(f"{e.name}  {e.method or '?'}  {e.repo_id}@{e.revision[:12]}  {results}".rstrip())
        return 0
    entry = zoo.get_entry(args.name, args.zoo_dir)
    checks = zoo.verify(entry, force_download=args.force_download)
    for c in checks:
        if c.ok:
            status = "ok"
        elif c.expected is None:
            status = "NOT IN ENTRY (the zoo entry must list every weight file)"
        elif c.actual is None:
            status = "MISSING from the repo at this revision"
        else:
            status = f"SHA256 MISMATCH: expected {c.expected}, got {c.actual}"
        print(f"{c.path}: {status}")
    bad = sum(not c.ok for c in checks)
    print(f"{entry.name}: {len(checks) - bad}/{len(checks)} weight files verified")
    return 1 if bad else 0


ZOO_COMMAND = Command(
    help="list the model zoo (hub/zoo) or verify an entry's weight hashes",
    add_arguments=_zoo_arguments,
    run=_zoo_run,
)


@hookimpl
def register_commands(register: Register) -> None:
    register("push", PUSH_COMMAND)
    register("pull", PULL_COMMAND)
    register("info", INFO_COMMAND)
    register("zoo", ZOO_COMMAND)
