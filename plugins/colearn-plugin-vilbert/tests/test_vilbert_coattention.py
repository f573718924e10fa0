"""Co-attention against a reference written from the paper, the fusion, and the schedule."""

import math

import pytest
import torch
import torch.nn.functional as F
from colearn_plugin_vilbert.coattention import CoAttentionBlock
from colearn_plugin_vilbert.model import resolve_config, tiny_config
from colearn_plugin_vilbert.streams import TwoStreamEncoder

from colearn_core import ConfigError, EncoderOutput, registries


def _reference_cross_attention(x_q, x_kv, kv_mask, wq, wk, wv, heads):
    """Paper, Fig. 2b: queries from one stream, keys and values from the other; per head
    softmax(Q K^T / sqrt(d)) V over the other stream's real tokens, heads concatenated."""
    b, t, _ = x_q.shape
    width = wq.weight.shape[0]
    d = width // heads
    q, k, v = wq(x_q), wk(x_kv), wv(x_kv)
    out = torch.zeros(b, t, width)
    for n in range(b):
        for h in range(heads):
            sl = slice(h * d, (h + 1) * d)
            scores = q[n, :, sl] @ k[n, :, sl].T / math.sqrt(d)  # (T, S)
            scores = scores.masked_fill(~kv_mask[n][None, :], float("-inf"))
            out[n, :, sl] = torch.softmax(scores, dim=-1) @ v[n, :, sl]
    return out


def _reference_block(block, text, text_mask, vision, vision_mask, heads):
    a = block.attention
    t_ctx = _reference_cross_attention(
        text, vision, vision_mask, a.text_query, a.vision_key, a.vision_value, heads
    )
    v_ctx = _reference_cross_attention(
        vision, text, text_mask, a.vision_query, a.text_key, a.text_value, heads
    )
    # Add & Norm, then Feed Forward, Add & Norm -- per stream
    t = F.layer_norm(
        text + block.text_out(t_ctx),
        text.shape[-1:],
        block.text_norm.weight,
        block.text_norm.bias,
        eps=1e-12,
    )
    v = F.layer_norm(
        vision + block.vision_out(v_ctx),
        vision.shape[-1:],
        block.vision_norm.weight,
        block.vision_norm.bias,
        eps=1e-12,
    )
    ffn_t = block.text_ffn.fc2(F.gelu(block.text_ffn.fc1(t)))
    ffn_v = block.vision_ffn.fc2(F.gelu(block.vision_ffn.fc1(v)))
    t = F.layer_norm(
        t + ffn_t, t.shape[-1:], block.text_ffn_norm.weight, block.text_ffn_norm.bias, eps=1e-12
    )
    v = F.layer_norm(
        v + ffn_v, v.shape[-1:], block.vision_ffn_norm.weight, block.vision_ffn_norm.bias, eps=1e-12
    )
    return t, v


def test_coattention_block_matches_the_paper_reference():
    torch.manual_seed(0)
    heads = 2
    # different stream widths (the paper: 768 text, 1024 vision) and a third attention width
    block = CoAttentionBlock(12, 20, 8, heads, text_ffn=24, vision_ffn=16).eval()
    for p in block.parameters():  # non-trivial LayerNorm affine parameters too
        torch.nn.init.normal_(p, std=0.3)
    text, vision = torch.randn(3, 5, 12), torch.randn(3, 4, 20)
    text_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]]).bool()
    vision_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]]).bool()
    with torch.no_grad():
        got_t, got_v = block(text, text_mask, vision, vision_mask)
        ref_t, ref_v = _reference_block(block, text, text_mask, vision, vision_mask, heads)
    assert torch.allclose(got_t, ref_t, atol=1e-5)
    assert torch.allclose(got_v, ref_v, atol=1e-5)


def test_coattention_ignores_padding_of_the_other_stream():
    torch.manual_seed(1)
    block = CoAttentionBlock(8, 12, 8, 2, 16, 16).eval()
    text, vision = torch.randn(1, 3, 8), torch.randn(1, 4, 12)
    vision_mask = torch.tensor([[True, True, False, False]])
    changed = vision.clone()
    changed[0, 2:] = 100.0  # padding regions
    with torch.no_grad():
        a, _ = block(text, None, vision, vision_mask)
        b, _ = block(text, None, changed, vision_mask)
        c, _ = block(text, None, vision + 1.0, vision_mask)
    assert torch.allclose(a, b, atol=1e-6), "padded regions leaked into the text stream"
    assert not torch.allclose(a, c), "the text stream must depend on the real regions"


def test_coattention_fusion_is_registered_and_exchanges_streams():
    fusion_cls = registries.fusions.get("co-attention")
    torch.manual_seed(0)
    fusion = fusion_cls(
        streams=["text", "regions"], widths=[16, 24], width=8, heads=2, layers=2
    ).eval()
    feats = {
        "text": EncoderOutput(torch.randn(2, 5, 16), torch.zeros(2, 16)),
        "regions": EncoderOutput(
            torch.randn(2, 3, 24), torch.zeros(2, 24), torch.tensor([[1, 1, 0], [1, 1, 1]]).bool()
        ),
        "other": EncoderOutput(torch.randn(2, 1, 4), torch.zeros(2, 4)),
    }
    out = fusion(feats)
    assert out["text"].tokens.shape == (2, 5, 16) and out["regions"].tokens.shape == (2, 3, 24)
    assert torch.equal(out["text"].pooled, out["text"].tokens[:, 0])
    assert out["other"] is feats["other"]
    feats2 = dict(
        feats,
        regions=EncoderOutput(
            feats["regions"].tokens * 2, feats["regions"].pooled, feats["regions"].mask
        ),
    )
    assert not torch.allclose(fusion(feats2)["text"].tokens, out["text"].tokens)
    with pytest.raises(KeyError, match="missing"):
        fusion({"text": feats["text"]})
    with pytest.raises(ConfigError, match="two different streams"):
        fusion_cls(streams=["text"], widths=[4])


def test_encoder_runs_coattention_at_the_configured_depths():
    config = resolve_config(
        tiny_config(
            text={"depth": 3},
            vision={"depth": 2},
            coattention={"text_at": [1, 3], "vision_at": [0, 2]},
        )
    )
    enc = TwoStreamEncoder(config).eval()
    calls = []
    for name, group in (("t", enc.text.blocks), ("v", enc.vision.blocks), ("c", enc.coattention)):
        for i, m in enumerate(group):
            m.register_forward_hook(lambda *_, tag=f"{name}{i}": calls.append(tag))
    ids = torch.randint(5, 40, (2, 6))
    enc(ids, None, None, torch.randn(2, 3, 12), torch.rand(2, 3, 5), None)
    # co-attention 0 after 1 text / 0 visual layers; co-attention 1 after 3 text / 2 visual
    assert calls == ["t0", "c0", "t1", "t2", "v0", "v1", "c1"]


def test_text_stream_without_coattention_equals_the_text_encoder():
    config = resolve_config(tiny_config(coattention={"text_at": [], "vision_at": []}))
    enc = TwoStreamEncoder(config).eval()
    ids = torch.randint(5, 40, (2, 7))
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    types = torch.tensor([[0] * 4 + [1] * 3, [0] * 7])
    with torch.no_grad():
        got = enc(ids, types, mask, torch.randn(2, 3, 12), torch.rand(2, 3, 5), None)["text"]
        want = enc.text({"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
    assert torch.allclose(got, want.tokens, atol=1e-6)


@pytest.mark.parametrize(
    "coattention, match",
    [
        ({"text_at": [1], "vision_at": [0, 1]}, "same length"),
        ({"text_at": [2, 1], "vision_at": [0, 1]}, "non-decreasing"),
        ({"text_at": [0, 5], "vision_at": [0, 1]}, r"\[0, 2\]"),
    ],
)
def test_bad_schedules_are_config_errors(coattention, match):
    with pytest.raises(ConfigError, match=match):
        TwoStreamEncoder(resolve_config(tiny_config(coattention=coattention)))
