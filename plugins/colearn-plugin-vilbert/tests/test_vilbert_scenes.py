"""fashion-scenes: geometry, captions and answers agree with the boxes; the builder's columns."""

import re

import pytest
import torch
from colearn_plugin_vilbert.scenes import ANSWERS, CLASS_NAMES, make_scenes, relation
from colearn_plugin_vilbert.vocab import TOKENIZER, corpus

from colearn_core import registries


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(40, "train", seed=3)


def _centre(box):
    return ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)


def test_scenes_have_two_to_four_distinct_non_overlapping_items(scenes):
    counts = set()
    for s in scenes:
        counts.add(len(s.labels))
        assert 2 <= len(s.labels) <= 4 and len(set(s.labels)) == len(s.labels)
        for i, a in enumerate(s.boxes):
            assert 0 <= a[0] < a[2] <= 96 and 0 <= a[1] < a[3] <= 96
            assert 20 <= a[2] - a[0] <= 32
            for b in s.boxes[i + 1 :]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
            x1, y1, x2, y2 = (int(v) for v in a)
            assert s.image[y1:y2, x1:x2].float().mean() > 5, "an item is drawn in its box"
    assert counts == {2, 3, 4}


@pytest.mark.parametrize(
    ("relations", "extremes"), [("chain", False), ("pairs", False), ("pairs", True)]
)
def test_captions_name_the_items_and_true_relations(scenes, relations, extremes):
    if relations != "chain" or extremes:
        scenes = make_scenes(40, "train", seed=3, relations=relations, extremes=extremes)
    for s in scenes:
        names = [CLASS_NAMES[c] for c in s.labels]
        first = s.sentences[0]
        for name in names:
            assert name in first
        # listed from left to right
        order = sorted(names, key=lambda n: _centre(s.boxes[names.index(n)])[0])
        positions = [first.index(f" {n}") for n in order]
        assert positions == sorted(positions)
        if extremes:  # the topmost and the lowest item, named after the list
            ys = [_centre(s.boxes[names.index(n)])[1] for n in names]
            top, low = names[ys.index(min(ys))], names[ys.index(max(ys))]
            assert s.sentences[1:3] == [
                f"the topmost item is the {top}.",
                f"the lowest item is the {low}.",
            ]
            s.sentences = [s.sentences[0], *s.sentences[3:]]
        assert len(s.sentences) == len(names)  # the list + one relation per pair
        for sentence in s.sentences[1:]:
            body = sentence.removeprefix("the ").removesuffix(".")
            for rel in ("left of", "right of", "above", "below"):
                if f" is {rel} the " in body:
                    a, b = body.split(f" is {rel} the ")
                    box_a, box_b = s.boxes[names.index(a)], s.boxes[names.index(b)]
                    assert relation(box_a, box_b) == rel
                    ca, cb = _centre(box_a), _centre(box_b)
                    axis = 0 if rel in ("left of", "right of") else 1
                    sign = -1 if rel in ("left of", "above") else 1
                    assert sign * (ca[axis] - cb[axis]) > 0
                    break
            else:
                raise AssertionError(f"no relation in {sentence!r}")


def _related(scene):
    names = set()
    for sentence in scene.sentences[1:]:
        body = sentence.removeprefix("the ").removesuffix(".")
        for rel in ("left of", "right of", "above", "below"):
            if f" is {rel} the " in body:
                names.update(body.split(f" is {rel} the "))
    return names


def test_chained_relations_imply_every_name_and_independent_pairs_do_not(scenes):
    pairs = make_scenes(40, "train", seed=3, relations="pairs")
    for chained, paired in zip(scenes, pairs):
        # the same scene, questions and listing: only the relation sentences differ
        assert torch.equal(chained.image, paired.image) and chained.qa == paired.qa
        assert chained.sentences[0] == paired.sentences[0]
        names = {CLASS_NAMES[c] for c in chained.labels}
        assert _related(chained) == names  # a chain covers every item
    # independent pairs leave some item out of the relations in some scenes
    assert any(_related(p) < {CLASS_NAMES[c] for c in p.labels} for p in pairs)
    with pytest.raises(ValueError, match="relations must be one of"):
        make_scenes(1, "train", relations="ring")


def test_answers_are_consistent_with_the_scene(scenes):
    types = set()
    for s in scenes:
        names = [CLASS_NAMES[c] for c in s.labels]
        for qtype, question, answer in s.qa:
            types.add(qtype)
            assert answer in ANSWERS
            if qtype == "count":
                assert answer == {2: "two", 3: "three", 4: "four"}[len(names)]
            elif qtype == "exist":
                asked = question.removesuffix("?").split(" ", 3)[3]  # "is there a(n) X?"
                assert asked in CLASS_NAMES
                assert (answer == "yes") == (asked in names)
            elif qtype == "extreme":
                word = question.split()[3]
                axis, sign = {
                    "leftmost": (0, -1),
                    "rightmost": (0, 1),
                    "topmost": (1, -1),
                    "lowest": (1, 1),
                }[word]
                best = max(range(len(names)), key=lambda i: sign * _centre(s.boxes[i])[axis])
                assert answer == names[best]
    assert types == {"count", "exist", "relation", "extreme"}


def test_flipped_caption_describes_the_scene_upside_down():
    flip = {"above": "below", "below": "above", "topmost": "lowest", "lowest": "topmost"}
    vertical = 0
    for s in make_scenes(40, "train", seed=3, relations="pairs", extremes=True):
        assert s.flipped_caption != s.caption  # the extremes always swap
        # the same listing and pairs; only the vertical words change, and the lowest item is
        # now named first (topmost first, as in every caption)
        assert s.flipped[0] == s.sentences[0]
        original = [s.sentences[0], s.sentences[2], s.sentences[1], *s.sentences[3:]]
        for before, after in zip(original, s.flipped, strict=True):
            assert after == " ".join(flip.get(w, w) for w in before.split(" "))
        # and it is true of the scene flipped upside down
        names = [CLASS_NAMES[c] for c in s.labels]
        boxes = [[x1, 96 - y2, x2, 96 - y1] for x1, y1, x2, y2 in s.boxes]
        ys = [_centre(b)[1] for b in boxes]
        assert s.flipped[1] == f"the topmost item is the {names[ys.index(min(ys))]}."
        for sentence in s.flipped[3:]:
            body = sentence.removeprefix("the ").removesuffix(".")
            rel = next(r for r in ("left of", "right of", "above", "below") if f" {r} " in body)
            a, b = body.split(f" is {rel} the ")
            assert relation(boxes[names.index(a)], boxes[names.index(b)]) == rel
            vertical += rel in ("above", "below")
    assert vertical > 10


def test_scenes_are_reproducible_and_splits_differ():
    a, b = make_scenes(3, "train", seed=1), make_scenes(3, "train", seed=1)
    assert all(torch.equal(x.image, y.image) and x.caption == y.caption for x, y in zip(a, b))
    c = make_scenes(3, "test", seed=1)
    assert not torch.equal(a[0].image, c[0].image)


def test_builder_columns_and_soft_detector_distributions():
    build = registries.datasets.get("fashion-scenes")
    data = build(n_train=6, n_test=4, detector="untrained")
    assert set(data) == {"train", "test"} and len(data["train"]) == 6 and len(data["test"]) == 4
    row = data["train"][0]
    assert row["image"].size == (96, 96)
    flipped = build(n_train=6, n_test=4, detector="untrained", extremes=True, split="train")
    assert all(a != b for a, b in zip(flipped["caption"], flipped["flipped_caption"]))
    regions = row["regions"]
    assert len(regions["boxes"]) == len(row["labels"]) == len(regions["features"])
    probs = torch.tensor(regions["class_probs"])
    assert torch.allclose(probs.sum(-1), torch.ones(len(probs)), atol=1e-5)
    assert (probs.max(-1).values < 1).all(), "detector distributions are soft, not one-hot"
    vqa = build(n_train=5, n_test=2, task="vqa", split="train", detector="untrained")
    assert len(vqa) >= 5 * 3 and {"question", "answer", "answer_text"} <= set(vqa.column_names)
    assert all(ANSWERS[a] == t for a, t in zip(vqa["answer"], vqa["answer_text"]))
    nsp = build(n_train=20, n_test=2, task="nsp", split="train")
    assert len(nsp[0]["text"]) == 2 and set(nsp["is_next"]) == {0, 1}
    with pytest.raises(ValueError, match="splits 'train' and 'test'"):
        build(split="validation")


def test_shipped_tokenizer_covers_the_scene_language_word_for_word():
    from colearn_plugin_text.tokenizer import load_tokenizer

    tok = load_tokenizer(TOKENIZER)
    for line in corpus(50):
        encoded = tok.encode(line, add_special_tokens=False)
        pieces = [t for t, m in zip(encoded.tokens, encoded.attention_mask) if m]
        assert "[UNK]" not in pieces
        # every word is one token, every punctuation mark one ('t-shirt' is t, -, shirt)
        assert len(pieces) == len(re.findall(r"[a-z]+|[^\sa-z]", line)), (line, pieces)
