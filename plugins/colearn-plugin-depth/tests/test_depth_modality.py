"""The depth modality: decoding, depth <-> disparity, invalid pixels, normalisation, resizing."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from colearn_plugin_depth.modality import DepthModality, depth_to_disparity, disparity_to_depth
from colearn_plugin_depth.single_channel import SampleError, resize_map
from PIL import Image

from colearn_core import ConfigError
from colearn_core.testing import check_modality


def _depth_map(h=6, w=8, seed=0):
    return np.random.default_rng(seed).uniform(0.5, 6.0, size=(h, w)).astype(np.float32)


def _same_size(**config):
    """No resampling: output pixels correspond one to one to input pixels."""
    return DepthModality(image_size=(6, 8), crop="none", **config)


def _png_bytes(array_u16):
    buf = io.BytesIO()
    Image.fromarray(array_u16).save(buf, format="PNG")
    return buf.getvalue()


def test_contract():
    batch = check_modality(DepthModality)
    assert batch["pixels"].shape == (3, 1, 224, 224) and batch["valid"].all()


def test_registered():
    from colearn_core import registries

    assert registries.modalities.get("depth") is DepthModality


@pytest.mark.parametrize(("baseline", "focal"), [(1.0, 1.0), (0.075, 518.86), (0.2, 35.0)])
def test_depth_disparity_round_trip(baseline, focal):
    depth = torch.from_numpy(_depth_map()).double()
    disparity = depth_to_disparity(depth, baseline, focal)
    torch.testing.assert_close(disparity, baseline * focal / depth)
    torch.testing.assert_close(disparity_to_depth(disparity, baseline, focal), depth)
    assert torch.isinf(depth_to_disparity(torch.zeros(1), baseline, focal)).all()


def test_float_depth_becomes_normalised_disparity():
    depth = _depth_map()
    out = _same_size(baseline=0.1, focal_length=50.0, mean=1.0, std=2.0).preprocess(depth)
    expected = (0.1 * 50.0 / depth - 1.0) / 2.0
    assert out["pixels"].shape == (1, 6, 8) and out["pixels"].dtype == torch.float32
    np.testing.assert_allclose(out["pixels"][0].numpy(), expected, rtol=1e-6, atol=1e-6)
    assert out["valid"].all()


def test_depth_output_and_disparity_input():
    depth = _depth_map()
    assert torch.allclose(
        _same_size(output="depth").preprocess(depth)["pixels"][0], torch.from_numpy(depth)
    )
    disparity = 2.0 / depth
    out = _same_size(input="disparity", output="depth", baseline=2.0).preprocess(disparity)
    np.testing.assert_allclose(out["pixels"][0].numpy(), depth, rtol=1e-6)


def test_16_bit_png_in_millimetres():
    millimetres = (_depth_map() * 1000).astype(np.uint16)
    expected = millimetres.astype(np.float64) / 1000.0
    modality = _same_size(output="depth")
    for sample in (
        Image.open(io.BytesIO(_png_bytes(millimetres))),
        _png_bytes(millimetres),
        {"bytes": _png_bytes(millimetres), "path": None},
        torch.from_numpy(millimetres.astype(np.int32)),
    ):
        out = modality.preprocess(sample)["pixels"][0].numpy()
        np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_paths_png_and_npy(tmp_path):
    depth = _depth_map()
    np.save(tmp_path / "d.npy", depth)
    millimetres = (depth * 1000).astype(np.uint16)
    (tmp_path / "d.png").write_bytes(_png_bytes(millimetres))
    modality = _same_size(output="depth")
    np.testing.assert_allclose(modality.preprocess(tmp_path / "d.npy")["pixels"][0], depth)
    out = modality.preprocess(str(tmp_path / "d.png"))["pixels"][0].numpy()
    np.testing.assert_allclose(out, millimetres / 1000.0, rtol=1e-6)
    out = modality.preprocess({"bytes": None, "path": str(tmp_path / "d.npy")})["pixels"][0]
    np.testing.assert_allclose(out, depth)


def test_nan_is_an_error_naming_the_example():
    depth = _depth_map()
    depth[1, 2] = np.nan
    depth[3, 3] = np.inf
    with pytest.raises(SampleError, match=r"modality 'depth', example 4: 2 of 48 pixels") as info:
        _same_size().preprocess(depth, index=4)
    assert "invalid='mask'" in str(info.value) and info.value.index == 4


def test_zero_depth_is_a_missing_measurement():
    depth = _depth_map()
    depth[0, 0] = 0.0
    with pytest.raises(SampleError, match="or 0 \\(no measurement\\)"):
        _same_size().preprocess(depth, index=0)


def test_mask_mode_marks_and_fills_invalid_pixels():
    depth = _depth_map()
    depth[1, 2], depth[5, 7], depth[0, 0] = np.nan, -1.0, 0.0
    out = _same_size(invalid="mask", fill_value=-9.0, output="depth").preprocess(depth)
    valid = out["valid"][0].numpy()
    assert not valid[1, 2] and not valid[5, 7] and not valid[0, 0] and valid.sum() == 45
    pixels = out["pixels"][0].numpy()
    assert (pixels[~valid] == -9.0).all()
    np.testing.assert_allclose(pixels[valid], depth[valid], rtol=1e-6)


def test_masked_resize_ignores_invalid_pixels():
    x = torch.full((1, 8, 8), 2.0)
    x[:, :, :4] = 1000.0  # garbage where invalid
    valid = torch.ones(1, 8, 8, dtype=torch.bool)
    valid[:, :, :4] = False
    out, out_valid = resize_map(x, (4, 4), crop="none", valid=valid)
    assert torch.allclose(out[out_valid], torch.tensor(2.0))
    assert out_valid[:, :, 2:].all() and not out_valid[:, :, :2].any()


def test_resize_keeps_aspect_with_center_crop():
    # a map whose columns hold their index: after scaling the shorter side and cropping, the
    # centre column keeps the centre value
    cols = np.tile(np.arange(40, dtype=np.float32) + 1, (20, 1))
    out = DepthModality(image_size=10, output="depth").preprocess(cols)["pixels"][0]
    assert out.shape == (10, 10)
    assert torch.allclose(out[:, 0], out[0, 0]) and out[0, 0] > 10 and out[0, -1] < 31
    stretched = DepthModality(image_size=10, crop="none", output="depth").preprocess(cols)
    assert stretched["pixels"][0, 0, 0] < 3 and stretched["pixels"][0, 0, -1] > 38


def test_max_value_clamps_before_normalising():
    depth = _depth_map()
    out = _same_size(output="depth", max_value=2.0).preprocess(depth)["pixels"][0]
    assert out.max() <= 2.0 and torch.allclose(out, torch.from_numpy(depth).clamp(max=2.0))


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        (np.zeros((4, 4, 3), dtype=np.float32) + 1, "got 3 channels"),
        (Image.new("RGB", (5, 4)), "got 3 channels"),
        (np.ones((4, 4), dtype=bool), "wrong dtype bool"),
        (np.ones((4, 4), dtype=np.complex64), "wrong dtype complex64"),
        (
            b"definitely not an image",
            "cannot decode 23 bytes as an image: unrecognised image format",
        ),
        ("/nonexistent/depth.png", "file not found"),
        (np.zeros((0, 5), dtype=np.float32), "empty"),
        (np.ones((2, 3, 4, 5), dtype=np.float32), "expected a 2-D single-channel map"),
        (["a", "list"], "cannot decode a list"),
    ],
)
def test_bad_inputs_name_modality_and_example(sample, message):
    with pytest.raises(SampleError) as info:
        DepthModality().preprocess(sample, index=11)
    text = str(info.value)
    assert text.startswith("modality 'depth', example 11:") and message in text


def test_config_errors():
    with pytest.raises(ConfigError, match="unknown config key.*focal"):
        DepthModality(focal=3)
    with pytest.raises(ConfigError, match="output must be"):
        DepthModality(output="inverse")
    with pytest.raises(ConfigError, match="invalid must be"):
        DepthModality(invalid="ignore")
