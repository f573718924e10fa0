"""The recipes: every clip-*.yaml is valid and builds its model; a tiny run through the trainer
is evaluated, pushed to a local Hub server and loaded back with the same results."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from colearn_plugin_image.fashion_mnist import DEBIAN_DIR

from colearn_core import from_hub, registries
from colearn_core.train import load_recipe, train
from colearn_core.train.evaluate import eval_data, run_tasks

ROOT = Path(__file__).resolve().parents[3]
RECIPES = sorted((ROOT / "hub" / "recipes").glob("clip-*.yaml"))


def _hub_server_class():
    spec = importlib.util.spec_from_file_location(
        "colearn_tests_hub_server", ROOT / "tests" / "hub" / "hub_server.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.HubServer


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A local Hub-API server and an empty Hub cache (see tests/hub/conftest.py)."""
    from huggingface_hub import constants
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()
    server = _hub_server_class()().start()
    home = tmp_path / "hf-home"
    for key, value in {
        "HF_ENDPOINT": server.url,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for key, value in {
        "ENDPOINT": server.url,
        "HUGGINGFACE_CO_URL_TEMPLATE": server.url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "HF_HUB_OFFLINE": False,
    }.items():
        monkeypatch.setattr(constants, key, value)
    yield server
    server.stop()


def test_there_are_recipes_from_tiny_to_vit_b_16():
    names = {p.stem for p in RECIPES}
    assert {"clip-tiny", "clip-fashion-mnist", "clip-vit-b-32", "clip-vit-b-16"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_is_valid_and_builds(path: Path):
    recipe = load_recipe(path)
    assert recipe.method.name == "clip"
    assert recipe.data.columns == {"image": "image", "text": "caption"}
    with torch.device("meta"):  # no memory, no initialisation
        model = registries.methods.get("clip").from_config(recipe.method.config)
    count = sum(p.numel() for p in model.parameters())
    if path.stem.startswith("clip-vit-b-"):
        open_clip = pytest.importorskip("open_clip")
        name = "ViT-B-" + path.stem.rsplit("-", 1)[-1]
        reference = open_clip.create_model(name, pretrained=None, device="meta")
        # the same architecture as open_clip's: 151,277,313 (B/32) and 149,620,737 (B/16)
        assert count == sum(p.numel() for p in reference.parameters())


@pytest.mark.skipif(
    not (DEBIAN_DIR / "t10k-images-idx3-ubyte.gz").exists(),
    reason="needs Debian's dataset-fashion-mnist files (no download in tests)",
)
def test_tiny_run_evaluates_pushes_and_loads_back_the_same(tmp_path: Path, hub):
    recipe = load_recipe(
        ROOT / "hub" / "recipes" / "clip-tiny.yaml",
        [
            "data.builder_args={train_limit: 128, test_limit: 60}",
            "trainer.epochs=null",
            "trainer.max_steps=3",
            "trainer.batch_size=32",
            "trainer.grad_accum_steps=2",  # the cached-feature contrastive path
            "trainer.trackers=[]",
        ],
    )
    result = train(recipe, output_dir=tmp_path / "run")
    zero_shot = result.eval["zero-shot-classification"]
    retrieval = result.eval["retrieval"]
    assert zero_shot["n"] == 60 and 0 <= zero_shot["top1"] <= zero_shot["top5"] <= 1
    assert retrieval["n"] == 60 and 0 <= retrieval["image_to_text_recall@1"] <= 1

    folder = tmp_path / "run" / "model"
    card = (folder / "README.md").read_text()
    assert "zero-shot-classification" in card and "top1" in card

    model = from_hub(folder)
    model.push_to_hub("colearn/clip-tiny-test", results={"zero-shot/fashion_mnist": zero_shot})
    pulled = from_hub("colearn/clip-tiny-test")
    for loaded in (model, pulled):
        data = eval_data(recipe, loaded, torch.device("cpu"))
        again = run_tasks(loaded, recipe.eval, data)
        assert again["zero-shot-classification"] == pytest.approx(zero_shot, abs=1e-9)
        assert again["retrieval"] == pytest.approx(retrieval, abs=1e-9)
