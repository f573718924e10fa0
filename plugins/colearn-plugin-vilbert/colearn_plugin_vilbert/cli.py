"""``colearn convert vilbert``: convert an official ViLBERT checkpoint into a colearn model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from colearn_core.cli import Command

__all__ = ["CONVERT_VILBERT_COMMAND"]


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="official pytorch_model.bin or .safetensors")
    parser.add_argument(
        "config", type=Path, help="its BertConfig JSON (e.g. bert_base_6layer_6conect.json)"
    )
    parser.add_argument("out", type=Path, help="folder for the colearn model (save_pretrained)")


def _run(args: argparse.Namespace) -> int:
    from colearn_core import ConfigError

    from .convert import vilbert_from_official

    for path in (args.checkpoint, args.config):
        if not path.is_file():
            raise ConfigError(f"{path} does not exist")
    try:
        model, unused = vilbert_from_official(args.checkpoint, args.config)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    model.save_pretrained(args.out)
    print(json.dumps({"saved": str(args.out), "unused_official_keys": unused}, indent=2))
    return 0


CONVERT_VILBERT_COMMAND = Command(
    help="convert an official vilbert-multi-task checkpoint into a colearn vilbert model",
    add_arguments=_add_arguments,
    run=_run,
    description=(
        "Convert facebookresearch/vilbert-multi-task weights (read with torch.load("
        "weights_only=True)):\n"
        "  colearn convert vilbert pretrained_model.bin bert_base_6layer_6conect.json out/\n"
        "The key mapping is documented in docs/methods/vilbert.md."
    ),
)
