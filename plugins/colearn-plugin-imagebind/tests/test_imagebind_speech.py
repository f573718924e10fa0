"""The fashion-speech dataset: espeak-ng clips (cached, 16 kHz), held-out voices, captions,
missing modalities."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile
from colearn_plugin_imagebind import speech
from colearn_plugin_imagebind.speech import SpeechError, build_fashion_speech, synthesize

from colearn_core import ConfigError

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (apt install espeak-ng)"
)


def test_clips_are_spoken_once_and_cached(tmp_path, monkeypatch):
    clips = synthesize(["bag", "ankle boot"], ["en-us+m1", "en-gb+f3"], [150], cache_dir=tmp_path)
    assert [(c.label, c.voice) for c in clips] == [
        (0, "en-us+m1"),
        (0, "en-gb+f3"),
        (1, "en-us+m1"),
        (1, "en-gb+f3"),
    ]
    durations = {}
    for clip in clips:
        data, rate = soundfile.read(str(clip.path), dtype="float32")
        assert rate == 16000 and data.ndim == 1
        assert np.abs(data).max() > 0.05  # speech, not silence
        durations[(clip.text, clip.voice)] = data.shape[0] / rate
    assert all(0.2 < d < 3.0 for d in durations.values())
    # "ankle boot" takes longer to say than "bag", in both voices
    for voice in ("en-us+m1", "en-gb+f3"):
        assert durations[("ankle boot", voice)] > durations[("bag", voice)]
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left behind

    def fail(*args, **kwargs):
        raise AssertionError("a cached clip was spoken again")

    monkeypatch.setattr(speech.subprocess, "run", fail)
    again = synthesize(["bag", "ankle boot"], ["en-us+m1", "en-gb+f3"], [150], cache_dir=tmp_path)
    assert [c.path for c in again] == [c.path for c in clips]


def test_a_bad_voice_is_named(tmp_path):
    with pytest.raises(SpeechError, match="voice 'xx-nonexistent'"):
        synthesize(["bag"], ["xx-nonexistent"], [150], cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="words per minute"):
        synthesize(["bag"], ["en-us"], [5], cache_dir=tmp_path)


def test_dataset_pairs_images_with_captions_and_held_out_voices(tmp_path):
    ds = build_fashion_speech(
        train_limit=40,
        test_limit=20,
        train_voices=["en-us+m1", "en-gb+f3"],
        test_voices=["en-029+m2"],
        train_speeds=[160],
        test_speeds=[150],
        drop_text=0.25,
        drop_audio=0.25,
        cache_dir=str(tmp_path),
    )
    train, test = ds["train"], ds["test"]
    assert len(train) == 40 and len(test) == 20
    assert set(train.column_names) == {"image", "label", "caption", "audio", "voice", "speed"}
    assert train[0]["image"].shape == (28, 28) and train[0]["image"].dtype == np.uint8
    names = speech.FASHION_MNIST_CLASS_NAMES
    for split, voices in ((train, {"en-us+m1", "en-gb+f3"}), (test, {"en-029+m2"})):
        rows = split[:]
        for label, caption, audio, voice in zip(
            rows["label"], rows["caption"], rows["audio"], rows["voice"]
        ):
            if caption is not None:
                assert names[label] in caption
            if audio is not None:
                assert voice in voices
                assert f"{speech._slug(names[label])}__" in audio  # the class's own word
    assert set(test["voice"]) == {"en-029+m2"}  # only the held-out voice
    captions, audio = (
        np.array(train["caption"], dtype=object),
        np.array(train["audio"], dtype=object),
    )
    assert (captions == None).sum() == 10 and (audio == None).sum() == 10  # noqa: E711
    assert not ((captions == None) & (audio == None)).any()  # noqa: E711
    assert None not in test["caption"] and None not in test["audio"]


def test_dataset_arguments_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="held-out voices must be new"):
        build_fashion_speech(train_voices=["en-us"], test_voices=["en-us"], cache_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="only an image"):
        build_fashion_speech(drop_text=0.6, drop_audio=0.6, cache_dir=str(tmp_path))
