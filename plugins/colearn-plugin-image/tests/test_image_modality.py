"""The image modality: every input kind decodes to the same pixels, normalisation equals
hand-computed values, resizing follows the config, and each bad input is a clear error."""

from __future__ import annotations

import io

import numpy as np
import PIL.Image
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from colearn_plugin_image.modality import CLIP_MEAN, CLIP_STD, ImageInputError, ImageModality

from colearn_core import ConfigError
from colearn_core.testing import check_modality

BICUBIC = TF.InterpolationMode.BICUBIC


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(6, 8, 3), dtype=np.uint8)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_normalisation_matches_hand_computed_values() -> None:
    mod = ImageModality(image_size=1, resize="none")
    pixel = np.array([[[255, 0, 51]]], dtype=np.uint8)  # 51/255 = 0.2
    got = mod.preprocess(pixel)["pixels"].flatten().tolist()
    # (1 - 0.48145466) / 0.26862954, (0 - 0.4578275) / 0.26130258, (0.2 - 0.40821073) / 0.27577711
    expected = [1.9303361, -1.7520971, -0.7549964]
    assert got == pytest.approx(expected, abs=1e-6)
    gray = ImageModality(image_size=1, resize="none", channels=1, mean=[0.5], std=[0.25])
    assert gray.preprocess(np.array([[255]], dtype=np.uint8))["pixels"].item() == 2.0
    assert mod.config["mean"] == list(CLIP_MEAN) and mod.config["std"] == list(CLIP_STD)


def test_every_input_kind_decodes_to_the_same_pixels(rgb, tmp_path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(_png(rgb))
    expected = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
    samples = {
        "pil": PIL.Image.fromarray(rgb),
        "pil rgba": PIL.Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])),
        "pil palette": PIL.Image.fromarray(rgb).convert("P", palette=PIL.Image.Palette.ADAPTIVE),
        "datasets bytes": {"bytes": _png(rgb), "path": None},
        "datasets path": {"bytes": None, "path": str(path)},
        "bytes": _png(rgb),
        "path": path,
        "str path": str(path),
        "numpy HWC uint8": rgb,
        "numpy CHW uint8": rgb.transpose(2, 0, 1).copy(),
        "numpy HWC float": rgb.astype(np.float32) / 255,
        "numpy HWC float64": rgb.astype(np.float64) / 255,
        "numpy RGBA": np.dstack([rgb, np.zeros(rgb.shape[:2], np.uint8)]),
        "tensor CHW float": expected.clone(),
        "tensor CHW uint8": torch.from_numpy(rgb).permute(2, 0, 1).contiguous(),
        "tensor HWC uint8": torch.from_numpy(rgb),
    }
    mod = ImageModality(image_size=(6, 8), resize="none")
    for name, sample in samples.items():
        got = mod.decode(sample)
        if name == "pil palette":  # an adaptive palette quantises colours
            assert got.shape == expected.shape
            continue
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0, msg=name)
        out = mod.preprocess(sample)["pixels"]
        assert out.shape == (3, 6, 8) and out.dtype == torch.float32


def test_grayscale_to_three_channels_or_kept(rgb) -> None:
    gray = rgb[..., 0]
    mod3 = ImageModality(image_size=(6, 8), resize="none")
    for sample in (gray, PIL.Image.fromarray(gray), gray[None], torch.from_numpy(gray)):
        x = mod3.decode(sample)
        assert x.shape == (3, 6, 8)
        torch.testing.assert_close(x[0], torch.from_numpy(gray).float() / 255)
        assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    mod1 = ImageModality(image_size=(6, 8), resize="none", channels=1)
    assert mod1.decode(gray).shape == (1, 6, 8)
    assert mod1.preprocess(PIL.Image.fromarray(gray))["pixels"].shape == (1, 6, 8)
    # colour -> luma: arrays agree with PIL's convert("L") up to its rounding to 8 bits
    from_array = mod1.decode(rgb)
    from_pil = mod1.decode(PIL.Image.fromarray(rgb))
    torch.testing.assert_close(from_array, from_pil, atol=1 / 255 + 1e-6, rtol=0)


def test_resize_shorter_side_then_centre_crop_like_clip() -> None:
    x = torch.rand(3, 40, 60, generator=torch.Generator().manual_seed(0))
    mod = ImageModality(image_size=20)
    expected = TF.center_crop(TF.resize(x, [20, 30], BICUBIC, antialias=True), [20, 20]).clamp(0, 1)
    torch.testing.assert_close(mod.resize_crop(x), expected, atol=1e-5, rtol=0)
    # non-square target: the image is scaled to cover it, then cropped
    assert ImageModality(image_size=[10, 40]).resize_crop(x).shape == (3, 10, 40)
    stretched = ImageModality(image_size=[16, 16], resize="stretch").resize_crop(x)
    torch.testing.assert_close(
        stretched, TF.resize(x, [16, 16], BICUBIC, antialias=True).clamp(0, 1), atol=1e-5, rtol=0
    )
    same = ImageModality(image_size=[40, 60]).resize_crop(x)
    assert torch.equal(same, x)  # no resampling at the right size
    cropped = ImageModality(image_size=[20, 20], resize="none").resize_crop(x)
    assert torch.equal(cropped, x[:, 10:30, 20:40])
    nearest = ImageModality(image_size=80, interpolation="nearest").resize_crop(x)
    assert nearest.shape == (3, 80, 80)


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        (np.zeros((6, 8, 2), np.uint8), "wrong channel count: expected 1, 3 or 4 channels"),
        (np.zeros((5, 6, 8), np.uint8), "wrong channel count"),
        (torch.zeros(2, 6, 8), "wrong channel count"),
        (np.zeros((1, 3, 6, 8), np.uint8), r"expected an array of shape \(H, W\)"),
        (
            np.zeros((6, 8), np.int32),
            "expected uint8 .0-255. or float .0-1. pixels, got dtype int32",
        ),
        (np.zeros((6, 8), bool), "got dtype bool"),
        (np.full((6, 8), 255.0, np.float32), r"float pixels must lie in \[0, 1\]"),
        (np.full((6, 8), np.nan, np.float32), "NaN"),
        (np.zeros((0, 8), np.uint8), "empty image"),
        (b"definitely not a png", "could not decode image bytes as an image"),
        ({"bytes": b"\x89PNG\r\n\x1a\n broken", "path": None}, "could not decode"),
        ({"array": 1}, "expected a dict with 'bytes' or 'path'"),
        ("/no/such/image.png", "does not exist"),
        (12, "expected a PIL image, .* got int"),
        (None, "got NoneType"),
        (PIL.Image.new("I;16", (4, 4)), "expected an 8-bit image .* got mode 'I;16'"),
    ],
)
def test_bad_input_names_modality_example_and_expectation(sample, expected) -> None:
    mod = ImageModality(image_size=4)
    with pytest.raises(ImageInputError, match=r"^modality 'image', example 7: ") as info:
        mod.preprocess(sample, index=7)
    assert info.match(expected)
    with pytest.raises(ValueError, match=r"^modality 'image': "):  # index unknown
        mod.preprocess(sample)


def test_too_small_without_resize_is_an_error() -> None:
    with pytest.raises(ImageInputError, match="smaller than image_size 8x8"):
        ImageModality(image_size=8, resize="none").preprocess(np.zeros((4, 4), np.uint8), index=0)


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"channels": 2}, "channels must be 1 or 3"),
        ({"mean": [0.5, 0.5]}, "mean needs 1 or 3 values"),
        ({"std": [0.0]}, "std must be positive"),
        ({"resize": "fit"}, "resize must be"),
        ({"interpolation": "lanczos"}, "interpolation must be"),
        ({"image_sise": 32}, r"unknown config keys \['image_sise'\]"),
        ({"image_size": "big"}, "image_size must be an int"),
        ({"augmentations": ["crop", "mixup"]}, "unknown"),
    ],
)
def test_config_errors(config, match) -> None:
    with pytest.raises(ConfigError, match=match):
        ImageModality(**config)


def test_contract_and_config_is_resolved() -> None:
    batch = check_modality(ImageModality, {"image_size": 16}, n=5)
    assert batch["pixels"].shape == (5, 3, 16, 16)
    batch = check_modality(ImageModality, {"image_size": [8, 12], "channels": 1}, n=5)
    assert batch["pixels"].shape == (5, 1, 8, 12)
    config = ImageModality(image_size=32).config
    assert config == {
        "image_size": 32,
        "channels": 3,
        "mean": list(CLIP_MEAN),
        "std": list(CLIP_STD),
        "resize": "shorter",
        "interpolation": "bicubic",
    }


def test_datasets_image_column_decodes(rgb) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"image": [PIL.Image.fromarray(rgb)]})
    ds = ds.cast_column("image", datasets.Image())
    expected = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
    mod = ImageModality(image_size=(6, 8), resize="none")
    torch.testing.assert_close(mod.decode(ds[0]["image"]), expected)
    raw = ds.cast_column("image", datasets.Image(decode=False))[0]["image"]
    assert isinstance(raw, dict)
    torch.testing.assert_close(mod.decode(raw), expected)
    assert "Image" in ImageModality.feature_types
