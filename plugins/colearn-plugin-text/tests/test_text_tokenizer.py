"""Tokenisation: training, round trips, padding/truncation/masks, both special-token styles,
CLIP's BPE vocabulary against a reference BPE, assets, bad input and the CLI command."""

from __future__ import annotations

import gzip
import json
import re
import time

import pytest
import torch
from colearn_plugin_text.modality import TextInputError, TextModality
from colearn_plugin_text.tokenizer import (
    TINY_CORPUS,
    TextTokenizer,
    load_tokenizer,
    train_bpe_tokenizer,
)

from colearn_core import ConfigError
from colearn_core.cli import main
from colearn_core.testing import check_modality


@pytest.fixture(scope="module")
def clip_text() -> TextModality:
    return TextModality(context_length=16)


@pytest.fixture(scope="module")
def bert_text() -> TextModality:
    return TextModality(style="bert", context_length=16)


def test_training_is_fast_and_deterministic() -> None:
    start = time.perf_counter()
    a = train_bpe_tokenizer([TINY_CORPUS], 400)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"training the tiny tokenizer took {elapsed:.2f} s"
    b = train_bpe_tokenizer(TINY_CORPUS.read_text().splitlines(), 400, from_files=False)
    assert a.get_vocab_size() == 400
    assert a.to_str() == train_bpe_tokenizer([TINY_CORPUS], 400).to_str()
    assert a.get_vocab() == b.get_vocab()
    # BPE merged frequent words of the corpus into single tokens
    assert "Ġphoto" in a.get_vocab()


@pytest.mark.parametrize(
    "text",
    [
        "a photo of a cat",
        "Café, naïve, über — déjà vu!",
        "猫がテーブルの上にいます。 and an emoji 🐈 never seen in training",
        "  leading and trailing spaces  ",
        "",
    ],
)
def test_round_trip(clip_text, bert_text, text) -> None:
    long = TextModality(context_length=77)
    ids = long.preprocess(text)["input_ids"]
    assert long.decode(ids) == text  # byte-level BPE loses nothing
    ids = TextModality(style="bert", context_length=77).preprocess(text)["input_ids"]
    assert bert_text.decode(ids) == text


def test_clip_style_padding_and_masks(clip_text) -> None:
    out = clip_text.preprocess("a photo of a cat")
    ids, mask = out["input_ids"], out["attention_mask"]
    assert ids.shape == mask.shape == (16,) and ids.dtype == mask.dtype == torch.long
    n = int(mask.sum())
    assert torch.equal(mask, (torch.arange(16) < n).long())  # ones, then zeros
    assert ids[0] == clip_text.token_id("bos") and ids[n - 1] == clip_text.token_id("eos")
    assert (ids[n:] == clip_text.token_id("pad")).all()
    tokens = [clip_text.tokenizer.tokenizer.id_to_token(int(i)) for i in ids[:n]]
    assert tokens[0] == "<start_of_text>" and tokens[-1] == "<end_of_text>"
    assert "token_type_ids" not in out


def test_truncation_keeps_the_end_token(clip_text, bert_text) -> None:
    text = "a very long caption about a red dress on the grass " * 10
    out = clip_text.preprocess(text)
    assert out["attention_mask"].all()
    assert out["input_ids"][0] == clip_text.token_id("bos")
    assert out["input_ids"][-1] == clip_text.token_id("eos")
    full = TextModality(context_length=200).preprocess(text)["input_ids"]
    assert torch.equal(out["input_ids"][:-1], full[:15])  # the first 14 text tokens are kept
    out = bert_text.preprocess(text)
    assert out["input_ids"][0] == bert_text.token_id("cls")
    assert out["input_ids"][-1] == bert_text.token_id("sep")


def test_bert_style_pairs_segments_and_mask_token(bert_text) -> None:
    out = bert_text.preprocess(("a red dress", "on the grass"))
    ids, types, mask = out["input_ids"], out["token_type_ids"], out["attention_mask"]
    cls, sep, pad = (bert_text.token_id(r) for r in ("cls", "sep", "pad"))
    n = int(mask.sum())
    assert ids[0] == cls and ids[n - 1] == sep and (ids[n:] == pad).all()
    first_sep = int((ids == sep).nonzero()[0])
    assert torch.equal(types[: first_sep + 1], torch.zeros(first_sep + 1, dtype=torch.long))
    assert (types[first_sep + 1 : n] == 1).all() and (types[n:] == 0).all()
    assert bert_text.decode(ids[1:first_sep]) == "a red dress"
    masked = bert_text.preprocess("a [MASK] dress")["input_ids"]
    assert int((masked == bert_text.token_id("mask")).sum()) == 1  # a single special token
    single = bert_text.preprocess("a red dress")
    assert single["token_type_ids"].eq(0).all()
    assert {"cls", "sep", "mask", "pad"} <= set(bert_text.tokenizer.ids)
    assert bert_text.tokenizer.special_ids == set(bert_text.tokenizer.ids.values())


def test_collate_and_batch_tokenize_agree(clip_text) -> None:
    texts = ["a cat", "two dogs on the grass", ""]
    batch = clip_text.collate([clip_text.preprocess(t) for t in texts])
    assert batch["input_ids"].shape == (3, 16)
    fast = clip_text.tokenize(texts)
    assert torch.equal(batch["input_ids"], fast["input_ids"])
    assert torch.equal(batch["attention_mask"], fast["attention_mask"])
    check_modality(TextModality, {"context_length": 8}, n=5)
    check_modality(TextModality, {"context_length": 8, "style": "bert"}, n=5)


def test_save_and_load_assets(tmp_path, clip_text) -> None:
    clip_text.save_assets(tmp_path)
    assert (tmp_path / "tokenizer.json").is_file()
    json.loads((tmp_path / "tokenizer.json").read_text())
    # building from a config whose tokenizer path is gone doesn't fail: the tokenizer is lazy
    restored = TextModality(tokenizer=str(tmp_path / "elsewhere.json"), context_length=16)
    restored.load_assets(tmp_path)
    for text in ("a photo of a cat", "Café 猫"):
        assert torch.equal(
            restored.preprocess(text)["input_ids"], clip_text.preprocess(text)["input_ids"]
        )
    from_path = TextModality(tokenizer=str(tmp_path / "tokenizer.json"), context_length=16)
    assert from_path.vocab_size == clip_text.vocab_size == 384
    with pytest.raises(FileNotFoundError, match="tokenizer.json' is missing"):
        TextModality().load_assets(tmp_path / "empty")
    lazy = TextModality(tokenizer=str(tmp_path / "missing.json"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        lazy.preprocess("a cat")


# --- CLIP's BPE vocabulary -------------------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


MERGES = [("p", "h"), ("ph", "o"), ("pho", "t"), ("phot", "o</w>"), ("c", "a"), ("ca", "t</w>"),
          ("o", "f</w>"), ("t", "h"), ("th", "e</w>"), ("'", "s</w>"), ("!", "!</w>"),
          ("a", "t"), ("c", "at")]  # fmt: skip


_CLIP_WORDS = r"'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+"  # CLIP's split, ASCII only


def _write_clip_vocab(folder) -> dict[str, int]:
    chars = list(_bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m) for m in MERGES]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    encoder = {token: i for i, token in enumerate(dict.fromkeys(vocab))}
    (folder / "vocab.json").write_text(json.dumps(encoder))
    lines = ["#version: 0.2"] + [" ".join(m) for m in MERGES]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n")
    return encoder


def _reference_clip_ids(
    text: str, encoder: dict[str, int], sot: str = "<|startoftext|>", eot: str = "<|endoftext|>"
) -> list[int]:
    """CLIP's tokenizer written out (ASCII input): clean, lowercase, split, byte-map, BPE."""
    ranks = {m: i for i, m in enumerate(MERGES)}
    table = _bytes_to_unicode()
    text = re.sub(r"\s+", " ", text).strip().lower()
    ids = [encoder[sot]]
    for piece in re.findall(_CLIP_WORDS, text):
        chars = "".join(table[b] for b in piece.encode())
        word = [*chars[:-1], chars[-1] + "</w>"]
        while len(word) > 1:
            pairs = [(word[i], word[i + 1]) for i in range(len(word) - 1)]
            best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
            if best not in ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        ids += [encoder[w] for w in word]
    return ids + [encoder[eot]]


@pytest.mark.parametrize(
    "text",
    ["a photo of a cat", "A  PHOTO\tof the CATS!!", "the cat's photo 42", "photophoto catcat"],
)
def test_clip_vocabulary_matches_reference_bpe(tmp_path, text) -> None:
    encoder = _write_clip_vocab(tmp_path)
    text_mod = TextModality(tokenizer=str(tmp_path), context_length=32)
    out = text_mod.preprocess(text)
    n = int(out["attention_mask"].sum())
    assert out["input_ids"][:n].tolist() == _reference_clip_ids(text, encoder)
    assert (out["input_ids"][n:] == 0).all()  # CLIP pads with id 0
    # CLIP's decoding puts a space after every word piece of the pre-tokenisation
    assert text_mod.decode(out["input_ids"]) == " ".join(re.findall(_CLIP_WORDS, text.lower()))
    # the same tokenizer through a tokenizer.json
    text_mod.save_assets(tmp_path / "saved")
    again = TextModality(tokenizer=str(tmp_path / "saved" / "tokenizer.json"), context_length=32)
    assert torch.equal(again.preprocess(text)["input_ids"], out["input_ids"])
    assert text_mod.vocab_size == len(encoder)


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("style", "sample", "expected"),
    [
        ("clip", 42, "expected a string, got int"),
        ("clip", None, "expected a string, got NoneType"),
        ("clip", ("a", "b"), "expected a string, got tuple"),
        ("bert", ("a", 3), "expected a string or a pair of strings, got tuple"),
        ("bert", b"bytes", "expected a string or a pair of strings, got bytes"),
    ],
)
def test_bad_input_names_modality_and_example(style, sample, expected) -> None:
    text = TextModality(style=style, context_length=8)
    with pytest.raises(TextInputError, match=rf"^modality 'text', example 3: {expected}"):
        text.preprocess(sample, index=3)
    with pytest.raises(TextInputError, match=r"^modality 'text', example 11: "):
        text.tokenize(["fine", sample], first_index=10)


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"style": "gpt"}, "style must be one of"),
        ({"context_len": 8}, r"unknown config keys \['context_len'\]"),
        ({"tokenizer": 3}, "tokenizer must be a path"),
    ],
)
def test_config_errors(config, match) -> None:
    with pytest.raises(ConfigError, match=match):
        TextModality(**config)


def test_special_token_errors(tmp_path) -> None:
    raw = train_bpe_tokenizer([TINY_CORPUS], 300, style="clip")
    with pytest.raises(ConfigError, match=r"the bert special token pad=.\[PAD\]. is not in"):
        TextTokenizer(raw, style="bert")
    with pytest.raises(ConfigError, match="unknown role 'cls'"):
        TextTokenizer(raw, style="clip", special_tokens={"cls": "<s>"})
    with pytest.raises(ConfigError, match="context_length must be at least 2"):
        TextTokenizer(raw, context_length=1)
    with pytest.raises(ConfigError, match="vocab_size 100 is too small"):
        train_bpe_tokenizer([TINY_CORPUS], 100)
    custom = train_bpe_tokenizer(
        [TINY_CORPUS], 300, special_tokens={"bos": "<s>", "eos": "</s>", "pad": "<pad>"}
    )
    tok = TextTokenizer(custom, special_tokens={"bos": "<s>", "eos": "</s>"}, context_length=8)
    assert tok.tokenizer.encode("cat").tokens[0] == "<s>"
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="could not read tokenizer"):
        load_tokenizer(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="neither tokenizer.json nor vocab.json"):
        load_tokenizer(tmp_path)


# --- the CLI command --------------------------------------------------------------------------


def test_cli_train_and_encode(tmp_path, capsys) -> None:
    out = tmp_path / "tok" / "tokenizer.json"
    code = main(["tokenizer", "train", str(TINY_CORPUS), "--vocab-size", "300", "--out", str(out)])
    assert code == 0 and out.is_file()
    assert "300 tokens" in capsys.readouterr().out
    text = TextModality(tokenizer=str(out), context_length=12)
    assert text.vocab_size == 300
    assert text.decode(text.preprocess("a red coat")["input_ids"]) == "a red coat"
    assert main(["tokenizer", "encode", str(out), "a red coat"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["tokens"][0] == "<start_of_text>" and line["tokens"][-1] == "<end_of_text>"
    bert = tmp_path / "bert.json"
    main(["tokenizer", "train", str(TINY_CORPUS), "--vocab-size", "300", "--out", str(bert),
          "--style", "bert", "--lowercase"])  # fmt: skip
    b = TextModality(tokenizer=str(bert), style="bert", context_length=12)
    assert b.decode(b.preprocess("A Red Coat")["input_ids"]) == "a red coat"
    code = main(["tokenizer", "train", str(tmp_path / "nope.txt"), "--vocab-size", "300"])
    assert code == 1
    assert "does not exist" in capsys.readouterr().err


def test_open_clip_merges_file(tmp_path) -> None:
    """open_clip ships only merges (bpe_simple_vocab_16e6.txt.gz) and builds the vocabulary:
    printable bytes first, then the other bytes, the same with </w>, merges, two specials."""
    path = tmp_path / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(
            "\n".join(["bpe_simple_vocab_16e6.txt#version: 0.2"] + [" ".join(m) for m in MERGES])
        )
    table = _bytes_to_unicode()
    printable = [c for b, c in table.items() if ord(c) == b]
    chars = printable + [c for b, c in table.items() if ord(c) != b]
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in MERGES]
    encoder = {t: i for i, t in enumerate(tokens + ["<start_of_text>", "<end_of_text>"])}
    text_mod = TextModality(tokenizer=str(path), context_length=32)
    assert text_mod.vocab_size == len(encoder)
    assert text_mod.tokenizer.special_tokens["bos"] == "<start_of_text>"
    for text in ("a photo of the cat!!", "catcat photo 7"):
        ids = text_mod.preprocess(text)["input_ids"]
        expected = _reference_clip_ids(text, encoder, "<start_of_text>", "<end_of_text>")
        assert ids[: len(expected)].tolist() == expected
