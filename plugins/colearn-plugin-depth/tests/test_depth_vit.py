"""The ViT trunk shared by depth, thermal and audio, and the depth/vit encoder."""

from __future__ import annotations

import pytest
import torch
from colearn_plugin_depth.vit import (
    Attention,
    Block,
    DepthViT,
    PatchTransformer,
    count_parameters,
    patch_grid,
)
from torch import nn

from colearn_core import ConfigError
from colearn_core.testing import check_encoder


def test_depth_vit_contract():
    check_encoder(DepthViT)


def test_registered_under_depth_vit():
    from colearn_core import registries

    assert registries.encoders.get("depth/vit") is DepthViT
    assert registries.encoders.entry("depth/vit").plugin == "colearn-plugin-depth"


@pytest.mark.parametrize("add_bias_kv", [False, True])
def test_attention_matches_torch_multihead_attention(add_bias_kv):
    """Same weights in nn.MultiheadAttention (the layer ImageBind uses) give the same output."""
    torch.manual_seed(0)
    ours = Attention(32, 4, add_bias_kv=add_bias_kv)
    if add_bias_kv:
        nn.init.normal_(ours.bias_k)
        nn.init.normal_(ours.bias_v)
    nn.init.normal_(ours.in_proj.bias)
    ref = nn.MultiheadAttention(32, 4, add_bias_kv=add_bias_kv, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.in_proj.weight)
        ref.in_proj_bias.copy_(ours.in_proj.bias)
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
        if add_bias_kv:
            ref.bias_k.copy_(ours.bias_k)
            ref.bias_v.copy_(ours.bias_v)
    x = torch.randn(3, 7, 32)
    expected = ref(x, x, x, need_weights=False)[0]
    torch.testing.assert_close(ours(x), expected, atol=1e-5, rtol=1e-5)


def test_block_is_pre_norm_residual():
    torch.manual_seed(0)
    block = Block(16, 2).eval()
    x = torch.randn(2, 5, 16)
    h = x + block.attn(block.norm1(x))
    expected = h + block.mlp[2](torch.nn.functional.gelu(block.mlp[0](block.norm2(h))))
    torch.testing.assert_close(block(x), expected)


def test_trunk_against_a_direct_computation():
    """Patch embedding, class token, position embedding, blocks and final norm, step by step."""
    torch.manual_seed(0)
    trunk = PatchTransformer(
        in_chans=2, image_size=(12, 20), patch_size=4, patch_stride=(4, 2), width=16, depth=2,
        heads=2, pooling="cls",
    ).eval()  # fmt: skip
    x = torch.randn(3, 2, 12, 20)
    tokens, pooled = trunk(x)
    assert trunk.grid == (3, 9) and tokens.shape == (3, 1 + 27, 16)

    patches = x.unfold(2, 4, 4).unfold(3, 4, 2)  # (B, C, 3, 9, 4, 4)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(3, 27, 2 * 16)
    emb = patches @ trunk.patch_embed.weight.reshape(16, -1).T  # bias-free convolution
    h = torch.cat([trunk.cls_token.expand(3, -1, -1), trunk.patch_norm(emb)], 1) + trunk.pos_embed
    for block in trunk.blocks:
        h = block(h)
    h = trunk.norm(h)
    torch.testing.assert_close(tokens, h, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled, h[:, 0])

    trunk.pooling = "mean"
    torch.testing.assert_close(trunk(x)[1], h[:, 1:].mean(1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "grid"),
    [((224, 224), (16, 16), (16, 16), (14, 14)), ((128, 204), (16, 16), (10, 10), (12, 19))],
)
def test_patch_grid(size, kernel, stride, grid):
    assert patch_grid(size, kernel, stride) == grid


def test_drop_path_schedule_and_training_randomness():
    trunk = PatchTransformer(image_size=16, patch_size=8, width=8, depth=5, heads=2, drop_path=0.4)
    assert [b.drop_path.p for b in trunk.blocks] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    constant = PatchTransformer(
        image_size=16, patch_size=8, width=8, depth=3, heads=2, drop_path=0.2,
        drop_path_schedule="constant",
    )  # fmt: skip
    assert [b.drop_path.p for b in constant.blocks] == [0.2, 0.2, 0.2]
    x = torch.randn(64, 1, 16, 16)
    trunk.train()
    assert not torch.equal(trunk(x)[1], trunk(x)[1])  # stochastic depth in training
    trunk.eval()
    assert torch.equal(trunk(x)[1], trunk(x)[1])


def test_wrong_input_shape_is_a_clear_error():
    encoder = DepthViT(**DepthViT.example_config())
    with pytest.raises(ValueError, match=r"expected input of shape \(B, 1, 32, 32\)"):
        encoder({"pixels": torch.randn(2, 3, 32, 32)})
    with pytest.raises(KeyError, match="pixels"):
        encoder({"image": torch.randn(2, 1, 32, 32)})


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="unknown config key.*colour"):
        DepthViT(colour=3)
    with pytest.raises(ConfigError, match="unknown size 'giant'"):
        DepthViT(size="giant")
    with pytest.raises(ConfigError, match="not divisible"):
        DepthViT(width=10, heads=3, depth=1, image_size=16)
    with pytest.raises(ConfigError, match="smaller than the patch"):
        DepthViT(image_size=8, patch_size=16)


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
            f"patch {tuple(trunk.patch_embed.kernel_size)}, image {trunk.image_size}, "
            f"{params / 1e6:.2f}M parameters"
        )
    # ImageBind (Girdhar et al., 2023), depth encoder: ViT with width 384, 12 layers, 8 heads
    assert (trunk.width, blocks, heads) == (384, 12, 8)
    assert trunk.image_size == (224, 224) and tuple(trunk.patch_embed.kernel_size) == (16, 16)
    assert trunk.num_patches == 196
    assert params == _trunk_parameters(384, 12, 196)
