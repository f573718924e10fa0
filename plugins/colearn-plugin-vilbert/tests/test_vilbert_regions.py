"""Region extraction: spatial encoding, the regions modality and the three extractors."""

import pytest
import torch
from colearn_plugin_vilbert.detector import FashionDetector
from colearn_plugin_vilbert.regions import (
    BoxCropExtractor,
    FasterRCNNExtractor,
    GridExtractor,
    RegionExtractorUnavailable,
    RegionsModality,
    build_region_extractor,
    spatial_encoding,
)
from torch import nn


def test_spatial_encoding_is_normalised_corners_and_area_fraction():
    boxes = torch.tensor([[10.0, 20.0, 50.0, 60.0], [0.0, 0.0, 200.0, 100.0]])
    loc = spatial_encoding(boxes, (200, 100))
    assert torch.allclose(loc[0], torch.tensor([0.05, 0.2, 0.25, 0.6, 40 * 40 / 20000]))
    assert torch.allclose(loc[1], torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0]))


def test_regions_modality_preprocesses_and_pads():
    modality = RegionsModality(max_regions=3)
    samples = RegionsModality.example_samples(3)  # 2, 3 and 4 regions
    processed = [modality.preprocess(s) for s in samples]
    assert [len(p["features"]) for p in processed] == [2, 3, 3]  # max_regions keeps 3
    batch = modality.collate(processed)
    assert batch["features"].shape == (3, 3, 8) and batch["locations"].shape == (3, 3, 5)
    assert batch["mask"].tolist() == [[True, True, False], [True] * 3, [True] * 3]
    assert (batch["features"][0, 2] == 0).all()
    assert torch.allclose(batch["class_probs"][1].sum(-1), torch.ones(3))


def test_regions_modality_errors_name_the_example():
    modality = RegionsModality()
    bad = {"boxes": [[0, 0, 1, 1]], "features": [[1.0], [2.0]], "image_size": [4, 4]}
    with pytest.raises(ValueError, match=r"example 7.*one row per box"):
        modality.preprocess(bad, index=7)
    with pytest.raises(ValueError, match="missing \\['image_size'\\]"):
        modality.preprocess({"boxes": [[0, 0, 1, 1]], "features": [[1.0]]})
    with pytest.raises(Exception, match="no extractor is configured"):
        modality.preprocess(torch.zeros(1, 8, 8))


def test_box_crop_extractor_gives_soft_class_distributions():
    torch.manual_seed(0)
    detector = FashionDetector().eval()
    image = torch.zeros(1, 64, 64)
    image[0, 4:30, 4:30] = 1.0
    regions = BoxCropExtractor(detector).extract(
        image, torch.tensor([[4, 4, 30, 30], [30, 30, 60, 62]])
    )
    assert regions.features.shape == (2, detector.feature_dim)
    assert torch.allclose(regions.class_probs.sum(-1), torch.ones(2))
    assert (regions.class_probs.max(-1).values < 1).all(), "expected soft, not one-hot"
    assert regions.image_size == (64, 64)
    with pytest.raises(ValueError, match="needs the boxes"):
        BoxCropExtractor(detector).extract(image)


def test_grid_extractor_needs_no_weights():
    grid = GridExtractor(2, 3, pool=2, num_classes=4)
    regions = grid.extract(torch.rand(1, 40, 60))
    assert regions.boxes.tolist()[:3] == [[0, 0, 20, 20], [20, 0, 40, 20], [40, 0, 60, 20]]
    assert regions.features.shape == (6, 4)
    assert torch.allclose(regions.class_probs, torch.full((6, 4), 0.25))
    modality = RegionsModality(
        extractor="grid", extractor_options={"rows": 2, "cols": 2, "pool": 2}
    )
    out = modality.preprocess(torch.rand(1, 32, 32))
    assert out["locations"][-1].tolist() == [0.5, 0.5, 1.0, 1.0, 0.25]


def test_faster_rcnn_without_weights_fails_clearly_and_auto_falls_back(tmp_path, monkeypatch):
    monkeypatch.setenv("COLEARN_FASTERRCNN_WEIGHTS", str(tmp_path / "missing.pth"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(RegionExtractorUnavailable, match="missing.pth.*'grid' extractor"):
        FasterRCNNExtractor()
    with pytest.warns(UserWarning, match="Falling back to the grid"):
        extractor = build_region_extractor("auto", rows=2, cols=2)
    assert isinstance(extractor, GridExtractor)


def test_faster_rcnn_extractor_on_a_small_torchvision_detector():
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU())
    backbone.out_channels = 8
    model = FasterRCNN(
        backbone,
        num_classes=5,
        min_size=64,
        max_size=64,
        rpn_anchor_generator=AnchorGenerator(sizes=((16, 32),), aspect_ratios=((1.0,),)),
        box_roi_pool=MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2),
        box_score_thresh=0.0,
    )
    extractor = FasterRCNNExtractor(model, max_regions=5, score_threshold=0.0)
    regions = extractor.extract(torch.rand(1, 96, 96))
    assert 1 <= len(regions.boxes) <= 5
    assert regions.features.shape == (len(regions.boxes), 1024)
    assert regions.class_probs.shape == (len(regions.boxes), 5)
    assert torch.allclose(regions.class_probs.sum(-1), torch.ones(len(regions.boxes)), atol=1e-5)
    assert regions.image_size == (96, 96)
    assert (regions.boxes[:, 2] <= 96.01).all(), "boxes come back in the original image's pixels"
    given = extractor.extract(torch.rand(1, 96, 96), torch.tensor([[0.0, 0.0, 48.0, 48.0]]))
    assert torch.allclose(given.boxes, torch.tensor([[0.0, 0.0, 48.0, 48.0]]), atol=1e-3)


def test_detector_training_and_safetensors_cache(tmp_path):
    from colearn_plugin_vilbert.detector import VERSION, accuracy, load_detector, train_detector
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    # two easy "classes": bright top half vs bright bottom half
    images = torch.zeros(256, 28, 28, dtype=torch.uint8)
    labels = torch.randint(0, 2, (256,), generator=g)
    images[labels == 0, :14] = 200
    images[labels == 1, 14:] = 200
    images = images + torch.randint(0, 40, images.shape, generator=g).to(torch.uint8)
    model = train_detector(images, labels, epochs=2, batch_size=32, lr=3e-3)
    assert accuracy(model, images, labels) > 0.95

    with pytest.raises(FileNotFoundError, match="no cached fashion detector"):
        load_detector(tmp_path, train_if_missing=False)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp_path / f"fashion-detector-v{VERSION}.safetensors"))
    loaded = load_detector(tmp_path, train_if_missing=False)
    x = images[:8].unsqueeze(1).float() / 255
    assert torch.equal(loaded(x), model(x))
