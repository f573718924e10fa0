"""Evaluation tasks: metric arithmetic on controlled models, and a tiny trainer run."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from colearn_plugin_vilbert.model import ViLBERT, tiny_config
from colearn_plugin_vilbert.scenes import ANSWERS, QUESTION_TYPES
from colearn_plugin_vilbert.vocab import TOKENIZER

from colearn_core import registries
from colearn_core.cli import main


def _batches(n=12, per=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, n, per):
        b = min(per, n - start)
        ids = torch.randint(5, 40, (b, 8), generator=g)
        ids[:, 1] = torch.arange(start, start + b) + 5  # caption "names" its image
        r = 2 + start // per % 2  # batches with different region counts
        feats = torch.randn(b, r, 12, generator=g)
        feats[:, 0, 0] = torch.arange(start, start + b).float()  # image id
        out.append(
            {
                "text": {"input_ids": ids, "attention_mask": torch.ones(b, 8, dtype=torch.long)},
                "regions": {
                    "features": feats,
                    "locations": torch.rand(b, r, 5, generator=g),
                    "mask": torch.ones(b, r, dtype=torch.bool),
                    "class_probs": torch.softmax(torch.randn(b, r, 6, generator=g), -1),
                },
                "label": torch.randint(0, 3, (b,), generator=g),
            }
        )
    return out


class Oracle(ViLBERT):
    """Scores a pair by how close the caption's id token is to the image's id feature."""

    def alignment_score(self, text, regions):
        return -(text["input_ids"][:, 1].float() - 5 - regions["features"][:, 0, 0]).abs()


def test_retrieval_recall_on_an_oracle_and_a_reversed_oracle():
    task = registries.tasks.get("vilbert-retrieval")(max_images=10, chunk=7)
    oracle = Oracle(tiny_config())
    metrics = task.evaluate(oracle, _batches())
    assert metrics == {"R@1": 1.0, "R@5": 1.0, "R@10": 1.0, "images": 10.0, "median_rank": 1.0}

    class Reversed(Oracle):
        def alignment_score(self, text, regions):
            return -super().alignment_score(text, regions)

    m = task.evaluate(Reversed(tiny_config()), _batches())
    # the own image is the farthest for most captions: ranks 6..10 of 10
    assert m["R@1"] == 0.0 and m["R@5"] == 0.0 and m["R@10"] == 1.0


def test_retrieval_scores_are_the_model_alignment_log_odds():
    torch.manual_seed(0)
    model = ViLBERT(tiny_config()).eval()
    task = registries.tasks.get("vilbert-retrieval")(max_images=5)
    batches = _batches(n=5, per=5)
    s = task.scores(model, batches)
    b = batches[0]
    with torch.no_grad():
        logits = model.alignment_logits(
            {k: v[[2]] for k, v in b["text"].items()}, {k: v[[4]] for k, v in b["regions"].items()}
        )
    assert torch.allclose(s[2, 4], logits[0, 1] - logits[0, 0], atol=1e-5)
    m = task.evaluate(model, batches)
    assert 0 <= m["R@1"] <= m["R@5"] <= m["R@10"] == 1.0


def test_pretraining_eval_metrics_and_unigram_baseline():
    torch.manual_seed(0)
    model = ViLBERT(tiny_config(masking={"region_prob": 0.5})).eval()
    task = registries.tasks.get("vilbert-pretraining")(seed=1, repeats=2)
    batches = _batches()
    m = task.evaluate(model, batches)
    assert m["pairs"] == 12 and 0 <= m["alignment_accuracy"] <= 1
    assert m["masked_regions"] > 0 and m["masked_region_kl"] > 0
    # the baseline: KL from each masked region's distribution to the mean distribution
    probs = torch.cat([b["regions"]["class_probs"].reshape(-1, 6) for b in batches])
    unigram = probs.mean(0)
    selected = []
    for i, b in enumerate(batches):
        for r in range(2):  # repeats: seed (seed * 100003 + batch) * repeats + r
            g = torch.Generator().manual_seed((100_003 + i) * 2 + r)
            sel = model.prepare_pretraining(b, g).region_selected
            selected.append(b["regions"]["class_probs"][sel])
    p = torch.cat(selected)
    expected = (p * (p.log() - unigram.log())).sum(-1).mean()
    assert abs(m["unigram_kl"] - expected.item()) < 1e-5
    assert task.evaluate(model, batches) == m, "evaluation must be deterministic"


def test_pretraining_eval_measures_alignment_as_published_and_hard_negatives_apart():
    torch.manual_seed(0)
    model = ViLBERT(tiny_config(masking={"hard_negative_frac": 1.0})).eval()
    task = registries.tasks.get("vilbert-pretraining")(seed=1, repeats=2)
    batches = _batches()
    plain = task.evaluate(model, batches)
    assert "hard_negative_accuracy" not in plain
    with_hard, correct, differing = [], 0, 0
    for i, b in enumerate(batches):
        ids = b["text"]["input_ids"].clone()
        ids[:, 3] = 5 + (ids[:, 3] - 4) % 35
        if i == 0:
            ids[0] = b["text"]["input_ids"][0]  # identical: not a negative, not counted
        hard = {"input_ids": ids, "attention_mask": b["text"]["attention_mask"]}
        with_hard.append(dict(b, hard_negative=hard))
        with torch.no_grad():
            pred = model.alignment_logits(hard, b["regions"]).argmax(-1)
        keep = torch.ones(len(ids), dtype=torch.bool)
        keep[0] = i != 0
        correct += int((pred[keep] == 0).sum())
        differing += int(keep.sum())
    m = task.evaluate(model, with_hard)
    assert m["alignment_accuracy"] == plain["alignment_accuracy"]
    assert differing == 11 and m["hard_negative_accuracy"] == correct / differing


def test_vqa_accuracy_counts_correct_answers():
    class Fixed(ViLBERT):
        def forward(self, batch):
            from colearn_core import ModelOutput

            return ModelOutput(
                logits={"vqa": F.one_hot(torch.ones_like(batch["label"]), 3).float()}
            )

    model = Fixed(tiny_config(objective="vqa", answers=["a", "b", "c"]))
    batches = _batches()
    expected = sum(int((b["label"] == 1).sum()) for b in batches) / 12
    assert registries.tasks.get("vilbert-vqa")().evaluate(model, batches)["accuracy"] == expected
    with pytest.raises(Exception, match="objective 'vqa'"):
        registries.tasks.get("vilbert-vqa")().evaluate(ViLBERT(tiny_config()), batches)


def test_vqa_accuracy_per_question_type_on_a_hand_made_case():
    """Eight questions of five types; the model answers by rote: "yes" to every yes/no
    question and "two" otherwise, so the per-type tallies are known."""
    from colearn_core import ModelOutput

    text = {"tokenizer": str(TOKENIZER), "style": "bert", "context_length": 16}
    answers = ["no", "yes", "two", "three"]

    class Rote(ViLBERT):
        def forward(self, batch):
            first = batch["text"]["input_ids"][:, 1]  # the question's first word
            is_yes_no = first == self.modalities["text"].preprocess("is")["input_ids"][1]
            guess = torch.where(is_yes_no, 1, 2)
            return ModelOutput(logits={"vqa": F.one_hot(guess, len(answers)).float()})

    model = Rote(tiny_config(objective="vqa", answers=answers, modalities={"text": text}))
    modality = model.modalities["text"]
    cases = [  # (question, type, answer index): rote answer right?
        ("how many items are there?", "count", 2),  # "two", right
        ("how many items are there?", "count", 3),  # "two", wrong
        ("is there a bag?", "exist", 1),  # "yes", right
        ("is there a coat?", "exist", 0),  # "yes", wrong
        ("is the bag left of the coat?", "relation", 1),  # right
        ("is the bag above the coat?", "relation", 1),  # right
        ("what is the leftmost item?", "extreme", 2),  # right (a rote "two")
        ("which item is the largest?", "size", 3),  # wrong
    ]
    batches = []
    for start in (0, 5):  # two batches of different sizes
        part = cases[start : start + 5]
        batches.append(
            {
                "text": modality.collate([modality.preprocess(q) for q, _, _ in part]),
                "label": torch.tensor([a for _, _, a in part]),
                "columns": {"question_type": [t for _, t, _ in part], "other": [0] * len(part)},
            }
        )
    task = registries.tasks.get("vilbert-vqa")(type_column="question_type")
    m = task.evaluate(model, batches)
    assert m == {
        "accuracy": 5 / 8,
        "questions": 8.0,
        "accuracy_count": 0.5,
        "questions_count": 2.0,
        "accuracy_exist": 0.5,
        "questions_exist": 2.0,
        "accuracy_relation": 1.0,
        "questions_relation": 2.0,
        "accuracy_extreme": 1.0,
        "questions_extreme": 1.0,
        "accuracy_size": 0.0,
        "questions_size": 1.0,
    }
    # without a type column: the overall numbers only
    assert registries.tasks.get("vilbert-vqa")().evaluate(model, batches) == {
        "accuracy": 5 / 8,
        "questions": 8.0,
    }
    missing = registries.tasks.get("vilbert-vqa")(type_column="qtype")
    with pytest.raises(Exception, match=r"'qtype' is not in the eval batches.*data.eval_columns"):
        missing.evaluate(model, batches)
    with pytest.raises(Exception, match="type_column must be a column name"):
        registries.tasks.get("vilbert-vqa")(type_column=["question_type"])


def _recipe(tmp_path, method_config, data, eval_tasks):
    recipe = {
        "method": {"name": "vilbert", "config": method_config},
        "data": data,
        "optim": {"lr": 1.0e-3, "warmup_steps": 1},
        "trainer": {
            "max_steps": 2,
            "batch_size": 4,
            "seed": 0,
            "log_every": 1,
            "output_dir": str(tmp_path / "run"),
            "trackers": [],
        },
        "eval": eval_tasks,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_colearn_train_runs_vilbert_on_fashion_scenes(tmp_path):
    small = {k: v for k, v in tiny_config().items() if k in ("coattention",)}
    config = {
        "text": {"context_length": 64, "width": 32, "depth": 2, "heads": 4},
        "vision": {"feature_dim": 64, "width": 48, "depth": 2, "heads": 4, "num_classes": 10},
        **small,
        "modalities": {
            "text": {"tokenizer": str(TOKENIZER), "style": "bert", "context_length": 64},
            "regions": {"max_regions": 4},
        },
    }
    # with hard negatives: the scenes flipped upside down
    config_pre = dict(config, masking={"hard_negative_frac": 0.5})
    data = {
        "dataset": "fashion-scenes",
        "builder_args": {"n_train": 8, "n_test": 6, "detector": "untrained", "extremes": True},
        "columns": {"text": "caption", "regions": "regions", "hard_negative": "flipped_caption"},
        "split": "train",
        "eval_split": "test",
    }
    evals = [
        {"task": "vilbert-pretraining"},
        {"task": "vilbert-retrieval", "max_images": 6},
    ]
    assert main(["train", str(_recipe(tmp_path, config_pre, data, evals))]) == 0
    results = json.loads((tmp_path / "run" / "eval.json").read_text())["results"]
    assert set(results["vilbert-retrieval"]) >= {"R@1", "R@5", "R@10"}
    assert {"unigram_kl", "hard_negative_accuracy"} <= set(results["vilbert-pretraining"])

    # the pretrained model starts a VQA fine-tuning run
    config_vqa = dict(
        config, objective="vqa", answers=list(ANSWERS), init_from=str(tmp_path / "run" / "model")
    )
    data_vqa = dict(
        data,
        columns={"text": "question", "regions": "regions"},
        label_column="answer",
        eval_columns=["question_type"],
        builder_args={"n_train": 2, "n_test": 3, "task": "vqa", "detector": "untrained"},
    )
    out = tmp_path / "vqa"
    out.mkdir()
    evals = [{"task": "vilbert-vqa", "type_column": "question_type"}]
    assert main(["train", str(_recipe(out, config_vqa, data_vqa, evals))]) == 0
    vqa = json.loads((out / "run" / "eval.json").read_text())["results"]["vilbert-vqa"]
    assert 0 <= vqa["accuracy"] <= 1
    # the question types came through data.eval_columns: every question counted once by type
    types = {k.removeprefix("questions_") for k in vqa if k.startswith("questions_")}
    assert {"count", "exist", "relation"} <= types <= set(QUESTION_TYPES)
    assert sum(vqa[f"questions_{t}"] for t in types) == vqa["questions"] >= 9


ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    "name",
    ["vilbert-text-fashion-scenes", "vilbert-fashion-scenes", "vilbert-vqa-fashion-scenes"],
)
def test_shipped_recipes_build_their_models_and_map_every_column(name, monkeypatch):
    from colearn_core.train.recipe import load_recipe

    path = ROOT / "hub" / "recipes" / f"{name}.yaml"
    if not path.exists():
        pytest.skip("the recipes ship with the repository, not with the wheel")
    monkeypatch.chdir(ROOT)  # the recipes name the tokenizer relative to the repository
    recipe = load_recipe(str(path))
    # built from scratch: the weights of the previous stage are not needed here
    config = {k: v for k, v in recipe.method.config.items() if k not in ("text_init", "init_from")}
    # the recipes name the tokenizer inside the plugin's source folder; where the plugin is
    # installed from a wheel (no source folder), the installed copy of that same file
    text = config["modalities"]["text"]
    assert Path(text["tokenizer"]).name == TOKENIZER.name
    if not Path(text["tokenizer"]).exists():
        text["tokenizer"] = str(TOKENIZER)
    model = registries.methods.get(recipe.method.name)(config)
    assert set(recipe.data.columns) <= set(model.modalities)
