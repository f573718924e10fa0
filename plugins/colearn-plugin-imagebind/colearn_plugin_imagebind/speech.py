"""The ``fashion-speech`` dataset: Fashion-MNIST images with captions and spoken class names.

Every class name ("t-shirt", "ankle boot", ...) is spoken by ``espeak-ng`` in many voices
(an accent plus a voice variant, e.g. ``en-gb-scotland+f3``) and speeds. Training examples get
clips of the training voices; test examples get clips of *held-out* voices, whose accents and
variants never occur in training, so audio results on the test split measure generalisation
to new speakers.

The WAV files are generated once, in parallel, into a cache folder (``cache_dir``, else
``$COLEARN_CACHE/fashion-speech``, else ``~/.cache/colearn/fashion-speech``) and reused; a file
is written under a temporary name and renamed, so an interrupted build never leaves a broken
clip behind.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from colearn_plugin_clip.data import make_captions
from colearn_plugin_clip.prompts import (
    FASHION_MNIST_CLASS_NAMES,
    FASHION_MNIST_HELDOUT_TEMPLATES,
    FASHION_MNIST_TRAIN_TEMPLATES,
    resolve_templates,
)

from colearn_core import ColearnError, ConfigError

__all__ = [
    "TEST_SPEEDS",
    "TEST_VOICES",
    "TRAIN_SPEEDS",
    "TRAIN_VOICES",
    "Clip",
    "SpeechError",
    "build_fashion_speech",
    "default_cache_dir",
    "synthesize",
]

#: Training voices: 4 accents x 6 variants.
TRAIN_VOICES: tuple[str, ...] = tuple(
    f"{accent}+{variant}"
    for accent in ("en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland")
    for variant in ("m1", "m3", "m5", "f1", "f3", "f5")
)
#: Held-out voices (test split only): accents and variants that training never hears.
TEST_VOICES: tuple[str, ...] = ("en-029+m2", "en-029+f4", "en-us-nyc+m6", "en-us-nyc+f2")
#: Speaking rates (words per minute).
TRAIN_SPEEDS: tuple[int, ...] = (130, 160, 190)
TEST_SPEEDS: tuple[int, ...] = (145, 175)


class SpeechError(ColearnError, RuntimeError):
    """espeak-ng is missing or failed to speak a clip."""


@dataclass(frozen=True)
class Clip:
    """One spoken class name: its label, the words, the voice, the speed and the WAV file."""

    label: int
    text: str
    voice: str
    speed: int
    path: Path


def default_cache_dir() -> Path:
    """``$COLEARN_CACHE/fashion-speech``, else ``~/.cache/colearn/fashion-speech``."""
    root = os.environ.get("COLEARN_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "colearn"
    return base / "fashion-speech"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SpeechError(
            "espeak-ng is not installed; the fashion-speech dataset speaks its class names with "
            "it (Debian/Ubuntu: apt install espeak-ng; macOS: brew install espeak-ng)"
        )
    return exe


def _speak(exe: str, text: str, voice: str, speed: int, path: Path, rate: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.wav")
    result = subprocess.run(
        [exe, "-v", voice, "-s", str(speed), "-w", str(tmp), text],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0 or not tmp.is_file() or tmp.stat().st_size <= 44:
        tmp.unlink(missing_ok=True)
        raise SpeechError(
            f"espeak-ng could not speak {text!r} with voice {voice!r} at speed {speed} "
            f"(exit {result.returncode}): {result.stderr.strip()[:300] or 'no audio written'}; "
            "list the voices with `espeak-ng --voices=en` and `espeak-ng --voices=variant`"
        )
    try:
        _resample_file(tmp, rate)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _resample_file(path: Path, rate: int) -> None:
    """Rewrite a WAV at ``rate`` Hz (16-bit PCM), once here instead of at every epoch."""
    import soundfile
    import torch
    from colearn_plugin_audio.resample import resample

    data, sr = soundfile.read(str(path), dtype="float32", always_2d=True)  # (samples, ch)
    if sr != rate:
        wave = resample(torch.from_numpy(np.ascontiguousarray(data[:, 0])), sr, rate)
        data = wave.clamp(-1.0, 1.0).numpy()
    soundfile.write(str(path), data, rate, subtype="PCM_16", format="WAV")


def synthesize(
    class_names: Sequence[str],
    voices: Sequence[str],
    speeds: Sequence[int],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    sample_rate: int = 16000,
) -> list[Clip]:
    """Every class name spoken by every voice at every speed: the clips, in label, voice,
    speed order, as mono 16-bit WAVs at ``sample_rate`` (espeak-ng speaks at 22,050 Hz; the
    clips are resampled once, so that training does not resample at every epoch). Files
    already in the cache are reused; the missing ones are generated by ``workers`` espeak-ng
    processes at once (default: 2 per CPU)."""
    if not voices or not speeds:
        raise ConfigError("fashion-speech: voices and speeds must not be empty")
    for speed in speeds:
        if isinstance(speed, bool) or not isinstance(speed, int) or not 80 <= speed <= 450:
            raise ConfigError(
                f"fashion-speech: speeds are words per minute in 80..450, got {speed!r}"
            )
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    clips = [
        Clip(
            label,
            name,
            voice,
            int(speed),
            folder / f"{_slug(name)}__{_slug(voice)}__{int(speed)}__{sample_rate}.wav",
        )
        for label, name in enumerate(class_names)
        for voice in voices
        for speed in speeds
    ]
    todo = [c for c in clips if not c.path.is_file()]
    if todo:
        exe = _espeak()
        workers = workers or 2 * (os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            # list() re-raises the first failure
            list(
                pool.map(lambda c: _speak(exe, c.text, c.voice, c.speed, c.path, sample_rate), todo)
            )
    return clips


def build_fashion_speech(
    *,
    train_limit: int | None = None,
    test_limit: int | None = None,
    seed: int = 0,
    cache_dir: str | None = None,
    train_voices: Sequence[str] = TRAIN_VOICES,
    test_voices: Sequence[str] = TEST_VOICES,
    train_speeds: Sequence[int] = TRAIN_SPEEDS,
    test_speeds: Sequence[int] = TEST_SPEEDS,
    drop_text: float = 0.0,
    drop_audio: float = 0.0,
    train_templates: Sequence[str] | str = FASHION_MNIST_TRAIN_TEMPLATES,
    test_templates: Sequence[str] | str = FASHION_MNIST_HELDOUT_TEMPLATES,
    root: str | None = None,
    workers: int | None = None,
) -> Any:
    """Fashion-MNIST with captions and spoken class names, as a ``DatasetDict`` with splits
    ``train`` and ``test`` (``*_limit``: class-balanced subsets).

    Columns: ``image`` (28x28 uint8), ``label`` (10 classes), ``caption`` (a template filled
    with the class name: ``train_templates`` / ``test_templates``), ``audio`` (path of a WAV
    of the class name), ``voice`` and ``speed`` of that clip. Each example's clip is drawn
    (with ``seed``) from its class's clips in the split's voices: the train split hears only
    ``train_voices``, the test split only ``test_voices`` (which must not overlap).

    ``drop_text`` / ``drop_audio``: fractions of *training* examples whose caption / audio is
    missing (``None``), disjoint, so every example keeps an image and at least one other
    modality (ImageBind's setting: each modality comes paired with images, not with each
    other). The test split is complete.
    """
    import datasets
    from colearn_plugin_image.fashion_mnist import load_fashion_mnist

    overlap = sorted(set(train_voices) & set(test_voices))
    if overlap:
        raise ConfigError(
            f"fashion-speech: voices {overlap} are in both train_voices and test_voices; "
            "held-out voices must be new"
        )
    for name, value in (("drop_text", drop_text), ("drop_audio", drop_audio)):
        if not 0.0 <= float(value) <= 1.0:
            raise ConfigError(f"fashion-speech: {name} must be in [0, 1], got {value!r}")
    if float(drop_text) + float(drop_audio) > 1.0:
        raise ConfigError(
            f"fashion-speech: drop_text + drop_audio = {drop_text + drop_audio} > 1: some "
            "examples would have only an image"
        )
    names = list(FASHION_MNIST_CLASS_NAMES)
    banks = {
        split: synthesize(names, voices, speeds, cache_dir=cache_dir, workers=workers)
        for split, voices, speeds in (
            ("train", train_voices, train_speeds),
            ("test", test_voices, test_speeds),
        )
    }
    splits = {}
    for offset, (split, templates, limit) in enumerate(
        (("train", train_templates, train_limit), ("test", test_templates, test_limit))
    ):
        ds = load_fashion_mnist(split, limit=limit, root=root)
        labels = np.asarray(ds["label"], dtype=np.int64)
        rng = np.random.default_rng([seed, offset])
        by_class: dict[int, list[Clip]] = {}
        for clip in banks[split]:
            by_class.setdefault(clip.label, []).append(clip)
        picks = [by_class[int(c)][int(rng.integers(len(by_class[int(c)])))] for c in labels]
        captions: list[str | None] = list(
            make_captions(labels, resolve_templates(templates), seed=seed + offset)
        )
        audio: list[str | None] = [str(c.path) for c in picks]
        voices: list[str | None] = [c.voice for c in picks]
        speeds: list[int | None] = [c.speed for c in picks]
        if split == "train" and (drop_text or drop_audio):
            order = rng.permutation(len(labels))
            n_text = int(round(float(drop_text) * len(labels)))
            n_audio = int(round(float(drop_audio) * len(labels)))
            for i in order[:n_text]:
                captions[i] = None
            for i in order[n_text : n_text + n_audio]:
                audio[i] = voices[i] = speeds[i] = None
        ds = ds.add_column("caption", captions)
        ds = ds.add_column("audio", audio)
        ds = ds.add_column("voice", voices)
        ds = ds.add_column("speed", speeds)
        splits[split] = ds.with_format(
            "numpy", columns=["image"], output_all_columns=True, dtype=np.uint8
        )
    return datasets.DatasetDict(splits)
