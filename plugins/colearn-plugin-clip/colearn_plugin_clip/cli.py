"""The command ``colearn convert open_clip ...``.

It is registered as ``convert/open_clip``: the core's CLI runs every command named
``<group>/<kind>`` as ``colearn <group> <kind>``, so each plugin adds its own converter
(``convert/imagebind``) without knowing about the others.

Importing this module is cheap: torch and open_clip load when a command runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from colearn_core import ConfigError
from colearn_core.cli import Command

__all__ = ["CONVERT_OPEN_CLIP_COMMAND"]

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
