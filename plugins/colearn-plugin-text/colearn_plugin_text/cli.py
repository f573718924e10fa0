"""``colearn tokenizer``: train a byte-level BPE tokenizer, or look at how one tokenises."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from colearn_core.cli import Command

__all__ = ["TOKENIZER_COMMAND"]


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    train = sub.add_parser("train", help="train a byte-level BPE tokenizer on text files")
    train.add_argument("corpus", nargs="+", type=Path, help="UTF-8 text files, one text a line")
    train.add_argument("--vocab-size", type=int, required=True, help="tokens incl. specials")
    train.add_argument("--out", type=Path, default=Path("tokenizer.json"), help="output file")
    train.add_argument("--style", choices=("clip", "bert"), default="clip", help="special tokens")
    train.add_argument("--lowercase", action="store_true", help="lowercase before tokenising")
    train.add_argument("--min-frequency", type=int, default=2, help="minimum pair count to merge")
    train.add_argument("--context-length", type=int, default=77, help="padding length")
    encode = sub.add_parser("encode", help="print the ids and tokens of some text")
    encode.add_argument("tokenizer", type=Path, help="tokenizer.json or a folder")
    encode.add_argument("text", nargs="+", help="texts to encode")
    encode.add_argument("--style", choices=("clip", "bert"), default="clip")
    encode.add_argument("--context-length", type=int, default=77)


def _run(args: argparse.Namespace) -> int:
    from colearn_core import ConfigError

    from .tokenizer import TextTokenizer, load_tokenizer, train_bpe_tokenizer

    if args.action == "train":
        try:
            raw = train_bpe_tokenizer(
                args.corpus,
                args.vocab_size,
                style=args.style,
                lowercase=args.lowercase,
                min_frequency=args.min_frequency,
            )
        except FileNotFoundError as exc:
            raise ConfigError(str(exc)) from exc
        tokenizer = TextTokenizer(raw, style=args.style, context_length=args.context_length)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tokenizer.save(args.out)
        print(f"wrote {args.out} ({tokenizer.vocab_size} tokens, style {args.style})")
        return 0
    try:
        raw = load_tokenizer(args.tokenizer)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc
    tokenizer = TextTokenizer(raw, style=args.style, context_length=args.context_length)
    for text in args.text:
        encoding = tokenizer.tokenizer.encode(text)
        n = sum(encoding.attention_mask)
        print(json.dumps({"text": text, "ids": encoding.ids[:n], "tokens": encoding.tokens[:n]}))
    return 0


TOKENIZER_COMMAND = Command(
    help="train a BPE tokenizer (`colearn tokenizer train CORPUS... --vocab-size N`) or encode",
    add_arguments=_add_arguments,
    run=_run,
    description=(
        "Train a byte-level BPE tokenizer with Hugging Face tokenizers:\n"
        "  colearn tokenizer train corpus.txt --vocab-size 8192 --out tokenizer.json\n"
        "Show how text is tokenised:\n"
        "  colearn tokenizer encode tokenizer.json 'a photo of a cat'"
    ),
)
