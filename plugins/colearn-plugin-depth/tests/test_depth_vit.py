"""ImageBind's trunk (on colearn-plugin-image's ViT) and the depth/vit encoder."""

from __future__ import annotations

import pytest
import torch
from colearn_plugin_depth.vit import DepthViT, ImageBindTrunk, count_parameters
from colearn_plugin_image.vit import Attention
from torch import nn

from colearn_core import ConfigError
from colearn_core.testing import check_encoder, check_plugin


def test_plugin_contract():
    """Every encoder and modality the plugin registers passes colearn_core.testing's checks."""
    assert check_plugin("colearn-plugin-depth") == {
        "encoders": ["depth/vit"],
        "modalities": ["depth"],
    }
    check_encoder(DepthViT, {**DepthViT.example_config(), "pool": "mean", "drop_path": 0.1})


def test_registered_under_depth_vit():
    from colearn_core import registries

    assert registries.encoders.get("depth/vit") is DepthViT
    assert registries.encoders.entry("depth/vit").plugin == "colearn-plugin-depth"


def test_attention_with_bias_kv_matches_imagebinds_multihead_attention():
    """ImageBind's blocks use nn.MultiheadAttention(add_bias_kv=True); the same weights in the
    trunk's attention (qkv = in_proj, proj = out_proj, bias_k/bias_v) give the same output, so
    ImageBind checkpoints convert by renaming."""
    torch.manual_seed(0)
    ours = Attention(32, 4, bias_kv=True)
    nn.init.normal_(ours.bias_k)
    nn.init.normal_(ours.bias_v)
    nn.init.normal_(ours.qkv.bias)
    ref = nn.MultiheadAttention(32, 4, add_bias_kv=True, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.qkv.weight)
        ref.in_proj_bias.copy_(ours.qkv.bias)
        ref.out_proj.weight.copy_(ours.proj.weight)
        ref.out_proj.bias.copy_(ours.proj.bias)
        ref.bias_k.copy_(ours.bias_k)
        ref.bias_v.copy_(ours.bias_v)
    x = torch.randn(3, 7, 32)
    expected = ref(x, x, x, need_weights=False)[0]
    torch.testing.assert_close(ours(x), expected, atol=1e-5, rtol=1e-5)


def test_trunk_against_a_direct_computation():
    """Bias-free patch convolution, patch LayerNorm, class token, positions, blocks, final norm."""
    torch.manual_seed(0)
    trunk = ImageBindTrunk(
        in_chans=2, image_size=(12, 20), patch_size=4, patch_stride=(4, 2), width=16, depth=2,
        heads=2,
    ).eval()  # fmt: skip
    with torch.no_grad():
        nn.init.normal_(trunk.patch_embed.norm.weight)
        nn.init.normal_(trunk.patch_embed.norm.bias)
    x = torch.randn(3, 2, 12, 20)
    tokens = trunk(x)
    assert trunk.grid == (3, 9) and tokens.shape == (3, 1 + 27, 16)
    assert trunk.patch_embed.proj.bias is None
    assert all(block.attn.bias_k is not None for block in trunk.blocks)

    patches = x.unfold(2, 4, 4).unfold(3, 4, 2)  # (B, C, 3, 9, 4, 4)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(3, 27, 2 * 16)
    emb = patches @ trunk.patch_embed.proj.weight.reshape(16, -1).T
    emb = torch.nn.functional.layer_norm(
        emb, (16,), trunk.patch_embed.norm.weight, trunk.patch_embed.norm.bias, eps=1e-6
    )
    h = torch.cat([trunk.cls_token.expand(3, -1, -1), emb], 1) + trunk.pos_embed
    for block in trunk.blocks:
        h = block(h)
    torch.testing.assert_close(tokens, trunk.norm(h), atol=1e-5, rtol=1e-5)


def test_pooling():
    torch.manual_seed(0)
    cls = DepthViT(**DepthViT.example_config()).eval()
    mean = DepthViT(**DepthViT.example_config(), pool="mean").eval()
    mean.load_state_dict(cls.state_dict())
    x = cls.example_inputs(2)
    out_cls, out_mean = cls(x), mean(x)
    torch.testing.assert_close(out_cls.pooled, out_cls.tokens[:, 0])
    torch.testing.assert_close(out_mean.pooled, out_cls.tokens[:, 1:].mean(1))


def test_stochastic_depth_rises_linearly():
    encoder = DepthViT(depth=5, image_size=16, patch_size=8, drop_path=0.4)
    rates = [block.drop_path.p for block in encoder.trunk.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_wrong_input_is_a_clear_error():
    encoder = DepthViT(**DepthViT.example_config())
    with pytest.raises(ValueError, match=r"expected pixels of shape \(B, 1, H, W\)"):
        encoder({"pixels": torch.randn(2, 3, 32, 32)})
    with pytest.raises(KeyError, match="pixels"):
        encoder({"image": torch.randn(2, 1, 32, 32)})


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="unknown config key.*colour"):
        DepthViT(colour=3)
    with pytest.raises(ConfigError, match="unknown size 'giant'"):
        DepthViT(size="giant")
    with pytest.raises(ConfigError, match="pool must be"):
        DepthViT(pool="max")
    with pytest.raises(ConfigError, match="divisible"):
        DepthViT(width=10, heads=3, depth=1, image_size=16)


def _trunk_parameters(width, depth, patches, in_chans=1, kernel=16, mlp=4):
    """Parameter count of the trunk from its definition (bias-free stem, bias_kv, no pre-norm)."""
    stem = in_chans * kernel * kernel * width + 2 * width  # conv + patch LayerNorm
    tokens = width + (1 + patches) * width  # class token + position embeddings
    block = (
        2 * 2 * width  # two LayerNorms
        + 3 * width * width + 3 * width  # q, k, v
        + 2 * width  # bias_k, bias_v
        + width * width + width  # out projection
        + 2 * mlp * width * width + mlp * width + width  # MLP
    )  # fmt: skip
    return stem + tokens + depth * block + 2 * width  # + final LayerNorm


def test_imagebind_huge_depth_trunk_size(capsys):
    with torch.device("meta"):
        encoder = DepthViT(size="imagebind-huge")
    trunk = encoder.trunk
    blocks, heads = len(trunk.blocks), trunk.blocks[0].attn.heads
    params = count_parameters(encoder)
    with capsys.disabled():
        print(
            f"\nImageBind-huge depth trunk: width {trunk.width}, depth {blocks}, heads {heads}, "
            f"patch {trunk.patch_embed.patch_size}, image {trunk.image_size}, "
            f"{params / 1e6:.2f}M parameters"
        )
    # ImageBind (Girdhar et al., 2023), depth encoder: ViT with width 384, 12 layers, 8 heads
    assert (trunk.width, blocks, heads) == (384, 12, 8)
    assert trunk.image_size == (224, 224) and trunk.patch_embed.patch_size == (16, 16)
    assert trunk.grid[0] * trunk.grid[1] == 196
    assert params == _trunk_parameters(384, 12, 196)
