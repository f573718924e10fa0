"""Commands: ``colearn convert KIND ...`` (a dispatcher) and ``colearn convert open_clip ...``.

Converters are commands named ``convert/<kind>`` in the ``commands`` registry, so any plugin
adds one (``convert/imagebind``) without knowing about the others; ``colearn convert <kind>``
finds it there. The dispatcher ``convert`` is registered by the first plugin that needs it
(this one registers it unless something already did); it belongs in the core eventually.

Importing this module is cheap: torch and open_clip load when a command runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from colearn_core import ConfigError, registries
from colearn_core.cli import Command

__all__ = ["CONVERTER_PREFIX", "CONVERT_COMMAND", "CONVERT_OPEN_CLIP_COMMAND"]

#: Converters are the commands registered under this prefix: ``convert/<kind>``.
CONVERTER_PREFIX = "convert/"


# --- colearn convert KIND ... -----------------------------------------------------------------


def _converters() -> dict[str, Command]:
    return {
        name[len(CONVERTER_PREFIX) :]: entry.obj
        for name, entry in registries.commands.items()
        if name.startswith(CONVERTER_PREFIX)
    }


def _convert_arguments(p: argparse.ArgumentParser) -> None:
    kinds = _converters()
    listing = "\n".join(f"  {kind:<14} {cmd.help}" for kind, cmd in sorted(kinds.items()))
    p.epilog = (
        "converters (each from a plugin; `colearn convert KIND --help` for its arguments):\n"
        + (listing or "  none installed")
    )
    p.add_argument("kind", metavar="KIND", help="which converter: " + ", ".join(sorted(kinds)))
    p.add_argument("args", nargs=argparse.REMAINDER, help="the converter's arguments")


def _convert_run(args: argparse.Namespace) -> int:
    kinds = _converters()
    command = kinds.get(args.kind)
    if command is None:
        raise ConfigError(
            f"unknown converter {args.kind!r}; installed: {', '.join(sorted(kinds)) or 'none'}. "
            "A plugin adds one by registering a command named 'convert/<kind>'"
        )
    parser = argparse.ArgumentParser(
        prog=f"colearn convert {args.kind}",
        description=command.description or command.help,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_arguments(parser)
    return int(command.run(parser.parse_args(args.args)) or 0)


CONVERT_COMMAND = Command(
    help="convert another library's model into a colearn model folder (colearn convert KIND ...)",
    add_arguments=_convert_arguments,
    run=_convert_run,
    description="Convert another library's model into a colearn model folder that from_hub "
    "loads. The converters come from plugins (commands named convert/<kind>).",
)


# --- colearn convert open_clip MODEL_NAME [--pretrained TAG] OUT_DIR -----------------------


def _open_clip_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_name", metavar="MODEL_NAME", help="an open_clip model, e.g. ViT-B-32")
    p.add_argument(
        "out_dir", metavar="OUT_DIR", type=Path, help="the colearn model folder to write"
    )
    p.add_argument(
        "--pretrained",
        metavar="TAG",
        default=None,
        help="open_clip weights tag (e.g. openai, laion2b_s34b_b79k) or a checkpoint file; "
        "without it the weights are random (architecture only)",
    )
    p.add_argument(
        "--tokenizer-only",
        action="store_true",
        help="write only OUT_DIR/tokenizer.json (CLIP's BPE, for training recipes from scratch)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="open_clip model argument (value parsed as JSON), e.g. --set embed_dim=256; "
        "repeatable",
    )


def _open_clip_run(args: argparse.Namespace) -> int:
    from .convert import convert_open_clip, convert_open_clip_tokenizer

    kwargs: dict[str, Any] = {}
    for item in args.overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        try:
            kwargs[key] = json.loads(raw)
        except json.JSONDecodeError:
            kwargs[key] = raw
    if args.tokenizer_only:
        length = kwargs.pop("context_length", None)
        if kwargs:
            raise ConfigError(
                f"--tokenizer-only takes only --set context_length=N, got {sorted(kwargs)}"
            )
        path = convert_open_clip_tokenizer(args.model_name, args.out_dir, context_length=length)
        print(f"colearn convert open_clip: wrote {path}")
        return 0
    folder = convert_open_clip(args.model_name, args.pretrained, args.out_dir, **kwargs)
    print(f"colearn convert open_clip: wrote {folder}")
    return 0


CONVERT_OPEN_CLIP_COMMAND = Command(
    help="an open_clip model (OpenAI CLIP weights included) -> a colearn clip model folder",
    add_arguments=_open_clip_arguments,
    run=_open_clip_run,
    description="Build an open_clip model (pip install open_clip_torch, or "
    "colearn-plugin-clip[convert]), map its weights, preprocessing and tokenizer onto a colearn "
    "`clip` model and save it (config.json, model.safetensors, tokenizer.json, README.md).\n\n"
    "examples:\n"
    "  colearn convert open_clip ViT-B-32 --pretrained openai clip-vit-b-32\n"
    "  colearn convert open_clip ViT-B-16 --pretrained laion2b_s34b_b88k clip-vit-b-16\n"
    "  colearn convert open_clip ViT-B-16 tokenizers/clip --tokenizer-only",
)
