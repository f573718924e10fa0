"""The vilbert method: pretraining forward, labels, weights, saving, initialisation, configs."""

import pytest
import torch
from colearn_plugin_vilbert.masking import IGNORE_INDEX
from colearn_plugin_vilbert.model import ViLBERT, tiny_config
from colearn_plugin_vilbert.text_pretrain import ViLBERTText
from colearn_plugin_vilbert.vocab import TOKENIZER

from colearn_core import ConfigError, from_hub, registries


def _batch(b=6, t=10, r=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 40, (b, t), generator=g)
    ids[:, 0], ids[:, -1] = 2, 3
    mask = torch.ones(b, t, dtype=torch.long)
    mask[0, 7:] = 0
    ids[0, 7:] = 0
    region_mask = torch.ones(b, r, dtype=torch.bool)
    region_mask[1, 2] = False
    return {
        "text": {"input_ids": ids, "attention_mask": mask},
        "regions": {
            "features": torch.randn(b, r, 12, generator=g),
            "locations": torch.rand(b, r, 5, generator=g),
            "mask": region_mask,
            "class_probs": torch.softmax(torch.randn(b, r, 6, generator=g), -1),
        },
    }


def test_pretraining_forward_three_losses_and_gradients():
    torch.manual_seed(0)
    model = ViLBERT(tiny_config(masking={"region_prob": 0.5}))
    batch = dict(_batch(), seed=3)
    out = model(batch)
    assert set(out.losses) == {"masked_lm", "masked_region", "alignment"}
    assert out.logits["alignment"].shape == (6, 2)
    assert out.logits["masked_lm"].shape == (6, 10, 40)
    assert out.logits["regions"].shape == (6, 3, 6)  # <IMG> is not predicted
    assert all(torch.isfinite(v) for v in out.losses.values())
    out.loss.backward()
    for name in (
        "backbone.text.word_embeddings.weight",
        "backbone.coattention.0.attention.text_query.weight",
        "backbone.vision.embeddings.locations.weight",
        "region_head.decoder.weight",
        "alignment_head.weight",
        "mlm_head.bias",
    ):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_pretraining_corruption_is_deterministic_and_labels_are_consistent():
    torch.manual_seed(0)
    model = ViLBERT(tiny_config(masking={"token_prob": 0.5, "region_prob": 0.5})).eval()
    batch = _batch()
    p1 = model.prepare_pretraining(batch, torch.Generator().manual_seed(1))
    p2 = model.prepare_pretraining(batch, torch.Generator().manual_seed(1))
    assert torch.equal(p1.input_ids, p2.input_ids) and torch.equal(p1.features, p2.features)
    # alignment labels: 1 exactly where the image kept its own caption
    own = p1.text_index == torch.arange(6)
    assert torch.equal(p1.aligned.bool(), own)
    assert int((~own).sum()) == 3
    # the swapped captions travel with their attention masks
    assert torch.equal(p1.attention_mask, batch["text"]["attention_mask"][p1.text_index].bool())
    # masked tokens and regions of misaligned pairs are not predicted (the default)
    assert (p1.mlm_labels[~own] == IGNORE_INDEX).all()
    assert not p1.region_selected[~own].any()
    assert (p1.mlm_labels[own] != IGNORE_INDEX).any()
    # [CLS], [SEP] and padding are never predicted
    ids = batch["text"]["input_ids"][p1.text_index]
    special = (ids == 2) | (ids == 3) | (ids == 0)
    assert (p1.mlm_labels[special] == IGNORE_INDEX).all()
    # forward with a fixed seed gives the same losses twice
    a = model(dict(batch, seed=5)).losses
    b = model(dict(batch, seed=5)).losses
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_misaligned_pairs_can_be_predicted_when_configured():
    model = ViLBERT(tiny_config(masking={"token_prob": 0.9, "masked_losses_on_misaligned": True}))
    p = model.prepare_pretraining(_batch(), torch.Generator().manual_seed(1))
    assert (p.mlm_labels[p.aligned == 0] != IGNORE_INDEX).any()


def _with_hard_negatives(batch, identical=3):
    """Each caption with one token changed (two trailing pads longer, to exercise padding);
    example ``identical``'s is its own caption."""
    ids, mask = batch["text"]["input_ids"], batch["text"]["attention_mask"]
    hard = torch.cat([ids, torch.zeros(len(ids), 2, dtype=ids.dtype)], 1)
    hard_mask = torch.cat([mask, torch.zeros(len(ids), 2, dtype=mask.dtype)], 1)
    hard[:, 2] = 5 + (hard[:, 2] - 4) % 35  # another word (ids 5..39)
    hard[identical, 2] = ids[identical, 2]
    return dict(batch, hard_negative={"input_ids": hard, "attention_mask": hard_mask})


def test_hard_negatives_replace_swapped_captions_and_labels_follow_the_text():
    model = ViLBERT(tiny_config(masking={"hard_negative_frac": 1.0, "token_prob": 0.0})).eval()
    batch = _with_hard_negatives(_batch())
    hard = batch["hard_negative"]["input_ids"]
    paper_model = ViLBERT(tiny_config(masking={"token_prob": 0.0})).eval()
    identical_swapped = 0
    for seed in range(12):
        p = model.prepare_pretraining(batch, torch.Generator().manual_seed(seed))
        swapped = p.text_index != torch.arange(6)
        assert int(swapped.sum()) == 3 and (p.text_index[swapped] >= 6).all()
        for i in range(6):
            t = p.input_ids.shape[1]
            expected = hard[i] if swapped[i] else batch["text"]["input_ids"][i]
            assert torch.equal(p.input_ids[i], expected[:t]) and not expected[t:].any()
            # the hard negative of example 3 is its own caption: aligned
            assert p.aligned[i] == int(not swapped[i] or i == 3)
        identical_swapped += int(swapped[3])
        # without hard negatives: the paper's swaps, as a model configured without them
        paper = model.prepare_pretraining(
            batch, torch.Generator().manual_seed(seed), hard_negatives=False
        )
        plain = paper_model.prepare_pretraining(_batch(), torch.Generator().manual_seed(seed))
        assert torch.equal(paper.text_index, plain.text_index) and (paper.text_index < 6).all()
        assert torch.equal(paper.input_ids, plain.input_ids)
    assert identical_swapped > 0
    out = model(dict(batch, seed=1))
    assert all(torch.isfinite(v) for v in out.losses.values())
    with pytest.raises(KeyError, match="data.columns.hard_negative"):
        model(dict(_batch(), seed=1))


def test_hard_negative_modality_is_the_text_modality_when_configured():
    config = tiny_config(modalities=_text_modality_config(), special_tokens=None)
    assert set(ViLBERT(config).modalities) == {"text"}
    config["masking"] = {"hard_negative_frac": 0.5}
    modalities = ViLBERT(config).modalities
    assert modalities["hard_negative"] is modalities["text"]


def test_loss_weights_scale_and_remove_terms():
    batch = dict(_batch(), seed=3)
    torch.manual_seed(0)
    base = ViLBERT(tiny_config(masking={"region_prob": 0.5})).eval()
    torch.manual_seed(0)
    weighted = ViLBERT(
        tiny_config(
            masking={"region_prob": 0.5},
            loss_weights={"masked_lm": 2.0, "masked_region": 0.0, "alignment": 0.5},
        )
    ).eval()
    a, b = base(batch).losses, weighted(batch).losses
    assert set(b) == {"masked_lm", "alignment"}
    assert torch.allclose(b["masked_lm"], 2 * a["masked_lm"])
    assert torch.allclose(b["alignment"], 0.5 * a["alignment"])


def test_missing_detector_distribution_is_a_clear_error():
    batch = _batch()
    del batch["regions"]["class_probs"]
    with pytest.raises(KeyError, match="class_probs"):
        ViLBERT(tiny_config())(batch)
    with pytest.raises(KeyError, match="no 'regions' entry"):
        ViLBERT(tiny_config())({"text": batch["text"]})


def test_vqa_objective_classifies_answers():
    torch.manual_seed(0)
    model = ViLBERT(tiny_config(objective="vqa", answers=["no", "yes", "bag"]))
    batch = dict(_batch(), label=torch.tensor([0, 1, 2, 0, 1, 2]))
    out = model(batch)
    assert out.logits["vqa"].shape == (6, 3) and set(out.losses) == {"vqa"}
    out.loss.backward()
    assert model.vqa_head[3].weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="answers"):
        ViLBERT(tiny_config(objective="vqa"))


@pytest.mark.parametrize(
    "override, match",
    [
        ({"objective": "captioning"}, "objective"),
        ({"pooling": "max"}, "pooling"),
        ({"vision": {"widht": 3}}, "unknown config key 'vilbert.vision.widht'"),
        ({"special_tokens": {"pad": 0, "cls": 2, "sep": 3, "mask": 99}}, "special_tokens.mask"),
        ({"vision": {"depth": "two"}}, "vilbert.vision.depth"),
        ({"text": {"pooler": "tanh"}}, "pools and projects"),
        ({"initializer_range": 0}, "initializer_range"),
    ],
)
def test_config_errors_name_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        ViLBERT(tiny_config(**override))


def test_initializer_range_sets_the_std_of_everything_but_the_text_stream():
    stds = {}
    for std in (0.02, 0.1):
        torch.manual_seed(0)
        model = ViLBERT(tiny_config(initializer_range=std, objective="vqa", answers=["a", "b"]))
        stds[std] = {
            name: float(p.detach().std())
            for name, p in model.named_parameters()
            if name.endswith("weight") and p.ndim == 2
        }
    for name, small in stds[0.02].items():
        large = stds[0.1][name]
        if name.startswith("backbone.text."):
            assert large == small, name  # the text encoder keeps its own initialisation
        else:
            assert abs(small - 0.02) < 0.006 and abs(large - 0.1) < 0.03, (name, small, large)


def test_special_tokens_must_include_the_four_roles():
    config = tiny_config()
    config["special_tokens"] = {"pad": 0, "cls": 2, "sep": 3}
    with pytest.raises(ConfigError, match="missing \\['mask'\\]"):
        ViLBERT(config)


def test_paper_configuration_builds_with_different_stream_widths():
    with torch.device("meta"):
        model = registries.methods.get("vilbert")({})
    assert model.backbone.text.width == 768 and model.backbone.vision.width == 1024
    assert len(model.backbone.text.blocks) == 12 and len(model.backbone.vision.blocks) == 6
    assert model.backbone.text_at == [6, 7, 8, 9, 10, 11]
    assert model.backbone.vision_at == [0, 1, 2, 3, 4, 5]
    att = model.backbone.coattention[0].attention
    assert tuple(att.text_query.weight.shape) == (1024, 768)
    assert tuple(att.vision_query.weight.shape) == (1024, 1024)
    n = sum(p.numel() for p in model.parameters())
    print(f"ViLBERT (paper config) parameters: {n / 1e6:.1f}M")
    assert 230e6 < n < 250e6


def _text_modality_config():
    return {"text": {"tokenizer": str(TOKENIZER), "style": "bert", "context_length": 16}}


def test_special_tokens_and_vocabulary_come_from_the_text_modality():
    config = tiny_config(modalities=_text_modality_config(), special_tokens=None)
    config["text"] = {k: v for k, v in config["text"].items() if k != "vocab_size"}
    model = ViLBERT(config)
    assert model.config["special_tokens"] == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
    assert model.config["text"]["vocab_size"] == model.modalities["text"].vocab_size == 368


def test_save_pretrained_and_from_hub_give_identical_outputs(tmp_path):
    torch.manual_seed(0)
    config = tiny_config(modalities=_text_modality_config())
    config["text"]["vocab_size"] = 368
    model = ViLBERT(config).eval()
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "tokenizer.json").is_file()
    loaded = from_hub(str(tmp_path / "m"))
    batch = dict(_batch(), seed=1)
    with torch.no_grad():
        a, b = model(batch), loaded(batch)
    assert all(torch.equal(a.losses[k], b.losses[k]) for k in a.losses)
    assert torch.equal(a.logits["alignment"], b.logits["alignment"])


def test_text_stream_initialised_from_vilbert_text(tmp_path):
    torch.manual_seed(0)
    text_model = ViLBERTText(
        {"text": tiny_config()["text"], "special_tokens": tiny_config()["special_tokens"]}
    )
    nsp = text_model({"text": _batch()["text"], "label": torch.tensor([0, 1, 1, 0, 1, 0])})
    assert set(nsp.losses) == {"masked_lm", "next_sentence"}
    assert nsp.logits["next_sentence"].shape == (6, 2)
    text_model.save_pretrained(tmp_path / "text")
    model = ViLBERT(
        text_model.vilbert_config(
            **{k: v for k, v in tiny_config().items() if k in ("vision", "coattention")},
            text_init=str(tmp_path / "text"),
        )
    )
    for key, value in text_model.text.state_dict().items():
        assert torch.equal(model.backbone.text.state_dict()[key], value), key
    assert torch.equal(model.mlm_head.dense.weight, text_model.mlm_head.dense.weight)
    # the init path is recorded, not kept as an instruction to re-apply
    assert model.config["text_init"] is None
    assert model.config["initialised_from"] == {"text_init": str(tmp_path / "text")}


def test_text_init_shape_mismatch_names_the_file(tmp_path):
    text_model = ViLBERTText(
        {
            "text": dict(tiny_config()["text"], width=16),
            "special_tokens": tiny_config()["special_tokens"],
        }
    )
    text_model.save_pretrained(tmp_path / "text")
    with pytest.raises(ValueError, match="shape mismatch"):
        ViLBERT(tiny_config(text_init=str(tmp_path / "text")))
    with pytest.raises(FileNotFoundError, match="no weights"):
        ViLBERT(tiny_config(text_init=str(tmp_path / "nothing")))


def test_vqa_fine_tuning_starts_from_a_pretrained_vilbert(tmp_path):
    torch.manual_seed(0)
    pre = ViLBERT(tiny_config())
    pre.save_pretrained(tmp_path / "pre")
    vqa = ViLBERT(tiny_config(objective="vqa", answers=["a", "b"], init_from=str(tmp_path / "pre")))
    for key, value in pre.state_dict().items():
        assert torch.equal(vqa.state_dict()[key], value), key
    assert vqa.config["initialised_from"] == {"init_from": str(tmp_path / "pre")}


def _pad_columns(batch, extra):
    """The same batch with ``extra`` more padding columns at the end of the text."""
    text = batch["text"]
    padded = {k: torch.cat([v, v.new_zeros(v.shape[0], extra)], dim=1) for k, v in text.items()}
    return {**batch, "text": padded}


def test_trailing_padding_changes_no_output_and_is_cut():
    from colearn_plugin_text.modality import trim_padding

    batch = _batch()
    batch["text"]["attention_mask"][:, 9:] = 0  # every caption ends before the last column
    batch["text"]["input_ids"][:, 9:] = 0
    cut = trim_padding(batch["text"])
    assert cut["input_ids"].shape == (6, 9) and torch.equal(
        cut["input_ids"], batch["text"]["input_ids"][:, :9]
    )
    assert trim_padding(cut)["input_ids"].shape == (6, 9), "nothing more to cut"
    torch.manual_seed(0)
    model = ViLBERT(tiny_config(objective="vqa", answers=["a", "b", "c"])).eval()
    padded = _pad_columns(batch, 5)
    with torch.no_grad():
        a = model.encode(batch["text"], batch["regions"])
        b = model.encode(padded["text"], padded["regions"])
        assert a["text"].shape[1] == b["text"].shape[1] == 9
        for key in ("text", "vision", "pooled"):
            assert torch.allclose(a[key], b[key], atol=1e-5), key
        assert torch.allclose(model(batch).logits["vqa"], model(padded).logits["vqa"], atol=1e-5)
    # pretraining: the corrupted inputs and their labels are cut alike
    model = ViLBERT(tiny_config()).eval()
    p = model.prepare_pretraining(padded, torch.Generator().manual_seed(0))
    assert p.input_ids.shape == p.mlm_labels.shape == p.attention_mask.shape == (6, 9)
    out = model.pretraining_outputs(padded, p)
    assert out.logits["masked_lm"].shape == (6, 9, 40)


def test_text_pretraining_ignores_trailing_padding():
    torch.manual_seed(0)
    config = {"text": tiny_config()["text"], "special_tokens": tiny_config()["special_tokens"]}
    model = ViLBERTText(config).eval()
    batch = {"text": _batch()["text"], "label": torch.tensor([0, 1, 1, 0, 1, 0]), "seed": 4}
    padded = {**_pad_columns(batch, 6), "label": batch["label"], "seed": 4}
    with torch.no_grad():
        a, b = model(batch), model(padded)
    assert b.logits["masked_lm"].shape == (6, 10, 40)
    assert torch.equal(a.logits["mlm_labels"], b.logits["mlm_labels"])
    for k in a.losses:
        assert torch.allclose(a.losses[k], b.losses[k], atol=1e-6), k
