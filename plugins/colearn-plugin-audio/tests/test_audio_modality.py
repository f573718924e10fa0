"""The audio modality: decoding of every input kind, clips, the full ImageBind pipeline, errors."""

from __future__ import annotations

import importlib.util
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from colearn_plugin_audio.modality import AudioModality, clip_starts, decode_audio
from colearn_plugin_depth.single_channel import SampleError
from safetensors.torch import load_file

from colearn_core import ConfigError, registries
from colearn_core.testing import check_modality

DATA = Path(__file__).resolve().parent / "data"
PAD = (0.0 + 4.268) / 9.138  # a zero-padded frame after ImageBind's normalisation


def _reference_script():
    spec = importlib.util.spec_from_file_location(
        "make_fbank_reference", DATA / "make_fbank_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ref():
    return load_file(str(DATA / "fbank_reference.safetensors"))


@pytest.fixture(scope="module")
def modality():
    return AudioModality()


def _tone(sr=16000, seconds=1.0, freq=440.0, channels=None):
    t = np.arange(int(sr * seconds)) / sr
    wave = (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    if channels:
        wave = np.stack([wave * (c + 1) / channels for c in range(channels)])
    return wave


def test_contract_and_registration():
    assert registries.modalities.get("audio") is AudioModality
    batch = check_modality(AudioModality)
    assert batch["fbank"].shape == (3, 3, 1, 128, 204)


def test_hello_wav_matches_imagebind(modality, ref):
    """The whole pipeline on a 22.05 kHz WAV against ImageBind's, run with torchaudio."""
    out = modality.preprocess(DATA / "hello.wav", index=0)["fbank"]
    assert out.shape == (3, 1, 128, 204)
    expected = ref["hello.pipeline"]
    for clip in out:  # 0.72 s < 2 s: the three clips are the same
        # Only the resampler's float32 rounding differs; in the few mel bins near 8 kHz whose
        # energy is at the log floor, torchaudio's 7e-6 rounding noise is amplified. Everywhere
        # else the match is ~1e-5.
        torch.testing.assert_close(clip, expected, atol=5e-3, rtol=0)
        assert (clip - expected).abs().mean() < 1e-4
        assert (clip - expected).abs()[:, :100].max() < 1e-3
    # frames 70.. are ImageBind's zero padding
    assert torch.allclose(out[:, :, :, 70:], torch.tensor(PAD))


def test_long_audio_clips_match_imagebind(ref):
    """3 overlapping 1 s clips of a 3.3 s, 8 kHz signal with a DC offset."""
    signal = _reference_script().long_signal().astype(np.float32)
    out = AudioModality(clip_duration=1, target_length=100).preprocess((signal, 8000))["fbank"]
    assert out.shape == (3, 1, 128, 100)
    torch.testing.assert_close(out, ref["long.pipeline"], atol=1e-3, rtol=0)


def test_clip_starts_follow_constant_clips_per_video():
    assert clip_starts(8.0, 2.0, 3) == [0, 2, 4]
    assert clip_starts(1.5, 2.0, 3) == [0, 0, 0]
    assert clip_starts(10.0, 2.0, 1) == [0]
    assert clip_starts(3.3, 1.0, 3)[1] == Fraction(3.3 - 1.0) / 3


def test_clips_are_the_right_slices():
    modality = AudioModality(clips_per_example=4)
    ramp = torch.arange(160000, dtype=torch.float32)  # 10 s: clips at 0, 2, 4, 6 s
    clips = modality.clips(ramp)
    assert len(clips) == 4
    for clip, start in zip(clips, (0, 32000, 64000, 96000)):
        piece = ramp[start : start + 32000]
        torch.testing.assert_close(clip, piece - piece.mean())


def test_several_clips_per_example_hear_different_parts():
    # 9 s, 3 clips of 2 s starting at 0, 7/3 and 14/3 s; the pitch changes at those times
    sr = 16000
    t = np.arange(9 * sr) / sr
    freq = np.where(t < 7 / 3, 300.0, np.where(t < 14 / 3, 1200.0, 4000.0))
    wave = (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    out = AudioModality(clips_per_example=3).preprocess((wave, sr))["fbank"]
    assert out.shape == (3, 1, 128, 204)
    peaks = out[:, 0, :, :198].mean(-1).argmax(-1)  # mel bin with most energy, per clip
    assert peaks[0] < peaks[1] < peaks[2]
    one = AudioModality(clips_per_example=1, clip_duration=9.0, target_length=900)
    assert one.preprocess((wave, sr))["fbank"].shape == (1, 1, 128, 900)


def test_target_length_pads_or_crops(modality):
    long = AudioModality(target_length=150).preprocess((_tone(seconds=3.0), 16000))["fbank"]
    full = modality.preprocess((_tone(seconds=3.0), 16000))["fbank"]
    assert long.shape[-1] == 150
    torch.testing.assert_close(long, full[..., :150])
    assert torch.allclose(full[..., 198:], torch.tensor(PAD))
    assert modality.frames_per_clip() == 198


def test_every_input_kind_decodes_to_the_same_features(tmp_path, modality):
    wave = _tone(22050, 0.5)
    pcm16 = np.round(wave * 32767).astype(np.int16)
    path = tmp_path / "tone.wav"
    soundfile.write(path, pcm16, 22050, subtype="PCM_16")
    raw = path.read_bytes()

    class FakeDecoder:  # stands in for torchcodec's AudioDecoder (datasets >= 4)
        def get_all_samples(self):
            from types import SimpleNamespace

            return SimpleNamespace(data=torch.from_numpy(pcm16 / 32768.0)[None], sample_rate=22050)

    expected = modality.preprocess((pcm16, 22050))["fbank"]
    samples = [
        str(path),
        path,
        raw,
        {"bytes": raw, "path": "ignored.wav"},
        {"bytes": None, "path": str(path)},
        {"array": pcm16.astype(np.float32) / 32768.0, "sampling_rate": 22050},
        {"array": torch.from_numpy(pcm16), "sampling_rate": 22050.0},
        (pcm16[None], 22050),
        [(pcm16 / 32768.0).tolist(), 22050],
        FakeDecoder(),
    ]
    for i, sample in enumerate(samples):
        out = modality.preprocess(sample, index=i)["fbank"]
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=0, msg=f"input kind {i}")


def test_wav_decoding_scales_pcm(tmp_path):
    pcm = np.array([0, 16384, -32768, 32767], dtype=np.int16)
    soundfile.write(tmp_path / "x.wav", pcm, 8000, subtype="PCM_16")
    data, sr = decode_audio(tmp_path / "x.wav")
    assert sr == 8000 and data.shape == (1, 4)
    np.testing.assert_allclose(data[0], pcm / 32768.0)
    data, _ = decode_audio((np.array([0, 64, 128, 255], dtype=np.uint8), 8000))
    np.testing.assert_allclose(data[0], [-1.0, -0.5, 0.0, 127 / 128])


def test_stereo_mixdown():
    stereo = _tone(channels=2)  # channel 1 is twice channel 0
    mean = AudioModality(mix="mean").waveform((stereo, 16000))
    first = AudioModality(mix="first").waveform((stereo, 16000))
    torch.testing.assert_close(mean, torch.from_numpy(stereo.mean(0)))
    torch.testing.assert_close(first, torch.from_numpy(stereo[0]))


def test_resampling_to_16k_in_the_pipeline(modality):
    wave = modality.waveform((_tone(44100, 1.0), 44100))
    assert wave.shape == (16000,)
    custom = AudioModality(sample_rate=8000).waveform((_tone(44100, 1.0), 44100))
    assert custom.shape == (8000,)


def test_collate_stacks_examples(modality):
    batch = modality.collate([modality.preprocess(s) for s in AudioModality.example_samples(2)])
    assert batch["fbank"].shape == (2, 3, 1, 128, 204)


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        ((np.zeros(0, dtype=np.float32), 16000), "empty (0 samples)"),
        ((np.zeros(16000, dtype=np.float32), 16000), "silent (peak amplitude 0)"),
        (
            (np.array([0.1, np.nan, 0.2] * 400, dtype=np.float32), 16000),
            "400 samples are NaN or infinite; expected finite audio",
        ),
        ((np.ones(1000, dtype=bool), 16000), "wrong dtype bool: expected float samples"),
        ((np.ones(1000, dtype=np.int64), 16000), "wrong dtype int64"),
        ((np.ones(1000, dtype=np.complex64), 16000), "wrong dtype complex64"),
        ((np.ones((16000, 2), dtype=np.float32), 16000), "looks like (samples, channels)"),
        ((np.ones((2, 2, 9), dtype=np.float32), 16000), "expected (samples,) or (channels"),
        ((np.ones(100, dtype=np.float32), 16000), "shorter than one 25.0 ms frame"),
        ((np.ones(1000, dtype=np.float32), 0), "sampling rate must be a positive integer"),
        ((np.ones(1000, dtype=np.float32), 22050.5), "sampling rate must be a positive integer"),
        (np.ones(1000, dtype=np.float32), "a bare array has no sampling rate"),
        ({"array": np.ones(1000)}, "no 'sampling_rate'"),
        ({"audio": 1}, "expected 'array' and 'sampling_rate'"),
        (b"RIFF but not really a wav", "cannot decode 25 bytes as audio"),
        ("/nonexistent/clip.wav", "file not found"),
        (3.0, "cannot decode a float"),
    ],
)
def test_bad_inputs_name_modality_and_example(modality, sample, message):
    with pytest.raises(SampleError) as info:
        modality.preprocess(sample, index=7)
    text = str(info.value)
    assert text.startswith("modality 'audio', example 7:"), text
    assert message in text, text


def test_undecodable_file(tmp_path, modality):
    bad = tmp_path / "notes.wav"
    bad.write_text("this is text, not audio")
    with pytest.raises(SampleError, match=r"example 2: cannot decode file .*notes.wav.* as audio"):
        modality.preprocess(bad, index=2)


def test_config_errors():
    with pytest.raises(ConfigError, match="unknown config key.*clips_per_video"):
        AudioModality(clips_per_video=3)
    with pytest.raises(ConfigError, match="mix must be"):
        AudioModality(mix="sum")
    with pytest.raises(ConfigError, match="clips_per_example must be a positive int"):
        AudioModality(clips_per_example=0)
