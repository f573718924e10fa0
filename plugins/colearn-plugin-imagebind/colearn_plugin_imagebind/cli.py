"""``colearn convert imagebind CHECKPOINT OUT_DIR``: the official weights as a colearn model.

Registered as the command ``convert/imagebind``; the ``convert`` dispatcher (from
colearn-plugin-clip) finds it. Importing this module is cheap: torch loads when it runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from colearn_core import ConfigError
from colearn_core.cli import Command

__all__ = ["CONVERT_IMAGEBIND_COMMAND"]


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "checkpoint",
        metavar="CHECKPOINT",
        type=Path,
        help="the official state dict: imagebind_huge.pth (read with weights_only=True) or a "
        ".safetensors file",
    )
    p.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="the colearn model folder")
    p.add_argument(
        "--modalities",
        default=None,
        help="comma-separated towers to convert (image,text,audio,depth,thermal); default: "
        "all in the checkpoint (IMU is never converted)",
    )
    p.add_argument(
        "--tokenizer",
        default=None,
        help="ImageBind's bpe_simple_vocab_16e6.txt.gz (or a tokenizer.json); default: next to "
        "the checkpoint, or from an installed imagebind or open_clip package",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an ImageBindModel argument the shapes do not determine (value parsed as JSON), "
        "e.g. --set vision_num_heads=16; repeatable",
    )


def _run(args: argparse.Namespace) -> int:
    from .convert import convert_checkpoint

    arch: dict[str, Any] = {}
    for item in args.overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set text_num_heads=16")
        try:
            arch[key] = json.loads(raw)
        except json.JSONDecodeError:
            raise ConfigError(f"--set {item!r}: the value is not JSON") from None
    modalities = None
    if args.modalities:
        modalities = [m.strip() for m in args.modalities.split(",") if m.strip()]
    folder = convert_checkpoint(
        args.checkpoint,
        args.out_dir,
        modalities=modalities,
        tokenizer=args.tokenizer,
        arch=arch,
    )
    print(f"colearn convert imagebind: wrote {folder}")
    return 0


CONVERT_IMAGEBIND_COMMAND = Command(
    help="an official ImageBind checkpoint (imagebind_huge.pth) -> a colearn imagebind model",
    add_arguments=_arguments,
    run=_run,
    description="Convert Meta's ImageBind weights (https://dl.fbaipublicfiles.com/imagebind/"
    "imagebind_huge.pth, a plain state dict read with torch.load(weights_only=True), or the "
    "same tensors as .safetensors) into a colearn `imagebind` model folder: image (official "
    "'vision'), text, audio, depth and thermal towers; IMU is not converted.\n\n"
    "examples:\n"
    "  colearn convert imagebind .checkpoints/imagebind_huge.pth imagebind-huge\n"
    "  colearn convert imagebind imagebind_huge.pth ib-image-audio --modalities image,audio",
)
