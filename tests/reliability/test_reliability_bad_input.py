"""Bad input gives a clear error that names the file, field or example, and writes nothing.

Cases the Hub, trainer and core tests already cover are not repeated here; docs/reliability.md
lists them with the test that checks each (damaged safetensors, config.json fields, unknown
method, newer format version, shape mismatches, missing columns, unknown recipe keys, a plugin
raising during registration).
"""

from __future__ import annotations

import io
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from train_helpers import BASE

from colearn_core.cli import main
from colearn_core.hub import WeightsError, from_hub, save_pretrained
from colearn_core.registry import registries
from colearn_core.train.data import DataError, Examples, make_loader
from colearn_core.train.recipe import apply_overrides


def listing(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


# --- weights of the wrong dtype --------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64, torch.int32])
def test_a_weight_of_the_wrong_dtype_is_refused_naming_the_key_and_both_dtypes(
    tmp_path, make_model, dtype
):
    # An error rather than a cast: load_state_dict would copy an int32 tensor into the float
    # weights (or float16 into float32) without a word, and the model would be silently wrong.
    folder = save_pretrained(make_model(), tmp_path / "m")
    weights = load_file(folder / "model.safetensors")
    weights["projections.a.weight"] = (weights["projections.a.weight"] * 100).to(dtype)
    save_file(weights, folder / "model.safetensors")
    before = listing(folder)
    with pytest.raises(WeightsError) as info:
        from_hub(folder)
    message = str(info.value)
    name = str(dtype).removeprefix("torch.")
    assert "model.safetensors" in message
    assert f"dtype mismatches (1): projections.a.weight: file {name} vs model float32" in message
    assert listing(folder) == before  # loading never writes


# --- datasets: through `colearn train`, as a user meets them ---------------------------------


def run_train(tmp_path: Path, capsys, data: dict | None = None, *sets: str) -> tuple[int, str]:
    recipe = apply_overrides(BASE, sets)
    if data is not None:
        recipe["data"].update(data)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    capsys.readouterr()
    code = main(["train", str(path), "--output-dir", str(tmp_path / "run")])
    return code, capsys.readouterr().err


def nothing_written(run: Path) -> bool:
    """No checkpoint and no model: at most the recipe and an empty log of a run that failed."""
    return not (run / "checkpoints").exists() and not (run / "model").exists()


def save_dataset(folder: Path, columns: dict) -> str:
    datasets.Dataset.from_dict(columns).save_to_disk(str(folder))
    return str(folder)


def pairs(n: int) -> dict:
    return registries.datasets.get("toy-pairs")(n=n, seed=0).to_dict()


@pytest.mark.parametrize(
    ("builder_args", "expected"),
    [
        ({"n": 0}, "dataset 'toy-pairs' split 'train' is empty (0 examples)"),
        ({"n": 10}, "has 10 examples, fewer than one batch (trainer.batch_size=16)"),
    ],
    ids=["empty", "smaller-than-a-batch"],
)
def test_an_empty_dataset_stops_before_anything_is_written(
    tmp_path, capsys, builder_args, expected
):
    code, err = run_train(tmp_path, capsys, {"builder_args": builder_args})
    assert code == 1 and "colearn train: error:" in err and expected in err, err
    assert nothing_written(tmp_path / "run")


def test_a_missing_column_is_named_with_the_columns_there_are(tmp_path, capsys):
    code, err = run_train(tmp_path, capsys, {"columns": {"a": "a", "b": "caption"}})
    assert code == 1, err
    assert "key 'data.columns.b'" in err and "no column 'caption'" in err
    assert "its columns: a, b, label" in err
    assert nothing_written(tmp_path / "run")


def test_a_column_of_the_wrong_modality_type_names_example_column_and_modality(tmp_path, capsys):
    rows = pairs(32)
    rows["text"] = [f"caption {i}" for i in range(32)]  # strings where vectors are expected
    dataset = save_dataset(tmp_path / "ds", rows)
    data = {"dataset": dataset, "builder_args": {}, "columns": {"a": "a", "b": "text"}}
    code, err = run_train(tmp_path, capsys, data)
    assert code == 1, err
    assert "column 'text' (modality 'b')" in err and "example " in err, err
    assert nothing_written(tmp_path / "run")


# --- image and audio samples, through the trainer's data pipeline ---------------------------


def png(size: int = 8) -> bytes:
    import PIL.Image

    buffer = io.BytesIO()
    PIL.Image.fromarray(np.full((size, size, 3), 128, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def first_batch_error(dataset, column: str, modality_name: str, **config) -> str:
    modality = registries.modalities.get(modality_name)(**config)
    examples = Examples(dataset, {modality_name: column}, {modality_name: modality}, name="ds")
    loader, _ = make_loader(examples, len(dataset), seed=0, shuffle=False)
    with pytest.raises(DataError) as info:
        next(iter(loader))
    return str(info.value)


@pytest.mark.parametrize("decoded_by", ["datasets-Image-feature", "modality"])
def test_an_image_that_cannot_be_decoded_is_named_by_example_index(decoded_by):
    images = [{"bytes": png(), "path": None} for _ in range(6)]
    images[3] = {"bytes": b"\x89PNG\r\n\x1a\n but then nothing an image has", "path": None}
    if decoded_by == "modality":  # raw bytes: the image modality decodes them
        dataset = datasets.Dataset.from_dict({"img": [i["bytes"] for i in images]})
    else:  # an Image column: `datasets` decodes it when the rows are read
        features = datasets.Features({"img": datasets.Image()})
        dataset = datasets.Dataset.from_dict({"img": images}, features=features)
    message = first_batch_error(dataset, "img", "image", image_size=8)
    assert "example 3" in message and "'img'" in message, message
    for other in (0, 1, 2, 4, 5):
        assert f"example {other}" not in message and f"examples [{other}" not in message


@pytest.mark.parametrize("form", ["decoded-array", "wav-file-bytes"])
def test_audio_of_zero_length_is_named_by_example_index(form):
    import soundfile

    rate = 16000
    tone = np.sin(np.arange(rate // 4) / 5.0).astype(np.float32)
    if form == "decoded-array":
        sounds = [{"array": tone.tolist(), "sampling_rate": rate} for _ in range(3)]
        sounds[1] = {"array": [], "sampling_rate": rate}
    else:

        def wav(samples: np.ndarray) -> bytes:
            buffer = io.BytesIO()
            soundfile.write(buffer, samples, rate, format="WAV")
            return buffer.getvalue()

        sounds = [wav(tone), wav(np.zeros(0, np.float32)), wav(tone)]
    message = first_batch_error(datasets.Dataset.from_dict({"sound": sounds}), "sound", "audio")
    assert "example 1, column 'sound' (modality 'audio')" in message, message
    assert "empty (0 samples)" in message
