"""fashion-scenes: 2-4 Fashion-MNIST items on a canvas, with boxes, captions and questions.

Each scene places distinct clothing classes at random, non-overlapping positions and sizes on a
black canvas. Its caption lists the items from left to right and then states how pairs of
items relate in space ("the bag is left of the sneaker."), one sentence per pair (a chain
through the items, or independently drawn pairs), optionally after naming the topmost and the
lowest item (:data:`RELATIONS` and the ``extremes`` option); its questions ask for
the number of items, whether a class is present, whether a relation holds, and which item is
left-, right-, top- or bottom-most. Regions are the ground-truth boxes described by the small
Fashion-MNIST classifier of :mod:`.detector` (features and soft class distribution), or a grid.

The ``train`` split draws items from Fashion-MNIST's training images, ``test`` from its test
images, each with its own seed stream, so the test split is held out in both scenes and items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "ANSWERS",
    "CLASS_NAMES",
    "QUESTION_TYPES",
    "RELATIONS",
    "Scene",
    "build_fashion_scenes",
    "make_nsp_pairs",
    "make_scene",
    "relation",
]

#: Fashion-MNIST's labels 0..9 as captions and answers name them.
CLASS_NAMES: tuple[str, ...] = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
NUMBERS = {2: "two", 3: "three", 4: "four"}
#: The VQA answer vocabulary, in the order of the ``answer`` labels.
ANSWERS: tuple[str, ...] = ("no", "yes", "two", "three", "four", *CLASS_NAMES)
#: The values of the ``question_type`` column (the ``vilbert-vqa`` task's ``type_column``).
QUESTION_TYPES: tuple[str, ...] = ("count", "exist", "relation", "extreme")
OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
EXTREMES = {"leftmost": (0, -1), "rightmost": (0, 1), "topmost": (1, -1), "lowest": (1, 1)}


def _article(name: str) -> str:
    return "an" if name[0] in "aeiou" else "a"


def relation(a: Sequence[float], b: Sequence[float]) -> str:
    """Where box ``a`` is relative to box ``b`` along the axis their centres differ most."""
    ax, ay = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
    bx, by = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    dx, dy = ax - bx, ay - by
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


@dataclass
class Scene:
    """One canvas: image ``(H, W)`` uint8, boxes ``x1, y1, x2, y2`` in pixels, class labels."""

    image: Tensor
    boxes: list[list[float]]
    labels: list[int]
    sentences: list[str] = field(default_factory=list)
    qa: list[tuple[str, str, str]] = field(default_factory=list)  # (type, question, answer)
    flipped: list[str] = field(default_factory=list)  # sentences of the upside-down scene

    @property
    def caption(self) -> str:
        return " ".join(self.sentences)

    @property
    def flipped_caption(self) -> str:
        """The caption of this scene flipped upside down (same items, listing and pairs):
        it differs from :attr:`caption` only in the vertical words, so as a negative for
        caption-image alignment only the items' vertical positions tell it apart."""
        return " ".join(self.flipped)


def _randint(low: int, high: int, g: torch.Generator) -> int:
    """Uniform integer in [low, high]."""
    return int(torch.randint(low, high + 1, (1,), generator=g))


def _place(sizes: list[int], canvas: int, g: torch.Generator, gap: int = 2) -> list[list[int]]:
    for _ in range(200):
        boxes: list[list[int]] = []
        for s in sizes:
            for _ in range(50):
                x, y = _randint(0, canvas - s, g), _randint(0, canvas - s, g)
                box = [x, y, x + s, y + s]
                if all(
                    box[0] >= o[2] + gap
                    or o[0] >= box[2] + gap
                    or box[1] >= o[3] + gap
                    or o[1] >= box[3] + gap
                    for o in boxes
                ):
                    boxes.append(box)
                    break
            else:
                break
        if len(boxes) == len(sizes):
            return boxes
    raise RuntimeError(f"could not place {len(sizes)} items on a {canvas}px canvas")


#: Which pairs of items a caption relates (the ``relations`` option): ``"chain"``, a random
#: chain through all items (``a-b, b-c, c-d``); ``"pairs"``, independently drawn pairs. In a
#: chain every name is implied by the others (the chain covers each item once or twice), so a
#: masked name is recoverable from the text alone; independent pairs leave the image to tell.
RELATIONS = ("chain", "pairs")


def _caption_pairs(
    n: int,
    g: torch.Generator,
    relations: str = "chain",
    pair_generator: torch.Generator | None = None,
) -> list[tuple[int, int]]:
    """Which items the caption relates (:data:`RELATIONS`)."""
    # the chain is drawn in either style, so both give the same scenes from the same stream
    chain = torch.randperm(n, generator=g).tolist()
    if relations == "chain":
        return list(zip(chain[:-1], chain[1:]))
    if relations == "pairs":
        draw = pair_generator or g
        drawn = [torch.randperm(n, generator=draw)[:2].tolist() for _ in range(n - 1)]
        return [(a, b) for a, b in drawn]
    raise ValueError(f"fashion-scenes relations must be one of {RELATIONS}, got {relations!r}")


def _caption(
    boxes: list[list[float]],
    names: list[str],
    pairs: list[tuple[int, int]],
    extremes: bool = False,
) -> list[str]:
    order = sorted(range(len(names)), key=lambda i: (boxes[i][0] + boxes[i][2]) / 2)
    listed = [f"{_article(names[i])} {names[i]}" for i in order]
    items = ", ".join(listed[:-1]) + " and " + listed[-1]
    sentences = [f"there are {NUMBERS[len(names)]} items: {items}."]
    if extremes:  # the vertical order, which the left-to-right listing does not give
        centres = [(b[1] + b[3]) / 2 for b in boxes]
        top, low = centres.index(min(centres)), centres.index(max(centres))
        sentences.append(f"the topmost item is the {names[top]}.")
        sentences.append(f"the lowest item is the {names[low]}.")
    for a, b in pairs:
        sentences.append(f"the {names[a]} is {relation(boxes[a], boxes[b])} the {names[b]}.")
    return sentences


def _questions(
    boxes: list[list[float]], labels: list[int], g: torch.Generator, margin: float = 6.0
) -> list[tuple[str, str, str]]:
    names = [CLASS_NAMES[c] for c in labels]
    qa = [("count", "how many items are there?", NUMBERS[len(labels)])]
    if torch.rand((), generator=g) < 0.5:
        present = names[_randint(0, len(names) - 1, g)]
        qa.append(("exist", f"is there {_article(present)} {present}?", "yes"))
    else:
        absent = [n for c, n in enumerate(CLASS_NAMES) if c not in labels]
        name = absent[_randint(0, len(absent) - 1, g)]
        qa.append(("exist", f"is there {_article(name)} {name}?", "no"))
    a, b = torch.randperm(len(labels), generator=g)[:2].tolist()
    rel = relation(boxes[a], boxes[b])
    truth = torch.rand((), generator=g) < 0.5
    asked = rel if truth else OPPOSITE[rel]
    qa.append(("relation", f"is the {names[a]} {asked} the {names[b]}?", "yes" if truth else "no"))
    for k in torch.randperm(len(EXTREMES), generator=g).tolist():
        word, (axis, sign) = list(EXTREMES.items())[k]
        centres = [sign * (bx[axis] + bx[axis + 2]) / 2 for bx in boxes]
        ranked = sorted(range(len(labels)), key=lambda i: -centres[i])
        if centres[ranked[0]] - centres[ranked[1]] >= margin:  # unambiguous
            qa.append(("extreme", f"what is the {word} item?", names[ranked[0]]))
            break
    return qa


def make_scene(
    images: Tensor,
    by_class: Sequence[Tensor],
    g: torch.Generator,
    *,
    canvas: int = 96,
    min_items: int = 2,
    max_items: int = 4,
    sizes: tuple[int, int] = (20, 32),
    relations: str = "chain",
    pair_generator: torch.Generator | None = None,
    extremes: bool = False,
) -> Scene:
    """One scene from Fashion-MNIST ``images`` ``(N, 28, 28)`` (``by_class[c]``: indices);
    ``relations``: see :data:`RELATIONS` (``"pairs"`` draws them from ``pair_generator``,
    default ``g``); ``extremes``: the caption also names the topmost and the lowest item."""
    k = _randint(min_items, max_items, g)
    labels = torch.randperm(len(by_class), generator=g)[:k].tolist()
    item_sizes = [_randint(sizes[0], sizes[1], g) for _ in labels]
    boxes = _place(item_sizes, canvas, g)
    image = torch.zeros(canvas, canvas)
    for c, s, (x1, y1, x2, y2) in zip(labels, item_sizes, boxes):
        pool = by_class[c]
        item = images[pool[_randint(0, len(pool) - 1, g)]].float()[None, None]
        item = F.interpolate(item, size=(s, s), mode="bilinear", antialias=True)[0, 0]
        image[y1:y2, x1:x2] = torch.maximum(image[y1:y2, x1:x2], item)
    fboxes = [[float(v) for v in b] for b in boxes]
    names = [CLASS_NAMES[c] for c in labels]
    scene = Scene(image.round().clamp(0, 255).to(torch.uint8), fboxes, labels)
    pairs = _caption_pairs(len(names), g, relations, pair_generator)
    scene.sentences = _caption(fboxes, names, pairs, extremes)
    upside_down = [[x1, canvas - y2, x2, canvas - y1] for x1, y1, x2, y2 in fboxes]
    scene.flipped = _caption(upside_down, names, pairs, extremes)
    scene.qa = _questions(fboxes, labels, g)
    return scene


def make_scenes(
    n: int, split: str = "train", seed: int = 0, root: str | None = None, **options: Any
) -> list[Scene]:
    """``n`` scenes of ``split``; the same arguments give the same scenes."""
    images, by_class = _items(split, root)
    stream = {"train": 0, "test": 1}[split]
    g = torch.Generator().manual_seed(1_000_003 * seed + stream)
    # independent pairs have their own stream: both caption styles give the same scenes
    pairs = torch.Generator().manual_seed(1_000_003 * seed + stream + 17)
    return [make_scene(images, by_class, g, pair_generator=pairs, **options) for _ in range(n)]


@lru_cache(maxsize=2)
def _items(split: str, root: str | None) -> tuple[Tensor, list[Tensor]]:
    """Fashion-MNIST images of ``split`` and, per class, their indices (read once)."""
    from colearn_plugin_image.fashion_mnist import load_fashion_mnist_arrays

    images, labels = (
        torch.from_numpy(a.copy()) for a in load_fashion_mnist_arrays(split, root=root)
    )
    return images, [torch.nonzero(labels == c).flatten() for c in range(len(CLASS_NAMES))]


def make_nsp_pairs(
    documents: Sequence[Sequence[str]], generator: torch.Generator, prob_next: float = 0.5
) -> list[tuple[str, str, int]]:
    """BERT's next-sentence pairs: for every sentence that has a successor, ``(A, B, 1)`` with
    the true next sentence with probability ``prob_next``, else ``(A, B', 0)`` with a random
    sentence of another document."""
    docs = [list(d) for d in documents if len(d) > 0]
    if len(docs) < 2:
        raise ValueError("next-sentence pairs need at least two non-empty documents")
    pairs = []
    for i, doc in enumerate(docs):
        for j in range(len(doc) - 1):
            if torch.rand((), generator=generator) < prob_next:
                pairs.append((doc[j], doc[j + 1], 1))
            else:
                k = _randint(0, len(docs) - 2, generator)
                other = docs[k if k < i else k + 1]  # any document but this one
                pairs.append((doc[j], other[_randint(0, len(other) - 1, generator)], 0))
    return pairs


def scene_regions(
    scenes: Sequence[Scene],
    mode: str = "ground-truth",
    detector: Any = None,
    grid: int = 3,
    normalize: bool = True,
) -> list[dict[str, Any]]:
    """Per scene the ``regions`` column: boxes, features, class distributions, image size.

    ``normalize``: L2-normalise each region's feature vector. The CNN's raw activations have
    norms around 30 while the 5-d spatial encoding has norm about 1; summed after their
    projections, the features would drown the positions at initialisation.

    ``detector``: a crop classifier, ``"fashion-mnist"`` / None (the cached trained one) or
    ``"untrained"`` (a seeded random one: fast, for smoke tests only).
    """
    from .detector import FashionDetector, load_detector
    from .regions import BoxCropExtractor, GridExtractor

    if detector is None or detector == "fashion-mnist":
        detector = load_detector()
    elif detector == "untrained":
        with torch.random.fork_rng():  # seeded without moving the caller's RNG
            torch.manual_seed(0)
            detector = FashionDetector().eval()
    elif isinstance(detector, str):
        raise ValueError(
            f"fashion-scenes detector must be 'fashion-mnist' or 'untrained', got {detector!r}"
        )
    if mode == "ground-truth":
        extractor: Any = BoxCropExtractor(detector)
    elif mode == "grid":
        extractor = GridExtractor(grid, grid, classifier=detector)
    else:
        raise ValueError(f"fashion-scenes regions must be 'ground-truth' or 'grid', got {mode!r}")
    out = []
    for s in scenes:
        boxes = torch.tensor(s.boxes) if mode == "ground-truth" else None
        regions = extractor.extract(s.image, boxes)
        if normalize:
            regions.features = F.normalize(regions.features, dim=-1)
        out.append(regions.to_dict())
    return out


def build_fashion_scenes(
    n_train: int = 2000,
    n_test: int = 500,
    split: str | None = None,
    seed: int = 0,
    task: str = "caption",
    regions: str = "ground-truth",
    canvas: int = 96,
    min_items: int = 2,
    max_items: int = 4,
    grid: int = 3,
    fashion_mnist_dir: str | None = None,
    detector: Any = "fashion-mnist",
    normalize_features: bool = True,
    relations: str = "chain",
    extremes: bool = False,
) -> Any:
    """The ``fashion-scenes`` dataset builder: a ``datasets.DatasetDict`` with ``train``
    (``n_train`` scenes) and ``test`` (``n_test``), or one ``split`` as a ``Dataset``.

    task ``"caption"``: a row per scene (``image``, ``boxes``, ``labels``, ``caption``,
    ``flipped_caption`` -- the caption of the scene flipped upside down (the same items and
    pairs: :attr:`Scene.flipped_caption`), a hard negative for alignment -- and ``regions``);
    ``"vqa"``: a row per question (adds ``question``, ``question_type``, ``answer`` -- an index
    into :data:`ANSWERS` -- and ``answer_text``); ``"nsp"``: BERT next-sentence pairs from the
    captions (``text`` = ``[A, B]``, which the text modality encodes as
    ``[CLS] A [SEP] B [SEP]``; ``sentence_a``, ``sentence_b``; ``is_next``), no
    images. ``regions``: ``"ground-truth"`` boxes or a ``grid``, described by ``detector``
    (``"fashion-mnist"``: the cached Fashion-MNIST classifier, trained on first use;
    ``"untrained"``: a random one for smoke tests; or a crop-classifier object);
    ``normalize_features``: L2-normalise the region features (see :func:`scene_regions`);
    ``relations``: which item pairs the captions relate (:data:`RELATIONS`); ``extremes``:
    captions also name the topmost and the lowest item.
    Results are cached in memory per argument set (the trainer asks for each split).
    """
    import datasets

    if split is not None and split not in ("train", "test"):
        raise ValueError(f"fashion-scenes has splits 'train' and 'test', not {split!r}")
    args = (
        seed,
        task,
        regions,
        canvas,
        min_items,
        max_items,
        grid,
        fashion_mnist_dir,
        normalize_features,
        relations,
        extremes,
    )
    parts = {}
    for name, n in (("train", n_train), ("test", n_test)):
        if split is None or split == name:
            if detector is None or isinstance(detector, str):
                parts[name] = _cached_split(name, n, *args, detector)
            else:
                parts[name] = _build_split(name, n, *args, detector=detector)
    return parts[split] if split is not None else datasets.DatasetDict(parts)


@lru_cache(maxsize=8)
def _cached_split(*args: Any) -> Any:
    return _build_split(*args)


def _build_split(
    split: str,
    n: int,
    seed: int,
    task: str,
    regions: str,
    canvas: int,
    min_items: int,
    max_items: int,
    grid: int,
    fashion_mnist_dir: str | None,
    normalize_features: bool,
    relations: str,
    extremes: bool,
    detector: Any = None,
) -> Any:
    import datasets
    from PIL import Image

    if relations not in RELATIONS:
        raise ValueError(f"fashion-scenes relations must be one of {RELATIONS}, got {relations!r}")
    if task not in ("caption", "vqa", "nsp"):
        raise ValueError(f"fashion-scenes task must be 'caption', 'vqa' or 'nsp', got {task!r}")
    if not 2 <= min_items <= max_items <= 4:
        raise ValueError(
            f"fashion-scenes needs 2 <= min_items <= max_items <= 4, got {min_items}, {max_items}"
        )
    scenes = make_scenes(
        n,
        split,
        seed,
        fashion_mnist_dir,
        canvas=canvas,
        min_items=min_items,
        max_items=max_items,
        relations=relations,
        extremes=extremes,
    )
    if task == "nsp":
        g = torch.Generator().manual_seed(seed * 7 + 3 + (split == "test"))
        pairs = make_nsp_pairs([s.sentences for s in scenes], g)
        return datasets.Dataset.from_dict(
            {
                "text": [[a, b] for a, b, _ in pairs],
                "sentence_a": [a for a, _, _ in pairs],
                "sentence_b": [b for _, b, _ in pairs],
                "is_next": [y for _, _, y in pairs],
            }
        )
    region_rows = scene_regions(scenes, regions, detector, grid, normalize_features)
    rows: dict[str, list[Any]] = {
        k: []
        for k in ("scene", "image", "boxes", "labels", "caption", "flipped_caption", "regions")
    }
    if task == "vqa":
        rows.update({k: [] for k in ("question", "question_type", "answer", "answer_text")})
    for i, (s, reg) in enumerate(zip(scenes, region_rows)):
        items = s.qa if task == "vqa" else [None]
        for qa in items:
            rows["scene"].append(i)
            rows["image"].append(Image.fromarray(s.image.numpy(), mode="L"))
            rows["boxes"].append(s.boxes)
            rows["labels"].append(s.labels)
            rows["caption"].append(s.caption)
            rows["flipped_caption"].append(s.flipped_caption)
            rows["regions"].append(reg)
            if qa is not None:
                qtype, question, answer = qa
                rows["question"].append(question)
                rows["question_type"].append(qtype)
                rows["answer"].append(ANSWERS.index(answer))
                rows["answer_text"].append(answer)
    return datasets.Dataset.from_dict(rows)
