"""Tokenisation on Hugging Face ``tokenizers``: train a byte-level BPE, or load CLIP's BPE.

:class:`TextTokenizer` wraps a :class:`tokenizers.Tokenizer` with one of two special-token
styles and fixed-length padding/truncation:

- ``clip``: ``<start_of_text> ... <end_of_text>``, padded after the end token. Truncation keeps
  the end token last, as CLIP does. Converted CLIP vocabularies use ``<|startoftext|>`` and
  ``<|endoftext|>`` and pad with id 0 (CLIP has no pad token; padding sits after the end token,
  which a causal model never sees from it).
- ``bert``: ``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]`` with token type ids 0/1, ``[MASK]``
  for masked language modelling and ``[PAD]`` for padding.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from colearn_core import ConfigError

__all__ = [
    "DEFAULT_SPECIAL_TOKENS",
    "STYLES",
    "TextTokenizer",
    "TINY_CORPUS",
    "clip_bpe_tokenizer",
    "load_tokenizer",
    "train_bpe_tokenizer",
]

STYLES = ("clip", "bert")
#: Role -> token per style; the order is the order of their ids in a trained vocabulary.
DEFAULT_SPECIAL_TOKENS: dict[str, dict[str, str]] = {
    "clip": {"bos": "<start_of_text>", "eos": "<end_of_text>", "pad": "<pad>"},
    "bert": {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"},
}
#: Special tokens of OpenAI CLIP's vocabulary (vocab.json / merges.txt / tokenizer.json).
CLIP_VOCAB_SPECIAL_TOKENS = {"bos": "<|startoftext|>", "eos": "<|endoftext|>"}
_CLIP_SPECIALS = ("<|startoftext|>", "<|endoftext|>", "<start_of_text>", "<end_of_text>")
#: A tiny caption corpus shipped with the plugin, for tests and demos only.
TINY_CORPUS = Path(__file__).parent / "data" / "tiny_corpus.txt"
# CLIP's pre-tokenisation: contractions, letter runs, single digits, runs of other symbols.
_CLIP_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def _resolve_special_tokens(style: str, overrides: Mapping[str, str] | None) -> dict[str, str]:
    if style not in STYLES:
        raise ConfigError(f"modality 'text': style must be one of {STYLES}, got {style!r}")
    tokens = dict(DEFAULT_SPECIAL_TOKENS[style])
    for role, token in (overrides or {}).items():
        if role not in tokens:
            raise ConfigError(
                f"modality 'text': special_tokens has unknown role {role!r} for style "
                f"{style!r}; roles: {sorted(tokens)}"
            )
        tokens[role] = token
    return tokens


def train_bpe_tokenizer(
    corpus: Iterable[str | os.PathLike[str]] | Iterable[str],
    vocab_size: int,
    *,
    style: str = "clip",
    special_tokens: Mapping[str, str] | None = None,
    lowercase: bool = False,
    min_frequency: int = 2,
    from_files: bool = True,
) -> Any:
    """Train a byte-level BPE :class:`tokenizers.Tokenizer` on text files (or, with
    ``from_files=False``, on an iterable of strings). Special tokens take the first ids."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    specials = list(_resolve_special_tokens(style, special_tokens).values())
    if vocab_size < 256 + len(specials):
        raise ConfigError(
            f"vocab_size {vocab_size} is too small: byte-level BPE needs 256 byte tokens plus "
            f"{len(specials)} special tokens"
        )
    tokenizer = Tokenizer(models.BPE())
    steps = [normalizers.NFC()] + ([normalizers.Lowercase()] if lowercase else [])
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    if from_files:
        files = [str(f) for f in corpus]
        for f in files:
            if not Path(f).is_file():
                raise FileNotFoundError(f"tokenizer corpus file {f!r} does not exist")
        tokenizer.train(files, trainer)
    else:
        tokenizer.train_from_iterator(corpus, trainer)
    return tokenizer


def clip_bpe_tokenizer(vocab: str | os.PathLike[str] | None, merges: str | os.PathLike[str]) -> Any:
    """OpenAI CLIP's BPE from its ``vocab.json`` and ``merges.txt`` (Hugging Face layout), or,
    with ``vocab=None``, from open_clip's ``bpe_simple_vocab_16e6.txt.gz`` (the vocabulary is
    then built the way open_clip builds it: 256 bytes, 256 word-final bytes, 48,894 merges,
    ``<start_of_text>``, ``<end_of_text>``). Words end in ``</w>``; text is NFC-normalised,
    whitespace-collapsed and lowercased (CLIP's ftfy clean-up is not applied)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    for path in (vocab, merges):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"CLIP BPE file {str(path)!r} does not exist")
    if vocab is None:
        encoder, merge_pairs = _open_clip_vocabulary(Path(merges))
    else:
        encoder, merge_pairs = models.BPE.read_file(str(vocab), str(merges))
    unk = next((t for t in _CLIP_SPECIALS if t in encoder and "end" in t), None)
    model = models.BPE(
        encoder,
        merge_pairs,
        end_of_word_suffix="</w>",
        continuing_subword_prefix="",
        unk_token=unk,
        fuse_unk=False,
    )
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_CLIP_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([t for t in _CLIP_SPECIALS if t in encoder])
    return tokenizer


def _open_clip_vocabulary(path: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    lines = gzip.open(path, "rt", encoding="utf-8").read().split("\n")
    # open_clip keeps the first 49152 - 256 - 2 merges after the version line.
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    byte_chars = _byte_chars()
    tokens = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges]
    tokens += ["<start_of_text>", "<end_of_text>"]
    return {t: i for i, t in enumerate(tokens)}, [(a, b) for a, b in merges]


def _byte_chars() -> list[str]:
    """The 256 byte-level characters in CLIP's order: printable bytes first, then the rest."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += list(range(ord("®"), ord("ÿ") + 1))
    rest = [b for b in range(256) if b not in printable]
    # bytes outside the printable set map to chr(256 + n), in byte order
    return [chr(b) for b in printable] + [chr(256 + n) for n in range(len(rest))]


def load_tokenizer(path: str | os.PathLike[str]) -> Any:
    """A ``tokenizer.json`` file, open_clip's ``*.txt.gz`` merges, or a folder holding
    ``tokenizer.json`` or CLIP's ``vocab.json`` + ``merges.txt``."""
    from tokenizers import Tokenizer

    path = Path(path)
    if path.name.endswith(".txt.gz"):  # open_clip's bpe_simple_vocab_16e6.txt.gz
        return clip_bpe_tokenizer(None, path)
    if path.is_dir():
        if (path / "tokenizer.json").is_file():
            path = path / "tokenizer.json"
        elif (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
            return clip_bpe_tokenizer(path / "vocab.json", path / "merges.txt")
        else:
            raise FileNotFoundError(
                f"folder {str(path)!r} has neither tokenizer.json nor vocab.json + merges.txt"
            )
    if not path.is_file():
        raise FileNotFoundError(
            f"tokenizer {str(path)!r} does not exist; train one with `colearn tokenizer train`"
        )
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
        raise ValueError(f"could not read tokenizer {str(path)!r}: {exc}") from exc


class TextTokenizer:
    """A :class:`tokenizers.Tokenizer` configured for one style and a fixed context length.

    ``special_tokens`` maps roles (``bos``/``eos``/``pad`` for clip; ``cls``/``sep``/``mask``/
    ``pad``/``unk`` for bert) to tokens; tokens missing from the vocabulary are an error,
    except a CLIP ``pad``, which falls back to id 0.
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        style: str = "clip",
        context_length: int = 77,
        special_tokens: Mapping[str, str] | None = None,
    ) -> None:
        self.style = style
        self.context_length = int(context_length)
        self.special_tokens = _resolve_special_tokens(style, special_tokens)
        if style == "clip" and special_tokens is None:
            if tokenizer.token_to_id(DEFAULT_SPECIAL_TOKENS["clip"]["bos"]) is None:
                # a converted OpenAI vocabulary
                self.special_tokens.update(CLIP_VOCAB_SPECIAL_TOKENS)
        minimum = 2 if style == "clip" else 3
        if self.context_length < minimum:
            raise ConfigError(
                f"modality 'text': context_length must be at least {minimum}, "
                f"got {self.context_length}"
            )
        self.ids: dict[str, int] = {}
        for role, token in self.special_tokens.items():
            token_id = tokenizer.token_to_id(token)
            if token_id is None:
                if style == "clip" and role == "pad":
                    token_id = 0
                    self.special_tokens[role] = tokenizer.id_to_token(0)
                elif role == "unk":
                    continue
                else:
                    raise ConfigError(
                        f"modality 'text': the {style} special token {role}={token!r} is not in "
                        "the tokenizer's vocabulary; set special_tokens in the config or train "
                        f"the tokenizer with style {style!r}"
                    )
            self.ids[role] = token_id
        self.tokenizer = tokenizer
        self._configure()

    def _configure(self) -> None:
        from tokenizers import processors

        t = self.special_tokens
        if self.style == "clip":
            single = f"{t['bos']} $A {t['eos']}"
            pair = f"{t['bos']} $A {t['eos']} $B:1 {t['eos']}:1"
            used = ("bos", "eos")
        else:
            single = f"{t['cls']} $A {t['sep']}"
            pair = f"{t['cls']} $A {t['sep']} $B:1 {t['sep']}:1"
            used = ("cls", "sep")
        self.tokenizer.post_processor = processors.TemplateProcessing(
            single=single, pair=pair, special_tokens=[(t[r], self.ids[r]) for r in used]
        )
        self.tokenizer.enable_truncation(max_length=self.context_length)
        self.tokenizer.enable_padding(
            length=self.context_length, pad_id=self.ids["pad"], pad_token=t["pad"]
        )

    @property
    def vocab_size(self) -> int:
        """Number of token ids, special tokens included."""
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def special_ids(self) -> set[int]:
        """Ids of every special token."""
        return set(self.ids.values())

    def _word_suffix(self) -> str | None:
        return getattr(self.tokenizer.model, "end_of_word_suffix", None)

    def encode(self, text: str | tuple[str, str]) -> dict[str, list[int]]:
        """One text (or pair) -> ``input_ids``, ``attention_mask``, ``token_type_ids``.

        Unlike :meth:`encode_batch` this uses no thread pool, so DataLoader workers forked
        after it stay quiet and safe."""
        e = self.tokenizer.encode(*text) if isinstance(text, tuple) else self.tokenizer.encode(text)
        return {
            "input_ids": e.ids,
            "attention_mask": e.attention_mask,
            "token_type_ids": e.type_ids,
        }

    def encode_batch(self, texts: Sequence[str | tuple[str, str]]) -> dict[str, list[list[int]]]:
        """Texts (or text pairs) -> ``input_ids``, ``attention_mask``, ``token_type_ids``,
        each padded/truncated to ``context_length``."""
        encodings = self.tokenizer.encode_batch(list(texts))
        return {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
        }

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        """Ids -> text (padding and, by default, special tokens dropped)."""
        ids = list(ids)
        if self.style == "clip" and self.ids["eos"] in ids:  # CLIP pads with a real token
            ids = ids[: ids.index(self.ids["eos"]) + 1]
        text = self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
        suffix = self._word_suffix()
        if suffix:  # CLIP's vocabulary marks word ends instead of spaces
            text = text.replace(suffix, " ").strip()
        return text

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``tokenizer.json`` (with this style's post-processor and padding)."""
        self.tokenizer.save(str(path))

    def to_json(self) -> dict[str, Any]:
        return json.loads(self.tokenizer.to_str())
