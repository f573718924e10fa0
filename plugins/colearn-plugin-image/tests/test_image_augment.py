"""The batched SimCLR pipeline: each op against torchvision's per-image functional op, the
random parameters' statistics, ablation sets and determinism under a seed."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.v2.functional as TF
from colearn_plugin_image.augment import (
    SimCLRAugment,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    gaussian_blur,
    resized_crop_flip,
)
from colearn_plugin_image.modality import ImageModality

from colearn_core import ConfigError


def _images(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    ("ours", "theirs", "factors"),
    [
        (adjust_brightness, TF.adjust_brightness, [0.2, 1.0, 1.7]),
        (adjust_contrast, TF.adjust_contrast, [0.2, 1.0, 1.8]),
        (adjust_saturation, TF.adjust_saturation, [0.2, 1.0, 1.8]),
        (adjust_hue, TF.adjust_hue, [-0.2, 0.0, 0.13]),
    ],
)
def test_colour_ops_match_torchvision_per_image(ours, theirs, factors) -> None:
    x = _images(3)
    x[0, :, :2, :2] = 0.5  # gray pixels: zero chroma, undefined hue
    got = ours(x, torch.tensor(factors))
    for i, f in enumerate(factors):
        torch.testing.assert_close(got[i], theirs(x[i], f), atol=2e-5, rtol=0)


def test_gaussian_blur_matches_torchvision_per_image() -> None:
    x = _images(3, size=20)
    sigmas = [0.1, 0.8, 2.0]
    got = gaussian_blur(x, torch.tensor(sigmas), kernel_size=5)
    for i, s in enumerate(sigmas):
        expected = TF.gaussian_blur(x[i], kernel_size=[5, 5], sigma=[s, s])
        torch.testing.assert_close(got[i], expected, atol=1e-5, rtol=0)


def test_resized_crop_and_flip_geometry() -> None:
    x = _images(2, size=12)
    full = torch.tensor([[0.0, 0.0, 12.0, 12.0]] * 2)
    torch.testing.assert_close(resized_crop_flip(x, full), x, atol=1e-5, rtol=0)
    flipped = resized_crop_flip(x, full, torch.tensor([True, False]))
    torch.testing.assert_close(flipped[0], x[0].flip(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(flipped[1], x[1], atol=1e-5, rtol=0)
    # A half-size box upsampled 2x agrees with torchvision's crop-then-resize away from the
    # box edge (we read real neighbours there, torchvision replicates the crop's edge).
    box = torch.tensor([[2.0, 4.0, 6.0, 6.0]] * 2)
    got = resized_crop_flip(x, box)
    expected = TF.resized_crop(x, 2, 4, 6, 6, [12, 12], antialias=False)
    torch.testing.assert_close(got[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], atol=1e-5, rtol=0)


def test_crop_boxes_lie_inside_and_follow_scale_and_ratio() -> None:
    aug = SimCLRAugment(["crop"])
    boxes = aug.sample_crop_boxes(4000, 32, 48, _gen(0))
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (h >= 1).all() and (w >= 1).all()
    assert (top + h <= 32).all() and (left + w <= 48).all()
    assert torch.equal(boxes, boxes.round())  # whole pixels, as torchvision draws them
    scale = h * w / (32 * 48)
    assert scale.min() >= 0.06 and scale.max() <= 1.0  # 0.08 before rounding to pixels
    ratio = w / h
    assert ratio.min() >= 0.7 and ratio.max() <= 1.45  # 3/4 .. 4/3 before rounding
    # The same distribution as torchvision's sampler (which rejects draws that don't fit).
    torch.manual_seed(0)
    image = torch.zeros(3, 32, 48)
    ref = torch.tensor(
        [T.RandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(4000)]
    ).float()
    ref_scale = ref[:, 2] * ref[:, 3] / (32 * 48)
    assert abs(scale.mean().item() - ref_scale.mean().item()) < 0.02  # sd of a mean ~0.004
    assert abs(scale.std().item() - ref_scale.std().item()) < 0.02
    ref_log_ratio = (ref[:, 3] / ref[:, 2]).log()
    assert abs(ratio.log().mean().item() - ref_log_ratio.mean().item()) < 0.02
    centre = (left + w / 2) / 48
    ref_centre = (ref[:, 1] + ref[:, 3] / 2) / 48
    assert abs(centre.mean().item() - ref_centre.mean().item()) < 0.02


def _fraction(mask: torch.Tensor) -> float:
    return mask.float().mean().item()


def test_grayscale_applied_to_about_20_percent() -> None:
    x = _images(4000, size=4)
    out = SimCLRAugment(["grayscale"])(x, _gen(1))
    is_gray = (out[:, 0] == out[:, 1]).all(dim=(1, 2)) & (out[:, 1] == out[:, 2]).all(dim=(1, 2))
    assert abs(_fraction(is_gray) - 0.2) < 0.025  # 4000 draws: sd 0.0063
    changed = (out != x).flatten(1).any(1)
    assert torch.equal(changed, is_gray)


def test_colour_jitter_applied_to_about_80_percent() -> None:
    x = _images(4000, size=4)
    out = SimCLRAugment(["jitter"])(x, _gen(2))
    changed = (out - x).abs().flatten(1).amax(1) > 1e-4
    assert abs(_fraction(changed) - 0.8) < 0.025
    assert out.min() >= 0 and out.max() <= 1


def test_flip_and_blur_probabilities() -> None:
    x = _images(2000, size=8)
    out = SimCLRAugment(["flip"])(x, _gen(3))
    flipped = (out - x.flip(-1)).abs().flatten(1).amax(1) < 1e-5
    assert abs(_fraction(flipped) - 0.5) < 0.04
    out = SimCLRAugment(["blur"], blur_p=0.3)(x, _gen(4))
    blurred = (out - x).abs().flatten(1).amax(1) > 1e-6
    assert abs(_fraction(blurred) - 0.3) < 0.04


def test_kernel_is_ten_percent_of_the_image_and_odd() -> None:
    aug = SimCLRAugment()
    assert aug.kernel_size(96, 96) == 9
    assert aug.kernel_size(224, 224) == 23
    assert aug.kernel_size(32, 32) == 3
    assert SimCLRAugment(blur_kernel=7).kernel_size(224, 224) == 7


def test_ablation_sets_select_ops() -> None:
    colour = torch.rand(500, 3, 1, 1, generator=_gen(5)).expand(500, 3, 16, 16).contiguous()
    crop_only = SimCLRAugment(["crop"])(colour, _gen(6))
    torch.testing.assert_close(crop_only, colour)  # crops of a flat colour are that colour
    with_colour = SimCLRAugment(["crop", "color"])(colour, _gen(6))
    changed = (with_colour - colour).abs().flatten(1).amax(1) > 1e-4
    # jitter (p=0.8) or grayscale (p=0.2) changed it: 1 - 0.2 * 0.8 = 84%
    assert abs(_fraction(changed) - 0.84) < 0.06
    assert SimCLRAugment(["color"]).ops == {"color", "jitter", "grayscale"}
    with pytest.raises(ConfigError, match="colour|unknown"):
        SimCLRAugment(["crop", "solarize"])


def test_colour_strength_scales_jitter() -> None:
    x = _images(1000, size=4)
    weak = SimCLRAugment(["jitter"], color_strength=0.1, jitter_p=1.0)(x, _gen(7))
    strong = SimCLRAugment(["jitter"], color_strength=1.0, jitter_p=1.0)(x, _gen(7))
    assert (weak - x).abs().mean() < 0.25 * (strong - x).abs().mean()


def test_deterministic_under_a_seed() -> None:
    x = _images(64)
    aug = SimCLRAugment()
    a, b = aug(x, _gen(8)), aug(x, _gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, aug(x, _gen(9)))
    assert torch.equal(x, _images(64))  # the input is not modified in place


def test_single_channel_images() -> None:
    x = torch.rand(32, 1, 16, 16, generator=_gen(10))
    out = SimCLRAugment()(x, _gen(11))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1


def test_modality_augment_roundtrips_normalisation() -> None:
    mod = ImageModality(image_size=16, augmentations=[])
    batch = {"pixels": mod.normalize(_images(4)), "label": torch.arange(4)}
    out = mod.augment(batch, generator=_gen(12))
    torch.testing.assert_close(out["pixels"], batch["pixels"], atol=1e-5, rtol=0)
    assert out["label"] is batch["label"]
    mod = ImageModality(image_size=16, augmentations=["crop", "color"], grayscale_p=1.0)
    out = mod.denormalize(mod.augment(batch, generator=_gen(12))["pixels"])
    torch.testing.assert_close(out[:, 0], out[:, 1], atol=1e-5, rtol=0)
    assert math.isclose(mod.augmenter.grayscale_p, 1.0)
