"""text/transformer and text/bert: the contract, blocks against torch's reference transformer
layer, causality, padding invariance, pooling and the masked-LM head."""

from __future__ import annotations

import pytest
import torch
from colearn_plugin_text.encoders import BertEncoder, BertLMHead, TextTransformer
from colearn_plugin_text.modality import TextModality

from colearn_core import ConfigError, registries
from colearn_core.testing import check_encoder, check_plugin


def test_plugin_contract() -> None:
    checked = check_plugin("colearn-plugin-text")
    assert sorted(checked["encoders"]) == ["text/bert", "text/transformer"]
    assert checked["modalities"] == ["text"]
    assert "tokenizer" in registries.commands


@pytest.mark.parametrize(
    ("cls", "config"),
    [
        (
            TextTransformer,
            {**TextTransformer.example_config(), "output_dim": 16, "act": "quick_gelu"},
        ),
        (TextTransformer, {**TextTransformer.example_config(), "eot_token_id": 63}),
        (BertEncoder, {**BertEncoder.example_config(), "norm_first": True, "pooler": "tanh"}),
        (BertEncoder, {**BertEncoder.example_config(), "output_dim": 16, "drop": 0.0}),
    ],
)
def test_variants_pass_the_contract(cls, config) -> None:
    if config.get("eot_token_id") is not None:

        class WithEot(TextTransformer):  # example inputs that carry the end token
            def example_inputs(self, batch_size, generator=None):
                inputs = super().example_inputs(batch_size, generator)
                ends = inputs["attention_mask"].sum(1) - 1
                inputs["input_ids"][torch.arange(batch_size), ends] = 63
                return inputs

        check_encoder(WithEot, config)
    else:
        check_encoder(cls, config)


def _copy_into_torch_layer(block, layer: torch.nn.TransformerEncoderLayer) -> None:
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(block.attn.qkv.weight)
        layer.self_attn.in_proj_bias.copy_(block.attn.qkv.bias)
        layer.self_attn.out_proj.weight.copy_(block.attn.proj.weight)
        layer.self_attn.out_proj.bias.copy_(block.attn.proj.bias)
        layer.linear1.load_state_dict(block.mlp.fc1.state_dict())
        layer.linear2.load_state_dict(block.mlp.fc2.state_dict())
        layer.norm1.load_state_dict(block.norm1.state_dict())
        layer.norm2.load_state_dict(block.norm2.state_dict())


def _torch_layer(width: int, heads: int, norm_first: bool, eps: float):
    return torch.nn.TransformerEncoderLayer(
        width, heads, 4 * width, dropout=0.0, activation="gelu", layer_norm_eps=eps,
        batch_first=True, norm_first=norm_first,
    ).eval()  # fmt: skip


def test_bert_equals_embeddings_plus_torch_post_norm_layers() -> None:
    torch.manual_seed(0)
    bert = BertEncoder(**BertEncoder.example_config()).eval()
    inputs = bert.example_inputs(3, torch.Generator().manual_seed(1))
    ids, mask, types = (
        inputs["input_ids"],
        inputs["attention_mask"].bool(),
        inputs["token_type_ids"],
    )
    x = (
        bert.word_embeddings(ids)
        + bert.position_embeddings.weight[: ids.shape[1]]
        + bert.token_type_embeddings(types)
    )
    x = bert.embedding_norm(x)
    for block in bert.blocks:
        layer = _torch_layer(32, 2, norm_first=False, eps=1e-12)
        _copy_into_torch_layer(block, layer)
        x = layer(x, src_key_padding_mask=~mask)
    out = bert(inputs)
    torch.testing.assert_close(out.tokens[mask], x[mask], atol=1e-5, rtol=1e-5)
    assert torch.equal(out.pooled, out.tokens[:, 0])
    assert torch.equal(out.mask, mask)


def test_clip_text_equals_torch_pre_norm_causal_layers() -> None:
    torch.manual_seed(0)
    model = TextTransformer(**TextTransformer.example_config()).eval()
    inputs = model.example_inputs(3, torch.Generator().manual_seed(2))
    ids = inputs["input_ids"]
    L = ids.shape[1]
    x = model.token_embedding(ids) + model.positional_embedding[:L]
    causal = torch.nn.Transformer.generate_square_subsequent_mask(L)
    for block in model.blocks:
        layer = _torch_layer(32, 2, norm_first=True, eps=1e-5)
        _copy_into_torch_layer(block, layer)
        x = layer(x, src_mask=causal, is_causal=True)
    x = model.ln_final(x)
    out = model(inputs)
    torch.testing.assert_close(out.tokens, x, atol=1e-5, rtol=1e-5)
    last = inputs["attention_mask"].sum(1) - 1
    torch.testing.assert_close(out.pooled, x[torch.arange(3), last])


def test_causal_model_never_looks_ahead_and_ignores_padding() -> None:
    torch.manual_seed(0)
    model = TextTransformer(**TextTransformer.example_config()).eval()
    ids = torch.randint(1, 64, (1, 8))
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0]])
    out = model({"input_ids": ids, "attention_mask": mask})
    changed = ids.clone()
    changed[0, 4] = (ids[0, 4] + 1) % 64
    changed[0, 5:] = 0  # different padding
    out2 = model({"input_ids": changed, "attention_mask": mask})
    torch.testing.assert_close(out.tokens[:, :4], out2.tokens[:, :4])
    assert not torch.allclose(out.tokens[:, 4], out2.tokens[:, 4])
    torch.testing.assert_close(out.pooled, out.tokens[:, 4])  # the last real token


def test_pooling_rules_of_the_causal_model() -> None:
    torch.manual_seed(0)
    config = TextTransformer.example_config()
    ids = torch.tensor([[5, 9, 63, 0, 0, 0, 0, 0], [5, 63, 7, 63, 0, 0, 0, 0]])
    by_id = TextTransformer(**config, eot_token_id=63).eval()
    out = by_id({"input_ids": ids})
    torch.testing.assert_close(out.pooled, out.tokens[torch.arange(2), torch.tensor([2, 1])])
    torch.manual_seed(0)
    by_argmax = TextTransformer(**config).eval()  # no mask, no eot id: OpenAI's argmax rule
    out = by_argmax({"input_ids": ids})
    torch.testing.assert_close(out.pooled, out.tokens[torch.arange(2), torch.tensor([2, 1])])
    with pytest.raises(ValueError, match="row 0 has no end-of-text token"):
        by_id({"input_ids": torch.ones(1, 8, dtype=torch.long)})


def test_bert_is_bidirectional_uses_segments_and_ignores_padding() -> None:
    torch.manual_seed(0)
    bert = BertEncoder(**BertEncoder.example_config()).eval()
    ids = torch.randint(5, 64, (1, 8))
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0]])
    base = bert({"input_ids": ids, "attention_mask": mask})
    later = ids.clone()
    later[0, 5] = (ids[0, 5] + 1) % 64
    assert not torch.allclose(
        base.pooled, bert({"input_ids": later, "attention_mask": mask}).pooled
    )
    padded = ids.clone()
    padded[0, 6:] = 1
    same = bert({"input_ids": padded, "attention_mask": mask})
    torch.testing.assert_close(same.tokens[:, :6], base.tokens[:, :6])
    types = torch.tensor([[0, 0, 0, 1, 1, 1, 0, 0]])
    segs = bert({"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
    assert not torch.allclose(segs.pooled, base.pooled)


def test_masked_lm_head_ties_to_the_word_embeddings() -> None:
    torch.manual_seed(0)
    bert = BertEncoder(**BertEncoder.example_config())
    head = BertLMHead(32, 64, embedding=bert.word_embeddings)
    assert head.decoder.weight is bert.word_embeddings.weight
    inputs = bert.example_inputs(2, torch.Generator().manual_seed(3))
    logits = head(bert(inputs).tokens)
    assert logits.shape == (2, 8, 64)
    torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), inputs["input_ids"].flatten()
    ).backward()
    assert bert.word_embeddings.weight.grad is not None
    with pytest.raises(ValueError, match="tied embedding has shape"):
        BertLMHead(32, 65, embedding=bert.word_embeddings)


def test_tokenizer_to_encoder_end_to_end() -> None:
    for style, cls in (("clip", TextTransformer), ("bert", BertEncoder)):
        text = TextModality(style=style, context_length=12)
        special = {"eot_token_id": text.token_id("eos")} if style == "clip" else {}
        encoder = cls(vocab_size=text.vocab_size, context_length=12, width=32, depth=1, heads=2,
                      **special).eval()  # fmt: skip
        batch = text.collate([text.preprocess(t) for t in ["a red coat", "two cats", ""]])
        out = encoder(batch)
        assert out.tokens.shape == (3, 12, 32) and out.pooled.shape == (3, 32)
        if style == "clip":
            last = batch["attention_mask"].sum(1) - 1
            torch.testing.assert_close(out.pooled, out.tokens[torch.arange(3), last])


@pytest.mark.parametrize(
    ("cls", "config", "match"),
    [
        (TextTransformer, {"widht": 8}, "unknown config keys"),
        (BertEncoder, {"pooler": "max"}, "pooler must be"),
        (BertEncoder, {"vocab_size": 64, "width": 30, "heads": 4, "depth": 1}, "divisible"),
    ],
)
def test_config_errors(cls, config, match) -> None:
    with torch.device("meta"), pytest.raises(ConfigError, match=match):
        cls(**config)


def test_bad_inputs() -> None:
    model = TextTransformer(**TextTransformer.example_config())
    with pytest.raises(ValueError, match="exceeds context_length 8"):
        model({"input_ids": torch.zeros(1, 9, dtype=torch.long)})
    with pytest.raises(ValueError, match="integer dtype"):
        model({"input_ids": torch.zeros(1, 8)})


def test_standard_sizes_have_the_published_parameter_counts() -> None:
    with torch.device("meta"):
        clip_text = TextTransformer(output_dim=512)  # CLIP ViT-B text tower, 63M in the paper
        bert_base = BertEncoder(pooler="tanh")  # bert-base-uncased: 109,482,240
    n_clip = sum(p.numel() for p in clip_text.parameters())
    n_bert = sum(p.numel() for p in bert_base.parameters())
    print(f"CLIP text tower: {n_clip:,}; BERT-base: {n_bert:,} parameters")
    block = 12 * 512 * 512 + 13 * 512
    assert n_clip == 49408 * 512 + 77 * 512 + 12 * block + 2 * 512 + 512 * 512
    assert abs(n_clip - 63.4e6) / 63.4e6 < 0.01
    assert n_bert == 109_482_240
