"""The thermal modality and the thermal/vit encoder."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from colearn_plugin_depth.single_channel import SampleError
from colearn_plugin_depth.vit import count_parameters
from colearn_plugin_thermal.thermal import ThermalModality, ThermalViT
from PIL import Image

from colearn_core import ConfigError, registries
from colearn_core.testing import check_encoder, check_modality, check_plugin


def _same_size(**config):
    return ThermalModality(image_size=(5, 7), crop="none", **config)


def _gradient(dtype, full):
    ramp = np.add.outer(np.arange(5), np.arange(7)) / 10.0
    return (ramp * full).astype(dtype), (ramp * full).astype(dtype) / float(full)


def test_contracts_and_registration():
    assert registries.modalities.get("thermal") is ThermalModality
    assert registries.encoders.get("thermal/vit") is ThermalViT
    assert check_plugin("colearn-plugin-thermal") == {
        "encoders": ["thermal/vit"],
        "modalities": ["thermal"],
    }
    batch = check_modality(ThermalModality)
    assert batch["pixels"].shape == (3, 1, 224, 224)
    check_encoder(ThermalViT, {**ThermalViT.example_config(), "pool": "mean"})


@pytest.mark.parametrize(("dtype", "full"), [(np.uint8, 255), (np.uint16, 65535)])
def test_integer_images_scale_to_unit_range_then_normalise(dtype, full):
    image, expected = _gradient(dtype, full)
    out = _same_size(mean=0.25, std=0.5).preprocess(image)["pixels"]
    assert out.shape == (1, 5, 7) and out.dtype == torch.float32
    np.testing.assert_allclose(out[0].numpy(), (expected - 0.25) / 0.5, rtol=1e-6, atol=1e-6)


def test_pil_images_and_png_files(tmp_path):
    image8, expected8 = _gradient(np.uint8, 255)
    image16, expected16 = _gradient(np.uint16, 65535)
    Image.fromarray(image16).save(tmp_path / "t16.png")
    buf = io.BytesIO()
    Image.fromarray(image8).save(buf, format="PNG")
    modality = _same_size()
    cases = [
        (Image.fromarray(image8), expected8),
        (buf.getvalue(), expected8),
        ({"bytes": buf.getvalue(), "path": None}, expected8),
        (tmp_path / "t16.png", expected16),
        (str(tmp_path / "t16.png"), expected16),
        (torch.from_numpy(expected16.astype(np.float32)), expected16),
    ]
    for sample, expected in cases:
        out = modality.preprocess(sample)["pixels"][0].numpy()
        np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def test_float_images_are_taken_as_they_are():
    image = np.linspace(-1, 3, 35, dtype=np.float32).reshape(5, 7)
    np.testing.assert_allclose(_same_size().preprocess(image)["pixels"][0].numpy(), image)


def test_colour_images_are_an_error_unless_converted():
    rgb = np.zeros((5, 7, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 100, 200, 50
    with pytest.raises(SampleError, match=r"modality 'thermal', example 3: .*got 3 channels"):
        _same_size().preprocess(rgb, index=3)
    out = _same_size(convert_rgb=True).preprocess(Image.fromarray(rgb))["pixels"][0]
    luminance = Image.fromarray(rgb).convert("L").getpixel((0, 0)) / 255.0
    assert torch.allclose(out, torch.tensor(luminance), atol=1 / 255)


def test_resize_and_center_crop():
    image = np.zeros((40, 80), dtype=np.uint8)
    image[:, 20:60] = 255  # bright centre square
    out = ThermalModality(image_size=16).preprocess(image)["pixels"][0]
    # the crop keeps the bright square only (its outermost columns are blurred by antialiasing)
    assert out.shape == (16, 16) and torch.allclose(out[:, 1:-1], torch.ones(16, 14), atol=1e-3)
    assert out.min() > 0.8
    stretched = ThermalModality(image_size=16, crop="none").preprocess(image)["pixels"][0]
    assert stretched[:, :3].max() < 0.05 and stretched[:, 5:11].min() > 0.999


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        (np.full((4, 4), np.nan, dtype=np.float32), "16 pixels are NaN or infinite"),
        (np.ones((4, 4), dtype=np.int64), "wrong dtype int64: expected uint8, uint16 or float"),
        (np.ones((4, 4), dtype=bool), "wrong dtype bool"),
        (b"\x00\x01 not a png", "cannot decode"),
        ("/missing/thermal.png", "file not found"),
        (np.ones((4, 4, 2), dtype=np.uint8), "got 2 channels"),
        (3.5, "cannot decode a float"),
    ],
)
def test_bad_inputs_name_modality_and_example(sample, message):
    with pytest.raises(SampleError) as info:
        ThermalModality().preprocess(sample, index=5)
    assert str(info.value).startswith("modality 'thermal', example 5:")
    assert message in str(info.value)


def test_config_errors():
    with pytest.raises(ConfigError, match="unknown config key.*colormap"):
        ThermalModality(colormap="jet")
    with pytest.raises(ConfigError, match="std must be > 0"):
        ThermalModality(std=0)


def _trunk_parameters(width, depth, patches, kernel=16, mlp=4):
    """Parameter count of the trunk from its definition (bias-free stem, bias_kv, no pre-norm)."""
    stem = kernel * kernel * width + 2 * width
    tokens = width + (1 + patches) * width
    block = 4 * width + 3 * width * (width + 1) + 2 * width + width * (width + 1)
    block += 2 * mlp * width * width + mlp * width + width
    return stem + tokens + depth * block + 2 * width


def test_imagebind_huge_thermal_trunk_size(capsys):
    with torch.device("meta"):
        encoder = ThermalViT(size="imagebind-huge")
    trunk = encoder.trunk
    blocks, heads = len(trunk.blocks), trunk.blocks[0].attn.heads
    params = count_parameters(encoder)
    with capsys.disabled():
        print(
            f"\nImageBind-huge thermal trunk: width {trunk.width}, depth {blocks}, heads {heads}, "
            f"patch {trunk.patch_embed.patch_size}, image {trunk.image_size}, "
            f"{params / 1e6:.2f}M parameters"
        )
    # ImageBind (Girdhar et al., 2023), thermal encoder: ViT-B sized, width 768, 12 layers, 12 heads
    assert (trunk.width, blocks, heads) == (768, 12, 12)
    assert trunk.patch_embed.patch_size == (16, 16) and trunk.grid[0] * trunk.grid[1] == 196
    assert params == _trunk_parameters(768, 12, 196)
