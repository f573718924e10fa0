"""Import of the official vilbert-multi-task key layout, on synthetic state dicts with the
official names and shapes (written here from the official modules: BertForMultiModalPreTraining
and VILBertForVLTasks in vilbert/vilbert.py)."""

import json

import torch
import torch.nn.functional as F
from colearn_plugin_vilbert.convert import (
    config_from_official,
    convert_official_state_dict,
    vilbert_from_official,
)
from colearn_plugin_vilbert.model import ViLBERT

from colearn_core import from_hub
from colearn_core.cli import main

TINY = {
    "vocab_size": 110,  # holds the bert-base-uncased special ids (up to 103)
    "hidden_size": 16,
    "num_hidden_layers": 3,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "max_position_embeddings": 20,
    "type_vocab_size": 2,
    "v_feature_size": 10,
    "v_target_size": 7,
    "v_hidden_size": 24,
    "v_num_hidden_layers": 2,
    "v_num_attention_heads": 2,
    "v_intermediate_size": 24,
    "bi_hidden_size": 16,
    "bi_num_attention_heads": 2,
    "v_biattention_id": [0, 1],
    "t_biattention_id": [1, 3],
    "fusion_method": "mul",
}
# config/bert_base_6layer_6conect.json of the official repository
BASE = {
    "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "type_vocab_size": 2,
    "vocab_size": 30522,
    "v_feature_size": 2048,
    "v_target_size": 1601,
    "v_hidden_size": 1024,
    "v_num_hidden_layers": 6,
    "v_num_attention_heads": 8,
    "v_intermediate_size": 1024,
    "bi_hidden_size": 1024,
    "bi_num_attention_heads": 8,
    "bi_intermediate_size": 1024,
    "bi_attention_type": 1,
    "v_attention_probs_dropout_prob": 0.1,
    "v_hidden_act": "gelu",
    "v_hidden_dropout_prob": 0.1,
    "v_initializer_range": 0.02,
    "v_biattention_id": [0, 1, 2, 3, 4, 5],
    "t_biattention_id": [6, 7, 8, 9, 10, 11],
    "pooling_method": "mul",
}


def official_shapes(c, num_answers=3129, task_tokens=True):
    """Official parameter names -> shapes of VILBertForVLTasks (which contains the
    pretraining heads of BertForMultiModalPreTraining)."""
    h, i, vh, vi, bh = (
        c["hidden_size"],
        c["intermediate_size"],
        c["v_hidden_size"],
        c["v_intermediate_size"],
        c["bi_hidden_size"],
    )
    s = {}

    def lin(name, out, inp):
        s[f"{name}.weight"], s[f"{name}.bias"] = (out, inp), (out,)

    def ln(name, n):
        s[f"{name}.weight"], s[f"{name}.bias"] = (n,), (n,)

    def layer(p, width, inter):
        for part in ("query", "key", "value"):
            lin(f"{p}.attention.self.{part}", width, width)
        lin(f"{p}.attention.output.dense", width, width)
        ln(f"{p}.attention.output.LayerNorm", width)
        lin(f"{p}.intermediate.dense", inter, width)
        lin(f"{p}.output.dense", width, inter)
        ln(f"{p}.output.LayerNorm", width)

    s["bert.embeddings.word_embeddings.weight"] = (c["vocab_size"], h)
    s["bert.embeddings.position_embeddings.weight"] = (c["max_position_embeddings"], h)
    s["bert.embeddings.token_type_embeddings.weight"] = (c["type_vocab_size"], h)
    ln("bert.embeddings.LayerNorm", h)
    if task_tokens:
        s["bert.embeddings.task_embeddings.weight"] = (20, h)
    lin("bert.v_embeddings.image_embeddings", vh, c["v_feature_size"])
    lin("bert.v_embeddings.image_location_embeddings", vh, 5)
    ln("bert.v_embeddings.LayerNorm", vh)
    for n in range(c["num_hidden_layers"]):
        layer(f"bert.encoder.layer.{n}", h, i)
    for n in range(c["v_num_hidden_layers"]):
        layer(f"bert.encoder.v_layer.{n}", vh, vi)
    for k in range(len(c["v_biattention_id"])):
        p = f"bert.encoder.c_layer.{k}"
        for part in ("query1", "key1", "value1"):
            lin(f"{p}.biattention.{part}", bh, vh)
        for part in ("query2", "key2", "value2"):
            lin(f"{p}.biattention.{part}", bh, h)
        lin(f"{p}.biOutput.dense1", vh, bh)
        ln(f"{p}.biOutput.LayerNorm1", vh)
        lin(f"{p}.biOutput.q_dense1", vh, bh)
        lin(f"{p}.biOutput.dense2", h, bh)
        ln(f"{p}.biOutput.LayerNorm2", h)
        lin(f"{p}.biOutput.q_dense2", h, bh)
        lin(f"{p}.v_intermediate.dense", vi, vh)
        lin(f"{p}.v_output.dense", vh, vi)
        ln(f"{p}.v_output.LayerNorm", vh)
        lin(f"{p}.t_intermediate.dense", i, h)
        lin(f"{p}.t_output.dense", h, i)
        ln(f"{p}.t_output.LayerNorm", h)
    lin("bert.t_pooler.dense", bh, h)
    lin("bert.v_pooler.dense", bh, vh)
    lin("cls.predictions.transform.dense", h, h)
    ln("cls.predictions.transform.LayerNorm", h)
    s["cls.predictions.decoder.weight"] = (c["vocab_size"], h)
    s["cls.predictions.bias"] = (c["vocab_size"],)
    lin("cls.bi_seq_relationship", 2, bh)
    lin("cls.imagePredictions.transform.dense", vh, vh)
    ln("cls.imagePredictions.transform.LayerNorm", vh)
    lin("cls.imagePredictions.decoder", c["v_target_size"], vh)
    lin("vil_prediction.logit_fc.0", 2 * bh, bh)
    ln("vil_prediction.logit_fc.2", 2 * bh)
    lin("vil_prediction.logit_fc.3", num_answers, 2 * bh)
    lin("vil_prediction_gqa.logit_fc.0", 2 * bh, bh)
    lin("vil_logit", 1, bh)
    lin("vil_tri_prediction", 3, bh)
    lin("vision_logit", 1, vh)
    lin("linguisic_logit", 1, h)
    return s


def official_state(c, **kwargs):
    g = torch.Generator().manual_seed(0)
    state = {
        k: torch.randn(shape, generator=g) for k, shape in official_shapes(c, **kwargs).items()
    }
    state["cls.predictions.decoder.weight"] = state["bert.embeddings.word_embeddings.weight"]
    return state


def test_official_names_map_onto_the_model():
    state = official_state(TINY, num_answers=4)
    model, unused = vilbert_from_official(state, TINY, answers=["a", "b", "c", "d"])
    got = model.state_dict()
    layer = "bert.encoder.layer.2.attention.self"
    assert torch.equal(
        got["backbone.text.blocks.2.attn.qkv.weight"],
        torch.cat(
            [
                state[f"{layer}.query.weight"],
                state[f"{layer}.key.weight"],
                state[f"{layer}.value.weight"],
            ]
        ),
    )
    b, c = "backbone.", "bert.encoder.c_layer."
    pairs = {
        "bert.embeddings.word_embeddings.weight": b + "text.word_embeddings.weight",
        "bert.embeddings.LayerNorm.bias": b + "text.embedding_norm.bias",
        "bert.encoder.v_layer.1.output.dense.weight": b + "vision.blocks.1.mlp.fc2.weight",
        "bert.encoder.v_layer.0.attention.output.LayerNorm.weight": b
        + "vision.blocks.0.norm1.weight",
        "bert.v_embeddings.image_location_embeddings.weight": b
        + "vision.embeddings.locations.weight",
        c + "1.biattention.query1.weight": b + "coattention.1.attention.vision_query.weight",
        c + "1.biattention.value2.bias": b + "coattention.1.attention.text_value.bias",
        c + "0.biOutput.dense1.weight": b + "coattention.0.vision_out.weight",
        c + "0.biOutput.LayerNorm2.weight": b + "coattention.0.text_norm.weight",
        c + "0.t_output.dense.weight": b + "coattention.0.text_ffn.fc2.weight",
        "bert.t_pooler.dense.weight": b + "text_pooler.weight",
        "cls.predictions.bias": "mlm_head.bias",
        "cls.imagePredictions.decoder.weight": "region_head.decoder.weight",
        "vil_prediction.logit_fc.3.weight": "vqa_head.3.weight",
    }
    for official, ours in pairs.items():
        assert torch.equal(got[ours], state[official]), official
    for key in (
        "cls.predictions.decoder.weight",
        "bert.encoder.c_layer.0.biOutput.q_dense1.weight",
        "bert.embeddings.task_embeddings.weight",
        "vil_logit.weight",
    ):
        assert key in unused


def test_alignment_head_keeps_its_meaning():
    """Official class 0 means "the caption belongs to the image"; ours is class 1."""
    state = official_state(TINY)
    model, unused = vilbert_from_official(state, TINY)
    assert "vil_prediction.logit_fc.3.weight" in unused  # no answers given: VQA head not taken
    model.eval()
    text = {"input_ids": torch.randint(0, 110, (2, 6)), "attention_mask": torch.ones(2, 6)}
    regions = {"features": torch.randn(2, 3, 10), "locations": torch.rand(2, 3, 5)}
    with torch.no_grad():
        pooled = model.encode(text, regions)["pooled"]
        ours = model.alignment_head(pooled)
        theirs = F.linear(
            pooled, state["cls.bi_seq_relationship.weight"], state["cls.bi_seq_relationship.bias"]
        )
    assert torch.allclose(ours[:, 1], theirs[:, 0]) and torch.allclose(ours[:, 0], theirs[:, 1])


def test_full_size_official_layout_matches_shape_for_shape():
    shapes = official_shapes(BASE)
    state = {k: torch.empty(v, device="meta") for k, v in shapes.items()}
    converted, unused = convert_official_state_dict(state)
    with torch.device("meta"):
        model = ViLBERT(config_from_official(BASE))
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in converted.items() if not k.startswith("vqa_head.")}
    assert got == own
    assert model.config["coattention"]["text_at"] == [6, 7, 8, 9, 10, 11]
    assert len(unused) == 2 * 6 * 2 + 1 + 1 + 2 * 5  # q_dense*, decoder, task tokens, 5 heads


def test_import_command_reads_tensor_only_pickles_and_saves_a_model(tmp_path, capsys):
    state = official_state(TINY, task_tokens=False)
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps(TINY))
    rc = main(
        [
            "convert",
            "vilbert",
            str(tmp_path / "pytorch_model.bin"),
            str(tmp_path / "config.json"),
            str(tmp_path / "out"),
        ]
    )
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert "cls.predictions.decoder.weight" in report["unused_official_keys"]
    model = from_hub(str(tmp_path / "out"))
    assert torch.equal(
        model.backbone.text.word_embeddings.weight, state["bert.embeddings.word_embeddings.weight"]
    )
