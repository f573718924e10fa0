"""The audio/ast encoder."""

from __future__ import annotations

import pytest
import torch
from colearn_plugin_audio.encoder import AudioAST
from colearn_plugin_depth.vit import count_parameters

from colearn_core import ConfigError, registries
from colearn_core.testing import check_encoder, check_plugin


def test_plugin_contract_and_registration():
    """Every encoder and modality the plugin registers passes colearn_core.testing's checks."""
    assert registries.encoders.get("audio/ast") is AudioAST
    assert check_plugin("colearn-plugin-audio") == {
        "encoders": ["audio/ast"],
        "modalities": ["audio"],
    }
    check_encoder(AudioAST, {**AudioAST.example_config(), "pool": "mean", "drop_path": 0.1})


def test_clips_are_encoded_independently_and_averaged():
    torch.manual_seed(0)
    encoder = AudioAST(**AudioAST.example_config()).eval()
    x = encoder.example_inputs(2, torch.Generator().manual_seed(0))["fbank"]  # (2, 2, 1, F, T)
    out = encoder({"fbank": x})
    per_clip = [encoder({"fbank": x[:, c]}) for c in range(2)]  # 4-D input: one clip
    tokens_per_clip = per_clip[0].tokens.shape[1]
    assert out.tokens.shape == (2, 2 * tokens_per_clip, encoder.width)
    torch.testing.assert_close(out.pooled, (per_clip[0].pooled + per_clip[1].pooled) / 2)
    torch.testing.assert_close(out.tokens[:, :tokens_per_clip], per_clip[0].tokens)
    torch.testing.assert_close(out.tokens[:, tokens_per_clip:], per_clip[1].tokens)


def test_full_size_spectrogram_gives_imagebinds_token_count():
    encoder = AudioAST(size="tiny", depth=1).eval()
    with torch.no_grad():
        out = encoder({"fbank": torch.randn(1, 3, 1, 128, 204)})
    # 16x16 patches every 10 bins/frames: 12 x 19 = 228 patches + the class token, per clip
    assert encoder.trunk.grid == (12, 19)
    assert out.tokens.shape == (1, 3 * 229, 192) and out.pooled.shape == (1, 192)


def test_input_errors():
    encoder = AudioAST(**AudioAST.example_config())
    with pytest.raises(KeyError, match="fbank"):
        encoder({"audio": torch.randn(1, 1, 32, 46)})
    with pytest.raises(ValueError, match=r"\(B, clips, 1, bins, frames\)"):
        encoder({"fbank": torch.randn(32, 46)})
    with pytest.raises(ValueError, match=r"expected pixels of shape \(B, 1, H, W\)"):
        encoder({"fbank": torch.randn(1, 1, 2, 32, 46)})
    with pytest.raises(ConfigError, match="unknown config key.*image_size"):
        AudioAST(image_size=224)


def _trunk_parameters(width, depth, patches, kernel=16, mlp=4):
    """Parameter count of the trunk from its definition (bias-free stem, bias_kv, no pre-norm)."""
    stem = kernel * kernel * width + 2 * width  # convolution + patch LayerNorm
    tokens = width + (1 + patches) * width  # class token + position embeddings
    block = 4 * width + 3 * width * (width + 1) + 2 * width + width * (width + 1)
    block += 2 * mlp * width * width + mlp * width + width
    return stem + tokens + depth * block + 2 * width  # + final LayerNorm


def test_imagebind_huge_audio_trunk_size(capsys):
    with torch.device("meta"):
        encoder = AudioAST(size="imagebind-huge")
    trunk = encoder.trunk
    blocks, heads = len(trunk.blocks), trunk.blocks[0].attn.heads
    params = count_parameters(encoder)
    with capsys.disabled():
        print(
            f"\nImageBind-huge audio trunk: width {trunk.width}, depth {blocks}, heads {heads}, "
            f"kernel {trunk.patch_embed.patch_size} stride "
            f"{trunk.patch_embed.stride} over {trunk.image_size}, "
            f"{trunk.grid[0] * trunk.grid[1]} patches, {params / 1e6:.2f}M parameters"
        )
    # ImageBind (Girdhar et al., 2023), audio encoder: ViT-B sized (768 wide, 12 layers,
    # 12 heads) over 128 x 204 log-mel spectrograms, 16 x 16 patches with stride 10, drop path 0.1
    assert (trunk.width, blocks, heads) == (768, 12, 12)
    assert trunk.image_size == (128, 204) and trunk.grid == (12, 19)
    assert trunk.patch_embed.stride == (10, 10)
    assert trunk.blocks[-1].drop_path.p == pytest.approx(0.1)
    assert params == _trunk_parameters(768, 12, 228)
