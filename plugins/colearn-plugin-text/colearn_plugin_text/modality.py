"""The ``text`` modality: strings -> fixed-length token ids and attention masks."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from colearn_core import ConfigError, InputError, Modality

from .tokenizer import STYLES, TINY_CORPUS, TextTokenizer, load_tokenizer, train_bpe_tokenizer

__all__ = ["TextInputError", "TextModality", "trim_padding"]

_KEYS = {"tokenizer", "style", "context_length", "special_tokens", "vocab_size", "lowercase"}
TOKENIZER_FILE = "tokenizer.json"


class TextInputError(InputError):
    """A sample the text modality cannot tokenise."""


def _where(index: int | None) -> str:
    return "modality 'text'" + (f", example {index}" if index is not None else "")


class TextModality(Modality):
    """``text``: a string (or, for ``style: bert``, a pair of strings) ->
    ``{"input_ids": (L,), "attention_mask": (L,)}`` (+ ``"token_type_ids"`` for bert), int64,
    padded and truncated to ``context_length``.

    Config: ``tokenizer``: a ``tokenizer.json`` path, a folder with ``tokenizer.json`` or
    CLIP's ``vocab.json`` + ``merges.txt``, open_clip's ``bpe_simple_vocab_16e6.txt.gz``, or
    ``"tiny"`` (default: a byte-level BPE trained
    on a small caption corpus shipped with the plugin, with ``vocab_size`` (384) and
    ``lowercase`` (False) -- for tests and demos, not for real models); ``style``
    (``clip`` or ``bert``); ``context_length`` (77); ``special_tokens`` (role -> token
    overrides). The tokenizer is built on first use; :meth:`load_assets` replaces it with the
    one saved next to a model.
    """

    name = "text"
    feature_types = ("Value",)

    def __init__(self, **config: Any) -> None:
        unknown = set(config) - _KEYS
        if unknown:
            raise ConfigError(
                f"modality 'text': unknown config keys {sorted(unknown)}; known: {sorted(_KEYS)}"
            )
        resolved = {
            "tokenizer": config.get("tokenizer", "tiny"),
            "style": config.get("style", "clip"),
            "context_length": int(config.get("context_length", 77)),
        }
        for key in ("special_tokens", "vocab_size", "lowercase"):
            if key in config:
                resolved[key] = config[key]
        if resolved["style"] not in STYLES:
            raise ConfigError(
                f"modality 'text': style must be one of {STYLES}, got {resolved['style']!r}"
            )
        if not isinstance(resolved["tokenizer"], str | os.PathLike):
            raise ConfigError(
                "modality 'text': tokenizer must be a path or 'tiny', "
                f"got {type(resolved['tokenizer']).__name__}"
            )
        super().__init__(**resolved)
        self._tokenizer: TextTokenizer | None = None

    # --- the tokenizer, built lazily --------------------------------------------------------

    @property
    def tokenizer(self) -> TextTokenizer:
        """The configured :class:`~colearn_plugin_text.tokenizer.TextTokenizer`."""
        if self._tokenizer is None:
            source = self.config["tokenizer"]
            if source == "tiny":
                raw = train_bpe_tokenizer(
                    [TINY_CORPUS],
                    int(self.config.get("vocab_size", 384)),
                    style=self.config["style"],
                    special_tokens=self.config.get("special_tokens"),
                    lowercase=bool(self.config.get("lowercase", False)),
                )
            else:
                raw = load_tokenizer(source)
            self._tokenizer = self._wrap(raw)
        return self._tokenizer

    def _wrap(self, raw: Any) -> TextTokenizer:
        return TextTokenizer(
            raw,
            style=self.config["style"],
            context_length=self.config["context_length"],
            special_tokens=self.config.get("special_tokens"),
        )

    @property
    def vocab_size(self) -> int:
        """Size of the embedding table an encoder for this modality needs."""
        return self.tokenizer.vocab_size

    def token_id(self, role: str) -> int:
        """Id of a special token by role: ``bos``, ``eos``, ``pad`` (clip); ``cls``, ``sep``,
        ``mask``, ``pad`` (bert)."""
        try:
            return self.tokenizer.ids[role]
        except KeyError:
            raise KeyError(
                f"modality 'text' ({self.config['style']}) has no special token {role!r}; "
                f"roles: {sorted(self.tokenizer.ids)}"
            ) from None

    # --- preprocessing --------------------------------------------------------------------

    def _check(self, sample: Any, index: int | None) -> str | tuple[str, str]:
        if isinstance(sample, str):
            return sample
        if (
            self.config["style"] == "bert"
            and isinstance(sample, tuple | list)
            and len(sample) == 2
            and all(isinstance(s, str) for s in sample)
        ):
            return (sample[0], sample[1])
        expected = "a string" + (" or a pair of strings" if self.config["style"] == "bert" else "")
        raise TextInputError(f"{_where(index)}: expected {expected}, got {type(sample).__name__}")

    def tokenize(
        self, texts: Sequence[Any], *, first_index: int | None = None
    ) -> dict[str, Tensor]:
        """Many samples at once (tokenizers encodes them in parallel) -> batched tensors."""
        checked = [
            self._check(t, None if first_index is None else first_index + i)
            for i, t in enumerate(texts)
        ]
        out = self.tokenizer.encode_batch(checked)
        batch = {
            "input_ids": torch.tensor(out["input_ids"], dtype=torch.long),
            "attention_mask": torch.tensor(out["attention_mask"], dtype=torch.long),
        }
        if self.config["style"] == "bert":
            batch["token_type_ids"] = torch.tensor(out["token_type_ids"], dtype=torch.long)
        length = self.config["context_length"]
        for key, value in batch.items():
            batch[key] = value.reshape(len(checked), length)
        return batch

    def preprocess(self, sample: Any, *, index: int | None = None) -> dict[str, Tensor]:
        """One sample -> ``(context_length,)`` tensors."""
        out = self.tokenizer.encode(self._check(sample, index))
        keys = ("input_ids", "attention_mask")
        keys += ("token_type_ids",) if self.config["style"] == "bert" else ()
        return {key: torch.tensor(out[key], dtype=torch.long) for key in keys}

    def decode(self, ids: Sequence[int] | Tensor, *, skip_special_tokens: bool = True) -> str:
        """Token ids back to text."""
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    # --- assets ---------------------------------------------------------------------------

    def save_assets(self, folder: Path) -> None:
        """Write ``tokenizer.json`` into ``folder``."""
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(Path(folder) / TOKENIZER_FILE)

    def load_assets(self, folder: Path) -> None:
        """Use the ``tokenizer.json`` saved in ``folder``."""
        path = Path(folder) / TOKENIZER_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"modality 'text': {str(path)!r} is missing; a text model folder must hold the "
                "tokenizer it was trained with (written by save_assets)"
            )
        self._tokenizer = self._wrap(load_tokenizer(path))

    @classmethod
    def example_samples(cls, n: int) -> list[Any]:
        base = [
            "a photo of a cat",
            "two dogs playing on the grass.",
            "",
            "Café déjà vu — 猫",
            "a very long caption " * 40,
        ]
        return [base[i % len(base)] for i in range(n)]


def trim_padding(text: Mapping[str, Any]) -> dict[str, Any]:
    """Drop the columns after a token batch's last real token from every ``(B, T, ...)`` entry.

    :class:`TextModality` pads every sequence to the context length; padded positions are
    masked out of attention and losses, so cutting them changes no output of a real token and
    saves their compute. Works for any padding side; without an ``attention_mask`` (or with a
    mask that is not ``(B, T)``) the batch is returned as it is.
    """
    mask = text.get("attention_mask")
    if mask is None or mask.ndim != 2:
        return dict(text)
    length = mask.shape[1]
    real = mask.bool().any(dim=0)  # (T,)
    keep = int(real.nonzero().max()) + 1 if bool(real.any()) else 1
    if keep == length:
        return dict(text)
    return {
        k: v[:, :keep] if isinstance(v, Tensor) and v.dim() >= 2 and v.shape[1] == length else v
        for k, v in text.items()
    }
