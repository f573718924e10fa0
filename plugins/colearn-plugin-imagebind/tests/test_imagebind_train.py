"""ImageBind through colearn's trainer: examples that miss modalities, frozen towers, gradient
accumulation with cached features, evaluation tasks, the saved model, and the shipped recipe."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from imagebind_helpers import images, texts, tiny_config, tones

from colearn_core import from_hub, load_plugins, registries
from colearn_core.train.data import Collate
from colearn_core.train.recipe import load_recipe, parse_recipe
from colearn_core.train.trainer import Trainer

CLASSES = ["cat", "dog", "bird", "fish"]
NO_TEXT = (1, 5, 9)
NO_AUDIO = (2, 6, 10, 14)


@pytest.fixture(scope="module")
def dataset_name(tmp_path_factory):
    """A registered builder: 16 examples of image + caption + audio file, some missing."""
    import datasets

    folder = tmp_path_factory.mktemp("wavs")
    wavs: list[str | None] = []
    for i, (wave, rate) in enumerate(tones(16)):
        path = folder / f"{i}.wav"
        soundfile.write(str(path), wave, rate)
        wavs.append(str(path))
    captions: list[str | None] = list(texts(16))
    for i in NO_TEXT:
        captions[i] = None
    for i in NO_AUDIO:
        wavs[i] = None
    features = datasets.Features(
        {
            "image": datasets.Array2D((16, 16), "uint8"),
            "caption": datasets.Value("string"),
            "audio": datasets.Value("string"),
            "label": datasets.Value("int64"),
        }
    )
    data = {"image": np.stack(images(16)), "caption": captions, "audio": wavs}
    data["label"] = [i % 4 for i in range(16)]
    ds = datasets.Dataset.from_dict(data, features=features).with_format(
        "numpy", columns=["image"], output_all_columns=True, dtype=np.uint8
    )
    name = "ib-test-missing"
    load_plugins()  # a first lookup would load them and clear what is registered before
    registries.datasets.register(name, lambda: ds)
    yield name
    registries.datasets.unregister(name)


def recipe(dataset: str, *, accum: int = 2, steps: int = 2, **config):
    return parse_recipe(
        {
            "method": {"name": "imagebind", "config": tiny_config(**config)},
            "data": {
                "dataset": dataset,
                "columns": {"image": "image", "text": "caption", "audio": "audio"},
                "label_column": "label",
            },
            "optim": {"lr": 1.0e-2, "warmup_steps": 0, "weight_decay": 0.0},
            "trainer": {
                "max_steps": steps,
                "batch_size": 8,
                "grad_accum_steps": accum,
                "log_every": 1,
                "seed": 0,
            },
            "eval": [
                {"task": "emergent-zero-shot", "class_names": CLASSES, "templates": "identity"},
                {"task": "cross-modal-retrieval", "query": "audio", "target": "image"},
            ],
        },
        "test recipe",
    )


def test_cached_accumulation_with_missing_rows_and_frozen_towers_equals_one_batch(
    dataset_name, tmp_path
):
    trainer = Trainer(recipe(dataset_name, freeze=["image", "text"]), output_dir=tmp_path / "run")
    assert trainer.cached_contrastive
    # the first micro-batch has no audio at all, the second no caption in one row
    rows = [*NO_AUDIO, 0, 1, 3, 4]
    batch = Collate(trainer.examples.modalities)(trainer.examples.__getitems__(rows))
    assert batch["audio"]["present"].tolist() == [False] * 4 + [True] * 4
    reference = copy.deepcopy(trainer.method)
    losses = trainer.compute_gradients(batch)

    want = reference(batch).losses
    sum(want.values()).backward()
    assert set(losses) == set(want) == {"image_text", "image_audio"}
    for key in want:
        torch.testing.assert_close(losses[key], want[key].detach(), atol=1e-6, rtol=1e-5)
    for (name, p), q in zip(trainer.method.named_parameters(), reference.parameters()):
        if name.startswith(("towers.image", "towers.text")):
            assert p.grad is None and q.grad is None, name  # frozen
        elif q.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, atol=1e-6, rtol=1e-5, msg=name)
    assert any(
        p.grad is not None and p.grad.abs().sum() > 0
        for p in trainer.method.towers["audio"].parameters()
    )


def test_training_run_saves_a_model_that_loads_and_evaluates(dataset_name, tmp_path):
    trainer = Trainer(recipe(dataset_name, freeze=["image"]), output_dir=tmp_path / "run")
    before = {k: v.clone() for k, v in trainer.method.state_dict().items()}
    result = trainer.fit()
    assert result.step == 2
    assert set(result.eval) == {"emergent-zero-shot", "cross-modal-retrieval"}
    assert result.eval["emergent-zero-shot"]["n"] == 16 - len(NO_AUDIO)  # present rows only
    after = trainer.method.state_dict()
    for key, value in after.items():
        if key.startswith("towers.image"):
            assert torch.equal(value, before[key]), key
    assert not torch.equal(after["towers.audio.head.weight"], before["towers.audio.head.weight"])
    model = from_hub(result.run_dir / "model", modalities=["image", "audio"])
    assert set(model.towers) == {"image", "audio"}
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, after[key], atol=0, rtol=0)
    evaluation = json.loads((result.run_dir / "eval.json").read_text())
    assert "emergent-zero-shot" in evaluation["results"]


def test_shipped_recipe_builds():
    path = Path(__file__).parents[3] / "hub" / "recipes" / "imagebind-fashion-speech.yaml"
    if not path.is_file():
        pytest.skip("the recipe lives in the repository's hub/ (not in an installed copy)")
    r = load_recipe(path)
    assert r.method.name == "imagebind" and r.data.dataset == "fashion-speech"
    with torch.device("meta"):
        model = registries.methods.get("imagebind").from_config(r.method.config)
    assert set(model.towers) == {"image", "text", "audio"}
    assert set(r.data.columns) == set(model.towers)
    tasks = {e.task for e in r.eval}
    assert {"emergent-zero-shot", "cross-modal-retrieval", "imagebind-zero-shot"} <= tasks
    for entry in r.eval:
        registries.tasks.get(entry.task)(**entry.args)  # every task accepts its arguments
