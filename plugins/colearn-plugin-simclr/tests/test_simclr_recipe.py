"""The headline recipe, shortened: the same code and model learn on a few thousand images.

The full run (hub/recipes/simclr-fashion-mnist.yaml, docs/methods/simclr.md) reaches 88.8%
linear-probe top-1; here 150 steps on 4,000 training images must give a representation far
above chance (10%) and the NT-Xent loss must fall.
"""

from __future__ import annotations

import json

import pytest

RECIPE = "hub/recipes/simclr-fashion-mnist.yaml"
LIMITS = "{train_limit: 4000, test_limit: 1000}"


def test_shortened_headline_recipe_learns(tmp_path):
    fm = pytest.importorskip("colearn_plugin_image.fashion_mnist")
    if fm._local_dir(None) is None:
        pytest.skip("Fashion-MNIST files not installed (apt install dataset-fashion-mnist)")
    from colearn_core.train.recipe import load_recipe
    from colearn_core.train.trainer import Trainer

    probe = (
        "[{task: linear-probe, baselines: [pixels], l2: 1.0e-4, max_iter: 100, "
        f"train: {{dataset: fashion-mnist, split: train, builder_args: {LIMITS}}}}}]"
    )
    recipe = load_recipe(
        RECIPE,
        [
            f"data.builder_args={LIMITS}",
            "trainer.max_steps=150",
            "trainer.log_every=25",
            "optim.warmup_steps=10",
            f"eval={probe}",
        ],
    )
    result = Trainer(recipe, output_dir=tmp_path / "run").fit()
    probe_result = result.eval["linear-probe"]
    assert probe_result["top1"] >= 0.6, probe_result  # chance: 0.1
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    ntxent = [x["loss/ntxent"] for x in lines if "loss/ntxent" in x]
    assert len(ntxent) >= 5 and ntxent[-1] < ntxent[0] - 0.5, ntxent
