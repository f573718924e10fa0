"""image/vit and image/resnet: the contract, parameter counts of the standard sizes, and the
transformer pieces against straightforward reference implementations."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from colearn_plugin_image.resnet import ResNetEncoder
from colearn_plugin_image.vit import (
    Attention,
    PatchEmbed,
    TransformerBlock,
    VisionTransformer,
    num_parameters,
)

from colearn_core import ConfigError, registries
from colearn_core.testing import check_encoder, check_plugin


def test_plugin_contract() -> None:
    checked = check_plugin("colearn-plugin-image")
    assert sorted(checked["encoders"]) == ["image/resnet", "image/vit"]
    assert checked["modalities"] == ["image"]
    assert registries.encoders.get("image/vit") is VisionTransformer


@pytest.mark.parametrize(
    "config",
    [
        {"width": 32, "depth": 1, "heads": 4, "image_size": 16, "patch_size": 4, "pool": "mean"},
        {"width": 32, "depth": 2, "heads": 2, "image_size": 16, "patch_size": 8, "output_dim": 8},
        # a spectrogram-shaped single-channel input with overlapping rectangular patches
        {
            "width": 16,
            "depth": 1,
            "heads": 2,
            "in_chans": 1,
            "image_size": [32, 50],
            "patch_size": [16, 16],
            "patch_stride": [10, 10],
            "bias_kv": True,
            "drop_path": 0.1,
            "pre_norm": True,
        },
    ],
)
def test_vit_variants_pass_the_contract(config) -> None:
    encoder = check_encoder(VisionTransformer, config)
    out = encoder(encoder.example_inputs(2))
    grid = encoder.trunk.grid
    assert out.tokens.shape[1] == grid[0] * grid[1] + encoder.trunk.num_prefix_tokens


def test_resnet_variants() -> None:
    check_encoder(
        ResNetEncoder,
        {
            "arch": "resnet18",
            "layers": [1, 1, 1, 1],
            "in_chans": 1,
            "output_dim": 8,
            "image_size": 8,
        },
    )
    bottleneck = ResNetEncoder(arch="resnet50", layers=[1, 1, 1, 1])
    out = bottleneck({"pixels": torch.randn(2, 3, 16, 16)})
    assert bottleneck.width == 2048 and out.tokens.shape == (2, 1, 2048)
    out.pooled.sum().backward()
    assert bottleneck.stem[0].weight.grad is not None


def test_vit_b16_has_85_8m_parameters() -> None:
    with torch.device("meta"):  # count without allocating
        model = VisionTransformer(size="base", patch_size=16, image_size=224)
    n = num_parameters(model)
    print(f"ViT-B/16 @224, no head: {n:,} parameters")
    assert abs(n - 85.8e6) / 85.8e6 < 0.01
    # every standard size, by hand: patch embed + [CLS] + positions + blocks + final norm
    for size, width, depth, patch, expected_m in [
        ("tiny", 192, 12, 16, 5.5),
        ("small", 384, 12, 16, 21.7),
        ("large", 1024, 24, 16, 303.3),
        ("huge", 1280, 32, 14, 630.8),
    ]:
        with torch.device("meta"):
            model = VisionTransformer(size=size, patch_size=patch, image_size=224)
        tokens = (224 // patch) ** 2 + 1
        block = 12 * width * width + 13 * width  # qkv, proj, 2 MLP layers, 2 norms
        by_hand = 3 * patch * patch * width + width + width + tokens * width
        by_hand += depth * block + 2 * width
        n = num_parameters(model)
        print(f"ViT-{size}/{patch} @224, no head: {n:,} parameters")
        assert n == by_hand
        assert abs(n / 1e6 - expected_m) < 0.05 * expected_m


def test_resnet_parameter_counts_match_torchvision_without_fc() -> None:
    for arch in ("resnet18", "resnet50"):
        with torch.device("meta"):
            reference = getattr(torchvision.models, arch)(weights=None)
            n_ref = num_parameters(reference) - num_parameters(reference.fc)
            assert num_parameters(ResNetEncoder(arch=arch)) == n_ref


def test_resnet_pooled_is_torchvision_average_pool_and_tokens_the_feature_map() -> None:
    from torchvision.models.resnet import BasicBlock, ResNet

    torch.manual_seed(0)
    reference = ResNet(BasicBlock, [1, 1, 1, 1]).eval()  # a shallow resnet18, to keep it quick
    reference.fc = torch.nn.Identity()
    encoder = ResNetEncoder(arch="resnet18", layers=[1, 1, 1, 1]).eval()
    state = {k: v for k, v in reference.state_dict().items()}
    renamed = {}
    for key, value in state.items():
        stem = {"conv1.": "stem.0.", "bn1.": "stem.1."}
        for old, new in stem.items():
            if key.startswith(old):
                key = new + key[len(old) :]
        renamed[key] = value
    encoder.load_state_dict(renamed, strict=True)
    x = torch.randn(2, 3, 64, 64)
    out = encoder({"pixels": x})
    with torch.no_grad():
        torch.testing.assert_close(out.pooled, reference(x), atol=1e-5, rtol=1e-5)
    assert out.tokens.shape == (2, 4, 512)  # 64 px / 32 = 2x2 feature map
    small = ResNetEncoder(arch="resnet18", layers=[1, 1, 1, 1], small_stem=True)
    assert small({"pixels": torch.randn(2, 3, 32, 32)}).tokens.shape == (2, 16, 512)  # 32/8
    assert small.stem[0].kernel_size == (3, 3) and isinstance(small.stem[3], torch.nn.Identity)


def _reference_attention(attn: Attention, x, mask=None, causal=False):
    """Softmax attention written out, for one batch."""
    B, T, D = x.shape
    H, hd = attn.heads, attn.head_dim
    q, k, v = attn.qkv(x).chunk(3, dim=-1)
    if attn.bias_k is not None:
        k = torch.cat([k, attn.bias_k.expand(B, 1, D)], 1)
        v = torch.cat([v, attn.bias_v.expand(B, 1, D)], 1)
    S = k.shape[1]
    q = q.view(B, T, H, hd).transpose(1, 2)
    k = k.view(B, S, H, hd).transpose(1, 2)
    v = v.view(B, S, H, hd).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(hd)  # (B, H, T, S)
    allowed = torch.ones(B, 1, T, S, dtype=torch.bool)
    if mask is not None:  # key padding (B, T)
        allowed[..., :T] &= mask[:, None, None, :]
    if causal:
        allowed[..., :T] &= torch.ones(T, T, dtype=torch.bool).tril()
    scores = scores.masked_fill(~allowed, float("-inf"))
    out = scores.softmax(-1) @ v
    return attn.proj(out.transpose(1, 2).reshape(B, T, D))


@pytest.mark.parametrize("bias_kv", [False, True])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_attention_matches_reference(bias_kv, causal, padded) -> None:
    torch.manual_seed(0)
    attn = Attention(16, 4, bias_kv=bias_kv)
    if bias_kv:
        torch.nn.init.normal_(attn.bias_k)
        torch.nn.init.normal_(attn.bias_v)
    x = torch.randn(2, 5, 16)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool) if padded else None
    got = attn(x, None if mask is None else mask[:, None, None, :], is_causal=causal)
    expected = _reference_attention(attn, x, mask, causal)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_block_pre_and_post_norm_match_their_definitions() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 4, 16)
    pre = TransformerBlock(16, 2).eval()
    h = x + pre.attn(pre.norm1(x))
    torch.testing.assert_close(pre(x), h + pre.mlp(pre.norm2(h)))
    post = TransformerBlock(16, 2, norm_first=False, act="quick_gelu").eval()
    h = post.norm1(x + post.attn(x))
    torch.testing.assert_close(post(x), post.norm2(h + post.mlp(h)))


def test_patch_embed_is_a_linear_map_of_each_patch() -> None:
    torch.manual_seed(0)
    embed = PatchEmbed(2, 8, patch_size=(4, 2))
    x = torch.randn(1, 2, 8, 6)
    out = embed(x)
    assert out.shape == (1, 2 * 3, 8)
    patch = x[0, :, 4:8, 2:4].reshape(-1)  # row 1, column 1 -> token 1 * 3 + 1
    expected = embed.proj.weight.reshape(8, -1) @ patch + embed.proj.bias
    torch.testing.assert_close(out[0, 4], expected, atol=1e-5, rtol=1e-5)
    assert PatchEmbed(1, 8, 16, stride=10).grid_size((128, 204)) == (12, 19)


def test_vit_pooling_and_positional_embedding_resizing() -> None:
    torch.manual_seed(0)
    cls_vit = VisionTransformer(**VisionTransformer.example_config()).eval()
    x = torch.randn(2, 3, 32, 32)
    out = cls_vit({"pixels": x})
    assert torch.equal(out.pooled, out.tokens[:, 0])
    mean_vit = VisionTransformer(**VisionTransformer.example_config(), pool="mean").eval()
    out = mean_vit({"pixels": x})
    assert mean_vit.trunk.cls_token is None and out.tokens.shape[1] == 16
    torch.testing.assert_close(out.pooled, out.tokens.mean(1))
    # another input size: the positional embedding is resized, the native one kept
    bigger = cls_vit({"pixels": torch.randn(1, 3, 48, 40)})
    assert bigger.tokens.shape == (1, 1 + 6 * 5, 32)
    assert cls_vit.trunk._pos_embed_for((4, 4)) is cls_vit.trunk.pos_embed


def test_vit_size_presets_and_overrides() -> None:
    with torch.device("meta"):
        vit = VisionTransformer(size="small", depth=2, patch_size=32, image_size=64)
    assert vit.width == 384 and len(vit.trunk.blocks) == 2
    assert vit.trunk.blocks[0].attn.heads == 6


@pytest.mark.parametrize(
    ("cls", "config", "match"),
    [
        (VisionTransformer, {"size": "gigantic"}, "size must be one of"),
        (VisionTransformer, {"widht": 32}, "unknown config keys"),
        (VisionTransformer, {"width": 30, "heads": 4, "depth": 1}, "divisible"),
        (VisionTransformer, {"pool": "max"}, "pool must be"),
        (VisionTransformer, {"pool": "cls", "class_token": False}, "needs class_token"),
        (VisionTransformer, {"patch_size": [16, 16, 3]}, "patch_size must be"),
        (VisionTransformer, {"act": "swish", "depth": 1}, "act must be"),
        (ResNetEncoder, {"arch": "resnet9"}, "arch must be one of"),
        (ResNetEncoder, {"layers": [1, 1]}, "4 stage depths"),
    ],
)
def test_config_errors(cls, config, match) -> None:
    with torch.device("meta"), pytest.raises(ConfigError, match=match):
        cls(**config)


def test_wrong_input_shape_is_a_clear_error() -> None:
    vit = VisionTransformer(**VisionTransformer.example_config())
    with pytest.raises(ValueError, match=r"expected pixels of shape \(B, 3, H, W\)"):
        vit({"pixels": torch.randn(2, 1, 32, 32)})
    resnet = ResNetEncoder(**ResNetEncoder.example_config())
    with pytest.raises(ValueError, match=r"image/resnet: expected pixels"):
        resnet({"pixels": torch.randn(2, 32, 32)})
