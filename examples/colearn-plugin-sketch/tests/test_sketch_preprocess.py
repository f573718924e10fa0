"""Edge maps against scipy.ndimage, grayscale against the luma formula, inputs and errors."""

import io

import numpy as np
import pytest
import torch
from colearn_core import ConfigError
from PIL import Image
from scipy import ndimage

from colearn_plugin_sketch.modality import (
    SketchModality,
    gaussian_blur,
    sobel_magnitude,
    to_grayscale,
)


def random_image(seed=0, shape=(24, 24)):
    return np.random.default_rng(seed).random(shape)


def test_sobel_matches_scipy():
    image = random_image()
    expected = np.hypot(
        ndimage.sobel(image, axis=0, mode="nearest"), ndimage.sobel(image, axis=1, mode="nearest")
    )
    got = sobel_magnitude(torch.tensor(image, dtype=torch.float32))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_blur_matches_scipy(sigma):
    image = random_image(1)
    expected = ndimage.gaussian_filter(image, sigma, mode="nearest", truncate=3.0)
    got = gaussian_blur(torch.tensor(image, dtype=torch.float32), sigma)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_edges_are_the_normalised_blurred_sobel_magnitude():
    image = random_image(2, (32, 32))
    blurred = ndimage.gaussian_filter(image, 1.0, mode="nearest", truncate=3.0)
    magnitude = np.hypot(
        ndimage.sobel(blurred, axis=0, mode="nearest"),
        ndimage.sobel(blurred, axis=1, mode="nearest"),
    )
    edges = SketchModality(image_size=32).preprocess(image.astype(np.float32))["edges"]
    assert edges.shape == (1, 32, 32) and edges.dtype == torch.float32
    np.testing.assert_allclose(edges[0].numpy(), magnitude / magnitude.max(), atol=1e-5)
    assert edges.max().item() == pytest.approx(1.0)


def test_a_vertical_step_gives_strokes_only_along_the_step():
    image = np.zeros((32, 32), dtype=np.uint8)
    image[:, 16:] = 255
    edges = SketchModality(image_size=32, blur_sigma=0, threshold=0.5).preprocess(image)["edges"]
    columns = edges[0].sum(dim=0)
    assert columns[15].item() == 32 and columns[16].item() == 32  # both sides of the step
    assert columns.sum().item() == 64  # nothing anywhere else


def test_a_flat_image_has_no_edges():
    edges = SketchModality(image_size=16).preprocess(np.full((20, 20), 0.7))["edges"]
    assert torch.equal(edges, torch.zeros(1, 16, 16))


def test_grayscale_uses_luma_weights_and_drops_alpha():
    rgba = np.zeros((4, 5, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 200, 100, 50, 7
    expected = (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255
    gray = to_grayscale(rgba)
    assert gray.shape == (4, 5)
    torch.testing.assert_close(gray, torch.full((4, 5), expected))


def test_every_input_type_gives_the_same_edges(tmp_path):
    rgb = (np.random.default_rng(3).random((40, 36, 3)) * 255).astype(np.uint8)
    pil = Image.fromarray(rgb)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    path = tmp_path / "image.png"
    path.write_bytes(buffer.getvalue())
    modality = SketchModality(image_size=24)
    reference = modality.preprocess(rgb)["edges"]
    for sample in (
        pil,
        buffer.getvalue(),
        str(path),
        path,
        {"bytes": buffer.getvalue(), "path": None},
        {"bytes": None, "path": str(path)},
        torch.from_numpy(rgb).permute(2, 0, 1),  # (C, H, W)
        rgb.astype(np.float32) / 255,
    ):
        torch.testing.assert_close(modality.preprocess(sample)["edges"], reference)


def test_resizes_to_image_size():
    edges = SketchModality(image_size=20).preprocess(random_image(4, (50, 70)))["edges"]
    assert edges.shape == (1, 20, 20)


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        (np.zeros((2, 3, 4, 5)), r"expected an image of shape .* got \(2, 3, 4, 5\)"),
        (np.zeros((2, 2)), r"H, W >= 3; got \(2, 2\)"),
        (np.full((8, 8), np.nan), "NaN"),
    ],
)
def test_bad_images_are_refused(sample, message):
    with pytest.raises(ValueError, match=message):
        SketchModality().preprocess(sample)


def test_unreadable_type_is_refused():
    with pytest.raises(TypeError, match="cannot read a int"):
        SketchModality().preprocess(3)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"size": 3}, "unknown config keys"),
        ({"image_size": 4}, "image_size must be >= 8"),
        ({"threshold": 1.5}, r"threshold must be in \(0, 1\)"),
        ({"drop_p": 1.0}, r"drop_p must be in \[0, 1\)"),
    ],
)
def test_bad_config_is_refused(config, message):
    with pytest.raises(ConfigError, match=message):
        SketchModality(**config)
