"""The example plugin from the outside: found through its entry point, bound to images by ImageBind.

The second test runs the real trainer (``python -m colearn train``) on
hub/recipes/imagebind-sketch-fashion-mnist.yaml, shortened: 60 steps of 128 on 4,000 training
images, sketch -> image retrieval of the paired image among N = 500 held-out test images.
Over seeds 0-6 that gave R@1 0.106-0.154 (53-77x chance 1/N = 0.002), the same model untrained
(learning rate 1e-12) 0.002; the test asks for 25x chance. The full recipe reaches R@1 81.9%
among 10,000 test images (docs/writing-a-plugin.md). About 15 s on an idle 2-core CPU, 40 s
on a loaded one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import torch

import colearn_plugin_sketch

DIST = "colearn-plugin-sketch"
# examples/colearn-plugin-sketch/tests/ -> the repository root
ROOT = Path(__file__).resolve().parents[3]
RECIPE = ROOT / "hub" / "recipes" / "imagebind-sketch-fashion-mnist.yaml"
TEST_IMAGES = 500
BUILDER_ARGS = f"{{train_limit: 4000, test_limit: {TEST_IMAGES}}}"
SHORT = [
    f"data.builder_args={BUILDER_ARGS}",
    "trainer.max_steps=60",
    "trainer.epochs=null",
    "trainer.batch_size=128",
    "trainer.eval_every=null",
    "trainer.log_every=10",
    "optim.warmup_steps=10",
]
FASHION_MNIST_FILE = "t10k-images-idx3-ubyte.gz"


def colearn(*args: str, timeout: float, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed CLI in a fresh process, as a user would run it."""
    result = subprocess.run(
        [sys.executable, "-m", "colearn", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, (
        f"colearn {' '.join(args)} exited with {result.returncode}:\n{result.stderr[-4000:]}"
    )
    return result


def test_sketch_plugin_found_through_its_entry_point():
    (entry_point,) = metadata.entry_points(group="colearn", name="sketch")
    assert entry_point.value == "colearn_plugin_sketch"
    dist = entry_point.dist
    assert dist is not None and dist.metadata["Name"] == DIST
    # Installed as a third party installs it (pip install ./examples/...), not editable: the
    # imported module is a file the distribution installed.
    installed = {Path(dist.locate_file(f)).resolve() for f in dist.files or ()}
    assert Path(colearn_plugin_sketch.__file__).resolve() in installed, (
        f"colearn_plugin_sketch was imported from {colearn_plugin_sketch.__file__}, not from the "
        f"installed distribution; install it with pip install './examples/{DIST}[test]'"
    )

    listed = json.loads(colearn("plugins", "--json", timeout=120).stdout)
    (sketch,) = [p for p in listed if p["distribution"] == DIST]
    assert sketch["status"] == "loaded" and sketch["error"] is None
    assert sketch["name"] == "sketch" and sketch["module"] == "colearn_plugin_sketch"
    assert sketch["version"] == metadata.version(DIST)
    assert sketch["registered"] == {"modalities": ["sketch"], "encoders": ["sketch/cnn"]}


def fashion_mnist_installed() -> bool:
    folders = [os.environ.get("COLEARN_FASHION_MNIST_DIR"), "/usr/share/datasets/fashion-mnist"]
    return any(d and (Path(d) / FASHION_MNIST_FILE).exists() for d in folders)


@pytest.mark.skipif(
    not fashion_mnist_installed(),
    reason="Fashion-MNIST files not installed (apt install dataset-fashion-mnist)",
)
@pytest.mark.skipif(not RECIPE.exists(), reason=f"{RECIPE} not found (run from the repository)")
def test_imagebind_binds_sketches_to_images(tmp_path):
    from colearn_core import from_hub, registries

    run = tmp_path / "run"
    overrides = [arg for setting in SHORT for arg in ("--set", setting)]
    colearn(
        "train", str(RECIPE), "--output-dir", str(run), *overrides,
        timeout=600, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
    )  # fmt: skip

    pair = json.loads((run / "eval.json").read_text())["results"]["cross-modal-retrieval"]
    chance = 1 / TEST_IMAGES
    assert pair["n"] == TEST_IMAGES
    assert pair["sketch_to_image_recall@1"] >= 25 * chance, pair
    assert pair["image_to_sketch_recall@1"] >= 25 * chance, pair

    # ImageBind's only loss term pairs the sketch with its image, and it falls.
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    terms = {k for line in lines for k in line if k.startswith("loss/")}
    assert terms == {"loss/image_sketch"}
    losses = [line["loss/image_sketch"] for line in lines if "loss/image_sketch" in line]
    assert len(losses) >= 5 and losses[-1] < losses[0] - 1.0, losses

    # The saved model, loaded like any Hub model, retrieves as the trainer's evaluation said:
    # recall@1 recomputed here by argmax over the same held-out images.
    model = from_hub(run / "model").eval()
    assert model.config["towers"]["sketch"]["encoder"]["name"] == "sketch/cnn"
    test = registries.datasets.get("fashion-mnist")(train_limit=4000, test_limit=TEST_IMAGES)
    images = list(test["test"]["image"])
    assert len(images) == TEST_IMAGES
    with torch.no_grad():
        sketches = torch.nn.functional.normalize(model.embed_raw("sketch", images), dim=-1)
        pictures = torch.nn.functional.normalize(model.embed_raw("image", images), dim=-1)
    hits = (sketches @ pictures.T).argmax(dim=1) == torch.arange(TEST_IMAGES)
    assert hits.float().mean().item() == pytest.approx(pair["sketch_to_image_recall@1"], abs=2e-3)
