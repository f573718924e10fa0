"""Image regions for ViLBERT's visual stream, and the ``regions`` modality.

A :class:`RegionExtractor` turns an image into :class:`Regions`: boxes, one feature vector per
box and the detector's class distribution per box. Three kinds:

- :class:`FasterRCNNExtractor`: torchvision's Faster R-CNN (the paper used a Visual Genome
  Faster R-CNN); features are its box-head outputs (1024-d), class distributions the softmax of
  its box classifier over the 91 COCO categories. Needs the weights locally: a path, the
  ``COLEARN_FASTERRCNN_WEIGHTS`` variable, or torch's hub cache; otherwise it raises
  :class:`RegionExtractorUnavailable` saying where it looked.
- :class:`BoxCropExtractor`: known boxes (a dataset's ground truth) described by a crop
  classifier (on fashion-scenes: the small Fashion-MNIST CNN of :mod:`.detector`).
- :class:`GridExtractor`: a fixed grid of boxes, described by a crop classifier when given or
  by average-pooled pixels (then the class distribution is uniform). Needs no weights.

:func:`build_region_extractor` picks one by name; ``"auto"`` tries Faster R-CNN and falls back
to the grid with a warning.

The ``regions`` modality turns a sample (precomputed regions as a dict, or an image that an
extractor describes) into ``features`` ``(R, F)``, ``locations`` ``(R, 5)`` -- the spatial
encoding ``(x1/W, y1/H, x2/W, y2/H, area/(W*H))`` -- and ``class_probs`` ``(R, C)``; collation
pads to the longest example with a ``mask``.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from colearn_core import ConfigError, Modality

__all__ = [
    "BoxCropExtractor",
    "FasterRCNNExtractor",
    "GridExtractor",
    "RegionExtractor",
    "RegionExtractorUnavailable",
    "Regions",
    "RegionsModality",
    "build_region_extractor",
    "spatial_encoding",
]


class RegionExtractorUnavailable(RuntimeError):
    """A region extractor cannot run here (typically: its weights are not available)."""


@dataclass
class Regions:
    """boxes ``(R, 4)`` pixel ``x1, y1, x2, y2``; features ``(R, F)``; class_probs ``(R, C)``
    (rows sum to 1); image_size ``(W, H)``."""

    boxes: Tensor
    features: Tensor
    class_probs: Tensor | None
    image_size: tuple[float, float]

    def to_dict(self) -> dict[str, Any]:
        """Plain lists, the layout of the ``regions`` column in a dataset."""
        return {
            "boxes": self.boxes.tolist(),
            "features": self.features.tolist(),
            "class_probs": None if self.class_probs is None else self.class_probs.tolist(),
            "image_size": list(self.image_size),
        }


def spatial_encoding(boxes: Tensor, image_size: Sequence[float]) -> Tensor:
    """``(R, 4)`` pixel boxes -> ``(R, 5)``: ``x1/W, y1/H, x2/W, y2/H, area fraction``."""
    w, h = float(image_size[0]), float(image_size[1])
    if w <= 0 or h <= 0:
        raise ValueError(f"image size must be positive, got {tuple(image_size)}")
    boxes = boxes.to(torch.float32).reshape(-1, 4)
    x1, y1, x2, y2 = boxes.unbind(-1)
    area = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0) / (w * h)
    return torch.stack([x1 / w, y1 / h, x2 / w, y2 / h, area], dim=-1)


def _as_image_tensor(image: Any) -> Tensor:
    """PIL image, array or tensor -> ``(C, H, W)`` float in [0, 1]."""
    if isinstance(image, Tensor):
        x = image
    else:
        x = torch.from_numpy(np.array(image))
        if x.ndim == 3:  # PIL / numpy are (H, W, C)
            x = x.permute(2, 0, 1)
    if x.ndim == 2:
        x = x.unsqueeze(0)
    if x.ndim != 3:
        raise ValueError(f"expected an image (H, W) or (C, H, W), got shape {tuple(x.shape)}")
    return x.float().div(255.0) if x.dtype == torch.uint8 else x.float()


class CropClassifier(Protocol):
    """What describes a crop: ``describe(crops (N, C, s, s)) -> (features, class_probs)``."""

    input_size: int
    feature_dim: int
    num_classes: int

    def describe(self, crops: Tensor) -> tuple[Tensor, Tensor]: ...


class RegionExtractor:
    """Image (and optionally known boxes) -> :class:`Regions`."""

    feature_dim: int
    num_classes: int

    def extract(self, image: Any, boxes: Tensor | None = None) -> Regions:
        raise NotImplementedError


def crop_boxes(image: Tensor, boxes: Tensor, size: int, channels: int) -> Tensor:
    """Crops of ``image`` ``(C, H, W)`` at integer-rounded ``boxes``, resized to ``size``."""
    if image.shape[0] != channels:
        image = image.mean(0, keepdim=True) if channels == 1 else image.expand(channels, -1, -1)
    _, h, w = image.shape
    crops = []
    for x1, y1, x2, y2 in boxes.round().long().tolist():
        x1, y1 = max(0, min(x1, w - 1)), max(0, min(y1, h - 1))
        x2, y2 = max(x1 + 1, min(x2, w)), max(y1 + 1, min(y2, h))
        crop = image[:, y1:y2, x1:x2].unsqueeze(0)
        crops.append(F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True))
    if not crops:
        return image.new_zeros(0, channels, size, size)
    return torch.cat(crops)


class BoxCropExtractor(RegionExtractor):
    """Given boxes (ground truth), each crop described by a crop classifier."""

    def __init__(self, classifier: CropClassifier, channels: int = 1) -> None:
        self.classifier = classifier
        self.channels = channels
        self.feature_dim = classifier.feature_dim
        self.num_classes = classifier.num_classes

    def extract(self, image: Any, boxes: Tensor | None = None) -> Regions:
        if boxes is None:
            raise ValueError(
                "the ground-truth region extractor needs the boxes of each image (a 'boxes' "
                "field); use the 'grid' or 'faster-rcnn' extractor for images without boxes"
            )
        x = _as_image_tensor(image)
        boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        crops = crop_boxes(x, boxes, self.classifier.input_size, self.channels)
        feats, probs = self.classifier.describe(crops)
        return Regions(boxes, feats, probs, (x.shape[2], x.shape[1]))


class GridExtractor(RegionExtractor):
    """A ``rows x cols`` grid of boxes; needs no detector weights.

    With a crop classifier the cells are described like :class:`BoxCropExtractor` boxes;
    without one a cell's feature is its average-pooled pixels (``pool x pool`` per channel) and
    its class distribution is uniform over ``num_classes``.
    """

    def __init__(
        self,
        rows: int = 3,
        cols: int = 3,
        classifier: CropClassifier | None = None,
        pool: int = 4,
        channels: int = 1,
        num_classes: int = 1,
    ) -> None:
        if rows < 1 or cols < 1:
            raise ConfigError(f"grid extractor needs rows, cols >= 1; got {rows}x{cols}")
        self.rows, self.cols, self.pool, self.channels = rows, cols, pool, channels
        self.classifier = classifier
        if classifier is not None:
            self.feature_dim, self.num_classes = classifier.feature_dim, classifier.num_classes
        else:
            self.feature_dim, self.num_classes = channels * pool * pool, num_classes

    def boxes(self, width: int, height: int) -> Tensor:
        xs = torch.linspace(0, width, self.cols + 1)
        ys = torch.linspace(0, height, self.rows + 1)
        return torch.tensor(
            [
                [xs[c], ys[r], xs[c + 1], ys[r + 1]]
                for r in range(self.rows)
                for c in range(self.cols)
            ]
        )

    def extract(self, image: Any, boxes: Tensor | None = None) -> Regions:
        x = _as_image_tensor(image)
        _, h, w = x.shape
        grid = self.boxes(w, h)
        if self.classifier is not None:
            crops = crop_boxes(x, grid, self.classifier.input_size, self.channels)
            feats, probs = self.classifier.describe(crops)
        else:
            crops = crop_boxes(x, grid, self.pool, self.channels)
            feats = crops.flatten(1)
            probs = torch.full((len(grid), self.num_classes), 1.0 / self.num_classes)
        return Regions(grid, feats, probs, (w, h))


#: torchvision's file name for COCO Faster R-CNN (ResNet-50 FPN) weights.
FASTERRCNN_FILE = "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"


def _faster_rcnn_candidates(path: str | Path | None) -> list[Path]:
    if path is not None:
        return [Path(path)]
    found = []
    env = os.environ.get("COLEARN_FASTERRCNN_WEIGHTS")
    if env:
        found.append(Path(env))
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    found += [hub / FASTERRCNN_FILE, hub / FASTERRCNN_FILE.replace(".pth", ".safetensors")]
    return found


class FasterRCNNExtractor(RegionExtractor):
    """torchvision Faster R-CNN regions: top boxes, box-head features, class distributions.

    ``model``: a built torchvision ``FasterRCNN`` (any backbone); or ``weights``: a local
    ``.safetensors``/``.pth`` state dict of ``fasterrcnn_resnet50_fpn`` (``.pth`` is read with
    ``torch.load(weights_only=True)``). ``max_regions`` boxes are kept (the paper: 10 to 36).
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        weights: str | Path | None = None,
        max_regions: int = 36,
        score_threshold: float = 0.2,
    ) -> None:
        if model is None:
            model = self._load(weights)
        self.model = model.eval()
        self.max_regions = max_regions
        self.score_threshold = score_threshold
        heads = model.roi_heads
        self.feature_dim = heads.box_head.fc7.out_features if hasattr(heads.box_head, "fc7") else 0
        self.num_classes = heads.box_predictor.cls_score.out_features

    @staticmethod
    def _load(weights: str | Path | None) -> nn.Module:
        candidates = _faster_rcnn_candidates(weights)
        path = next((p for p in candidates if p.exists()), None)
        if path is None:
            raise RegionExtractorUnavailable(
                "Faster R-CNN weights are not available locally; looked for "
                + ", ".join(str(p) for p in candidates)
                + ". Download torchvision's fasterrcnn_resnet50_fpn COCO weights there (or set "
                "COLEARN_FASTERRCNN_WEIGHTS), or use the 'ground-truth' or 'grid' extractor."
            )
        from torchvision.models.detection import fasterrcnn_resnet50_fpn

        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
        model.load_state_dict(state, strict=True)
        return model

    @torch.no_grad()
    def extract(self, image: Any, boxes: Tensor | None = None) -> Regions:
        x = _as_image_tensor(image)
        if x.shape[0] == 1:
            x = x.expand(3, -1, -1)
        h, w = x.shape[1:]
        m = self.model
        images, _ = m.transform([x])
        feats = m.backbone(images.tensors)
        if isinstance(feats, Tensor):  # single-map backbones, as GeneralizedRCNN wraps them
            feats = OrderedDict([("0", feats)])
        if boxes is None:
            proposals, _ = m.rpn(images, feats)
            detections, _ = m.roi_heads(feats, proposals, images.image_sizes)
            det = detections[0]
            keep = det["scores"] >= self.score_threshold
            scaled = det["boxes"][keep][: self.max_regions]  # in the resized image's pixels
            if len(scaled) == 0:  # nothing confident: keep the best few anyway
                scaled = det["boxes"][: self.max_regions]
        else:
            ratio = torch.tensor([images.image_sizes[0][1] / w, images.image_sizes[0][0] / h] * 2)
            scaled = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4) * ratio
        pooled = m.roi_heads.box_roi_pool(feats, [scaled], images.image_sizes)
        region_feats = m.roi_heads.box_head(pooled)  # (R, 1024)
        logits, _ = m.roi_heads.box_predictor(region_feats)  # (R, classes)
        original = m.transform.postprocess([{"boxes": scaled}], images.image_sizes, [(h, w)])[0][
            "boxes"
        ]
        return Regions(original, region_feats, torch.softmax(logits, dim=-1), (w, h))


def build_region_extractor(name: str = "auto", **options: Any) -> RegionExtractor:
    """``"faster-rcnn"``, ``"ground-truth"`` (needs ``classifier``), ``"grid"``, or ``"auto"``.

    ``"auto"`` uses Faster R-CNN when its weights are found and otherwise warns and returns a
    grid extractor (with ``classifier`` when given).
    """
    if name == "faster-rcnn":
        return FasterRCNNExtractor(**options)
    if name == "ground-truth":
        if "classifier" not in options:
            raise ConfigError("the 'ground-truth' region extractor needs a crop classifier")
        return BoxCropExtractor(**options)
    if name == "grid":
        return GridExtractor(**options)
    if name == "auto":
        grid_options = {k: v for k, v in options.items() if k != "weights"}
        try:
            return FasterRCNNExtractor(weights=options.get("weights"))
        except RegionExtractorUnavailable as exc:
            warnings.warn(f"{exc} Falling back to the grid extractor.", stacklevel=2)
            return GridExtractor(**grid_options)
    raise ConfigError(
        f"unknown region extractor {name!r}; choose 'auto', 'faster-rcnn', 'ground-truth' or 'grid'"
    )


class RegionsModality(Modality):
    """Image regions: precomputed ``{"boxes", "features", "class_probs", "image_size"}`` dicts,
    or images described by a region extractor (config ``extractor``: "grid", "faster-rcnn",
    "auto"; an image with boxes -> ``{"image": ..., "boxes": ...}`` needs "ground-truth").

    Config: ``max_regions`` (keep the first N), ``extractor`` and ``extractor_options``.
    ``preprocess`` returns ``features`` ``(R, F)``, ``locations`` ``(R, 5)``, ``class_probs``
    ``(R, C)`` when known; ``collate`` pads to the longest and adds ``mask`` ``(B, R)``.
    """

    name = "regions"
    feature_types = ()

    def __init__(
        self,
        max_regions: int = 36,
        extractor: str | None = None,
        extractor_options: Mapping[str, Any] | None = None,
        **config: Any,
    ) -> None:
        if config:
            raise ConfigError(f"regions modality: unknown config keys {sorted(config)}")
        super().__init__(
            max_regions=max_regions,
            extractor=extractor,
            extractor_options=dict(extractor_options or {}),
        )
        self.max_regions = max_regions
        self._extractor: RegionExtractor | None = None

    @property
    def extractor(self) -> RegionExtractor:
        if self._extractor is None:
            name = self.config["extractor"]
            if name is None:
                raise ConfigError(
                    "regions modality got an image but no extractor is configured; set "
                    "extractor to 'grid', 'faster-rcnn' or 'auto', or precompute regions"
                )
            options = dict(self.config["extractor_options"])
            classifier = options.get("classifier")
            if classifier == "fashion-detector" or (name == "ground-truth" and classifier is None):
                from .detector import load_detector

                options["classifier"] = load_detector()
            self._extractor = build_region_extractor(name, **options)
        return self._extractor

    def preprocess(self, sample: Any, index: int | None = None) -> dict[str, Tensor]:
        where = "regions modality" + (f" (example {index})" if index is not None else "")
        if isinstance(sample, Mapping) and "features" in sample:
            regions = self._from_dict(sample, where)
        elif isinstance(sample, Mapping) and "image" in sample:
            regions = self.extractor.extract(sample["image"], sample.get("boxes"))
        elif isinstance(sample, Regions):
            regions = sample
        else:
            regions = self.extractor.extract(sample)
        r = min(len(regions.boxes), self.max_regions)
        out = {
            "features": regions.features[:r].float(),
            "locations": spatial_encoding(regions.boxes[:r], regions.image_size),
        }
        if regions.class_probs is not None:
            out["class_probs"] = regions.class_probs[:r].float()
        return out

    @staticmethod
    def _from_dict(sample: Mapping[str, Any], where: str) -> Regions:
        missing = [k for k in ("boxes", "features", "image_size") if k not in sample]
        if missing:
            raise ValueError(
                f"{where}: a regions dict needs boxes, features and image_size; missing {missing}"
            )
        boxes = torch.as_tensor(np.asarray(sample["boxes"], dtype=np.float32)).reshape(-1, 4)
        feats = torch.as_tensor(np.asarray(sample["features"], dtype=np.float32))
        if feats.ndim != 2 or len(feats) != len(boxes):
            raise ValueError(
                f"{where}: features must be (R, F) with one row per box; got "
                f"{tuple(feats.shape)} for {len(boxes)} boxes"
            )
        if len(boxes) == 0:
            raise ValueError(f"{where}: no regions (an image needs at least one box)")
        probs = sample.get("class_probs")
        if probs is not None:
            probs = torch.as_tensor(np.asarray(probs, dtype=np.float32))
            if probs.ndim != 2 or len(probs) != len(boxes):
                raise ValueError(f"{where}: class_probs must be (R, C) with one row per box")
        if not torch.isfinite(feats).all():
            raise ValueError(f"{where}: region features contain NaN or infinity")
        size = tuple(float(s) for s in sample["image_size"])
        return Regions(boxes, feats, probs, (size[0], size[1]))

    def collate(self, samples: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
        if not samples:
            raise ValueError("regions modality: cannot collate an empty list of samples")
        r = max(len(s["features"]) for s in samples)
        b = len(samples)
        out = {
            "features": torch.zeros(b, r, samples[0]["features"].shape[1]),
            "locations": torch.zeros(b, r, 5),
            "mask": torch.zeros(b, r, dtype=torch.bool),
        }
        with_probs = all("class_probs" in s for s in samples)
        if with_probs:
            out["class_probs"] = torch.zeros(b, r, samples[0]["class_probs"].shape[1])
        for i, s in enumerate(samples):
            n = len(s["features"])
            out["features"][i, :n] = s["features"]
            out["locations"][i, :n] = s["locations"]
            out["mask"][i, :n] = True
            if with_probs:
                out["class_probs"][i, :n] = s["class_probs"]
        return out

    @classmethod
    def example_samples(cls, n: int) -> list[Any]:
        g = torch.Generator().manual_seed(0)
        samples = []
        for i in range(n):
            r = 2 + i % 3
            xy = torch.rand(r, 2, generator=g) * 50
            boxes = torch.cat([xy, xy + 10 + torch.rand(r, 2, generator=g) * 40], dim=1)
            samples.append(
                {
                    "boxes": boxes.tolist(),
                    "features": torch.randn(r, 8, generator=g).tolist(),
                    "class_probs": torch.softmax(torch.randn(r, 5, generator=g), -1).tolist(),
                    "image_size": [100, 100],
                }
            )
        return samples
