"""The fashion-scenes tokenizer: a byte-level BPE (colearn-plugin-text) in BERT style.

Trained on the captions and questions of 3000 training scenes; the vocabulary is small enough
that every word of the scenes' language ends up one token. The trained file ships with the
plugin (:data:`TOKENIZER`); :func:`train_tokenizer` rebuilds it.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["TOKENIZER", "corpus", "train_tokenizer"]

#: The shipped tokenizer (the recipes point the text modality at it).
TOKENIZER = Path(__file__).parent / "data" / "fashion-scenes-tokenizer.json"


def corpus(n: int = 3000, seed: int = 0) -> list[str]:
    """Every caption sentence and question of ``n`` training scenes."""
    from .scenes import make_scenes

    lines: list[str] = []
    for scene in make_scenes(n, "train", seed):
        lines += scene.sentences + [question for _, question, _ in scene.qa]
    return lines


def train_tokenizer(path: str | Path = TOKENIZER, vocab_size: int = 384, n: int = 3000) -> Path:
    """Train the BPE on :func:`corpus` and write ``tokenizer.json`` to ``path``."""
    from colearn_plugin_text.tokenizer import TextTokenizer, train_bpe_tokenizer

    raw = train_bpe_tokenizer(corpus(n), vocab_size, style="bert", from_files=False)
    tokenizer = TextTokenizer(raw, style="bert", context_length=64)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(path)
    return path


if __name__ == "__main__":
    print(train_tokenizer())
