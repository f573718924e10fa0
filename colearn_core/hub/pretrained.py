"""Save a model to a folder, load it back strictly, and move folders to and from the Hub.

A model folder holds ``config.json`` (see :mod:`.config`), ``model.safetensors`` (or shards
``model-0000i-of-0000n.safetensors`` with ``model.safetensors.index.json``), the modalities'
assets (e.g. ``tokenizer.json``) and a ``README.md`` model card. Nothing is ever unpickled.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from .. import __version__
from ..errors import ColearnError, ConfigError
from .config import CONFIG_NAME, build_config, read_config, resolve_method

__all__ = [
    "DEFAULT_MAX_SHARD_SIZE",
    "INDEX_NAME",
    "PICKLE_SUFFIXES",
    "WEIGHTS_NAME",
    "WeightsError",
    "download",
    "from_hub",
    "load_pretrained",
    "push_folder",
    "push_to_hub",
    "resolve_model_dir",
    "save_pretrained",
    "weight_files",
]

WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
DEFAULT_MAX_SHARD_SIZE: int | str = "5GB"  # as transformers: what the Hub's LFS handles well
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_LIST_LIMIT = 20


class WeightsError(ColearnError, ValueError):
    """Weight files are missing, unsafe, corrupt, or do not match the model."""


# --- saving ---------------------------------------------------------------------------------


def _state_dict_for_saving(model: nn.Module) -> dict[str, Tensor]:
    """The state dict with tensors that share storage (tied weights) cloned apart, so every
    key is stored and loading can stay strict."""
    state: dict[str, Tensor] = {}
    seen: set[tuple[Any, int]] = set()
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach()
        storage = (tensor.device, tensor.untyped_storage().data_ptr())
        if tensor.numel() and storage in seen:
            tensor = tensor.clone()
        seen.add(storage)
        state[key] = tensor.contiguous().cpu()
    return state


def _write_folder(
    model: nn.Module, folder: Path, config: dict[str, Any], *, max_shard_size: int | str, card: Any
) -> None:
    from huggingface_hub import save_torch_state_dict

    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    save_torch_state_dict(
        _state_dict_for_saving(model),
        folder,
        max_shard_size=max_shard_size,
        metadata={"format": "pt", "colearn_method": config["method"]},
    )
    model.save_assets(folder)
    if card is not None:
        card.save(folder / "README.md")


def save_pretrained(
    model: nn.Module,
    folder: str | os.PathLike[str],
    *,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    results: Mapping[str, Mapping[str, float]] | None = None,
    datasets: Sequence[str] | None = None,
    license: str | None = None,
    repo_id: str | None = None,
    card: bool = True,
) -> Path:
    """Write ``model`` to ``folder`` atomically: config, safetensors weights, assets, card.

    Everything is written to a temporary folder next to ``folder`` and renamed into place; an
    existing model folder is replaced only once the new one is complete, so a crash never leaves
    half a model. ``results`` (``{"task/dataset": {metric: value}}``), ``datasets`` and
    ``license`` go into the model card; ``max_shard_size`` (bytes or ``"5GB"``) splits the
    weights into shards with an index above that size.
    """
    from .card import make_card

    target = Path(folder).expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise ConfigError(f"cannot save a model to {target}: it is a file, not a folder")
    if target.is_dir() and any(target.iterdir()) and not (target / CONFIG_NAME).is_file():
        raise ConfigError(
            f"refusing to replace {target}: it is not empty and has no {CONFIG_NAME}, so it does "
            "not look like a colearn model folder; save to a new or empty folder"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = target.with_name(f".{target.name}.tmp-{tag}")
    old = target.with_name(f".{target.name}.old-{tag}")
    tmp.mkdir()
    try:
        config = build_config(model)
        model_card = None
        if card:
            model_card = make_card(
                config,
                repo_id=repo_id,
                results=results,
                datasets=datasets,
                license=license,
            )
        _write_folder(model, tmp, config, max_shard_size=max_shard_size, card=model_card)
        if not target.exists():
            os.replace(tmp, target)
        elif not _exchange(tmp, target):  # tmp now holds the previous model, deleted below
            # Two renames: a crash between them leaves the previous model in `old`, which
            # from_hub's "no such model folder" error then points to.
            os.replace(target, old)
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(old, target)
                raise
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2  # <linux/fs.h>


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``), so
    that a crash leaves one complete folder or the other at each path. False where the system
    or the file system cannot, and the caller falls back to two renames."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # glibc < 2.28, musl
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.argtypes += [ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


# --- loading --------------------------------------------------------------------------------


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a model folder (from the index when sharded).

    A folder with only pickle weights, or none at all, is a :class:`WeightsError`.
    """
    index = folder / INDEX_NAME
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            names = sorted(set(weight_map.values()))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise WeightsError(
                f"{index}: not a valid safetensors index (needs a 'weight_map' object): {exc}"
            ) from None
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise WeightsError(
                f"{index} lists shards that are not in {folder}: {', '.join(missing)}"
            )
        return [folder / n for n in names]
    if (folder / WEIGHTS_NAME).is_file():
        return [folder / WEIGHTS_NAME]
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise WeightsError(_pickle_refusal(str(folder), pickles))
    raise WeightsError(
        f"no {WEIGHTS_NAME} (or {INDEX_NAME} with shards) in {folder}; save models with "
        "save_pretrained"
    )


def _pickle_refusal(where: str, pickles: Iterable[str]) -> str:
    return (
        f"{where} has only pickle weights ({', '.join(pickles)}) and no {WEIGHTS_NAME}. colearn "
        "never unpickles weights: loading a pickle can run arbitrary code from whoever made the "
        "file. Ask the author for safetensors weights, or, if you trust the file, convert it "
        "yourself (torch.load(path, weights_only=True) then model.save_pretrained(folder))."
    )


def _read_weights(files: Sequence[Path]) -> dict[str, Tensor]:
    tensors: dict[str, Tensor] = {}
    for path in files:
        try:
            part = load_file(path, device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            size = path.stat().st_size if path.exists() else 0
            raise WeightsError(
                f"{path.name} ({path}, {size} bytes) is not a valid safetensors file: it is "
                f"truncated, corrupt or empty ({exc}); download it again (force_download=True)"
            ) from None
        duplicated = sorted(set(part) & set(tensors))
        if duplicated:
            raise WeightsError(f"{path.name} repeats keys of another shard: {_short(duplicated)}")
        tensors.update(part)
    return tensors


def _short(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_LIST_LIMIT])
    return shown + (f", ... ({len(keys) - _LIST_LIMIT} more)" if len(keys) > _LIST_LIMIT else "")


def _full_model_keys(method: Any, config: Mapping[str, Any]) -> set[str]:
    """Parameter names of the model with every tower, built without allocating memory where
    the method allows it."""
    try:
        with torch.device("meta"):
            full = method.from_config(config)
    except Exception:  # a method whose construction needs real tensors
        full = method.from_config(config)
    return set(full.state_dict())


def _dtype_name(tensor: Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def _match_state(
    model: nn.Module,
    loaded: dict[str, Tensor],
    ignore: set[str],
    source: str,
) -> dict[str, Tensor]:
    """Check ``loaded`` against the model; every problem is listed in one WeightsError."""
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in loaded)
    unexpected = sorted(k for k in loaded if k not in expected and k not in ignore)
    mismatched = [
        f"{k}: file {tuple(loaded[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(expected)
        if k in loaded and loaded[k].shape != expected[k].shape
    ]
    # load_state_dict would cast silently (an int tensor into floats, float16 into float32):
    # a dtype the model was not built with means another model or a damaged file.
    retyped = [
        f"{k}: file {_dtype_name(loaded[k])} vs model {_dtype_name(expected[k])}"
        for k in sorted(expected)
        if k in loaded and loaded[k].dtype != expected[k].dtype
    ]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_short(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches ({len(mismatched)}): {_short(mismatched)}")
    if retyped:
        problems.append(f"dtype mismatches ({len(retyped)}): {_short(retyped)}")
    if problems:
        raise WeightsError(
            f"the weights in {source} do not match the model built from its {CONFIG_NAME}: "
            + "; ".join(problems)
            + ". Was the file written for another config or another version of the plugin?"
        )
    return {k: loaded[k] for k in expected}


def load_pretrained(
    folder: str | os.PathLike[str],
    *,
    modalities: Sequence[str] | None = None,
    device: str | torch.device | None = None,
) -> nn.Module:
    """Build the model described by ``folder/config.json`` and load its weights strictly.

    ``modalities`` builds only those towers (and loads only their weights). Returns the model
    in eval mode, on ``device`` (default CPU).
    """
    folder = Path(folder)
    config = read_config(folder)
    source = str(folder / CONFIG_NAME)
    method = resolve_method(config, source)
    files = weight_files(folder)
    try:
        model = method.from_config(
            config["config"], modalities=list(modalities) if modalities is not None else None
        )
    except ColearnError:
        raise
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(
            f"{source}: method {config['method']!r} could not be built from field 'config'"
            + (f" with modalities={list(modalities)}" if modalities is not None else "")
            + f": {type(exc).__name__}: {exc}"
        ) from exc
    model.load_assets(folder)
    loaded = _read_weights(files)
    ignore = set()
    if modalities is not None:
        # keys of towers that were not built: present in the file, expected by the full model
        ignore = _full_model_keys(method, config["config"]) - set(model.state_dict())
    where = files[0].name if len(files) == 1 else f"{len(files)} shards of {folder / INDEX_NAME}"
    state = _match_state(model, loaded, ignore, where)
    model.load_state_dict(state, strict=True)
    if device is not None:
        model.to(device)
    return model.eval()


# --- the Hub --------------------------------------------------------------------------------

#: Files a colearn model never needs; pickles are also never downloaded.
_IGNORE_PATTERNS = [f"*{s}" for s in PICKLE_SUFFIXES] + ["*.msgpack", "*.h5", "*.onnx"]


def _is_local(repo_id_or_path: str | os.PathLike[str]) -> bool:
    text = os.fspath(repo_id_or_path)
    if Path(text).expanduser().is_dir():
        return True
    if isinstance(repo_id_or_path, os.PathLike) or text.startswith((".", "/", "~", "\\")):
        path = Path(text).expanduser()
        left = sorted(path.parent.glob(f".{path.name}.old-*")) if path.name else []
        if left:  # save_pretrained was killed between its two renames
            raise ConfigError(
                f"no such model folder: {text}; an interrupted save_pretrained left the "
                f"previous model in {left[-1]}: rename it to {path.name} to load it"
            )
        raise ConfigError(f"no such model folder: {text}")
    return False


def download(
    repo_id: str,
    revision: str | None = None,
    *,
    local_dir: str | os.PathLike[str] | None = None,
    **hub_kwargs: Any,
) -> Path:
    """Download a model repo's files (never its pickles) through the Hub cache; returns the
    folder. ``hub_kwargs`` go to ``huggingface_hub.snapshot_download`` (token, cache_dir,
    endpoint, local_files_only, force_download, ...)."""
    from huggingface_hub import snapshot_download

    path = snapshot_download(
        repo_id,
        revision=revision,
        local_dir=local_dir,
        ignore_patterns=_IGNORE_PATTERNS,
        library_name="colearn",
        library_version=__version__,
        **hub_kwargs,
    )
    folder = Path(path)
    _refuse_pickle_only(repo_id, revision, folder, local_dir, hub_kwargs.get("cache_dir"))
    return folder


def _refuse_pickle_only(
    repo_id: str, revision: str | None, folder: Path, local_dir: Any, cache_dir: Any
) -> None:
    """Explain a repo whose only weights are pickles (they were skipped by the download)."""
    if (folder / WEIGHTS_NAME).is_file() or (folder / INDEX_NAME).is_file():
        return
    from huggingface_hub import get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    try:
        files = get_cached_repo_tree(
            repo_id, revision=revision, cache_dir=cache_dir, local_dir=local_dir
        )
    except CachedRepoTreeNotFoundError:
        return
    pickles = sorted(f.path for f in files if f.path.endswith(PICKLE_SUFFIXES))
    if pickles:
        raise WeightsError(_pickle_refusal(f"repo {repo_id!r}", pickles))


def from_hub(
    repo_id_or_path: str | os.PathLike[str],
    revision: str | None = None,
    *,
    modalities: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    **hub_kwargs: Any,
) -> nn.Module:
    """Load a model from a Hub repo id (``"user/name"``) or a local folder, in eval mode.

    Downloads go through the ``huggingface_hub`` cache, so ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``,
    ``HF_TOKEN`` and ``HF_HOME`` work as usual; ``revision`` is a branch, tag or commit sha;
    ``hub_kwargs`` go to ``snapshot_download``. ``modalities`` loads only those towers.
    """
    if _is_local(repo_id_or_path):
        if revision is not None:
            raise ConfigError(
                f"revision={revision!r} was given but {repo_id_or_path} is a local folder; "
                "revisions apply to Hub repos"
            )
        folder = Path(repo_id_or_path).expanduser()
    else:
        folder = download(str(repo_id_or_path), revision, **hub_kwargs)
    return load_pretrained(folder, modalities=modalities, device=device)


def resolve_model_dir(path: str | os.PathLike[str]) -> Path:
    """A model folder, or a training run folder holding its final model in ``model/``."""
    path = Path(path).expanduser()
    if (path / CONFIG_NAME).is_file():
        return path
    if (path / "model" / CONFIG_NAME).is_file():
        return path / "model"
    if not path.is_dir():
        raise ConfigError(f"no such folder: {path}")
    raise ConfigError(
        f"{path} is neither a model folder ({CONFIG_NAME} + {WEIGHTS_NAME}) nor a run folder with "
        "one in model/; did the run finish? (the trainer saves the final model to <run>/model/)"
    )


def push_folder(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool | None = None,
    commit_message: str | None = None,
    token: str | bool | None = None,
    endpoint: str | None = None,
) -> Any:
    """Upload a saved model folder as one commit; returns ``huggingface_hub.CommitInfo``.

    The folder is validated first (config schema, safetensors headers). The repo is created if
    needed, the branch ``revision`` too (from ``main``); stale weight files of an earlier push
    (e.g. shards of a different sharding) are deleted in the same commit. The card's repo id
    placeholder is filled in, and a folder without a card gets one. Hidden files are skipped.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from safetensors import safe_open

    from .card import REPO_PLACEHOLDER, make_card

    folder = Path(folder)
    config = read_config(folder)
    for path in weight_files(folder):
        try:
            with safe_open(path, framework="pt"):
                pass
        except (SafetensorError, OSError) as exc:
            raise WeightsError(
                f"{path.name} ({path}) is not a valid safetensors file: {exc}"
            ) from None
    readme = folder / "README.md"
    if readme.is_file():
        card = readme.read_text(encoding="utf-8").replace(REPO_PLACEHOLDER, repo_id)
    else:
        card = str(make_card(config, repo_id=repo_id))
    files = {
        p.relative_to(folder).as_posix(): p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.relative_to(folder).parts[0].startswith(".")
    }
    files.pop("README.md", None)
    operations: list[Any] = [CommitOperationAdd(name, str(p)) for name, p in files.items()]
    operations.append(CommitOperationAdd("README.md", card.encode("utf-8")))

    api = HfApi(token=token, endpoint=endpoint, library_name="colearn", library_version=__version__)
    api.create_repo(repo_id, private=private, exist_ok=True)
    if revision is not None and revision != "main":
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    # weights of an earlier push that this one does not overwrite (another sharding) must go,
    # or a stale index would point the loader at old shards
    stale = [
        name
        for name in api.list_repo_files(repo_id, revision=revision)
        if name.endswith((".safetensors", INDEX_NAME)) and name not in files
    ]
    operations += [CommitOperationDelete(name) for name in stale]
    return api.create_commit(
        repo_id,
        operations,
        commit_message=commit_message or f"Upload colearn {config['method']} model",
        revision=revision,
    )


def push_to_hub(
    model: nn.Module,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool | None = None,
    commit_message: str | None = None,
    token: str | bool | None = None,
    endpoint: str | None = None,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    results: Mapping[str, Mapping[str, float]] | None = None,
    datasets: Sequence[str] | None = None,
    license: str | None = None,
) -> Any:
    """Save ``model`` (see :func:`save_pretrained`) to a temporary folder and push it."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="colearn-push-") as tmp:
        folder = save_pretrained(
            model,
            Path(tmp) / "model",
            max_shard_size=max_shard_size,
            results=results,
            datasets=datasets,
            license=license,
            repo_id=repo_id,
        )
        return push_folder(
            folder,
            repo_id,
            revision=revision,
            private=private,
            commit_message=commit_message,
            token=token,
            endpoint=endpoint,
        )
