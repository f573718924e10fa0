"""open_clip -> colearn parity: random-weight open_clip models (no download) convert to colearn
models that give the same embeddings and the same token ids."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from colearn_core import from_hub
from colearn_core.cli import main

open_clip = pytest.importorskip("open_clip")

from colearn_plugin_clip.convert import (  # noqa: E402
    ConversionError,
    clip_config_from_open_clip,
    from_open_clip,
)

SENTENCES = [
    "a photo of a cat",
    "A diagram of the Eiffel Tower, drawn in 1889!",
    "two   dogs\tplaying in the snow",
    "naïve café owners don't like it's being 5:30",
    "こんにちは世界 🙂",
    "",
    "a very long caption that keeps going " * 12,  # truncated, end token kept last
]
#: A small config (quick GELU as OpenAI's weights use, non-square patches, short context).
SMALL = {
    "embed_dim": 48,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 48, "patch_size": 16, "width": 64, "layers": 2, "head_width": 32},
    "text_cfg": {"context_length": 20, "vocab_size": 49408, "width": 48, "heads": 4, "layers": 2},
}


def _open_clip(name: str, seed: int, **kwargs):
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None, **kwargs).eval()
    tokenizer = open_clip.get_tokenizer(name, context_length=model.context_length)
    return model, tokenizer


def _assert_parity(source, tokenizer, model) -> None:
    ids = tokenizer(SENTENCES)  # (N, context_length)
    mine = model.preprocess("text", SENTENCES)
    assert torch.equal(mine["input_ids"], ids)
    size = source.visual.image_size
    pixels = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected_img = source.encode_image(pixels, normalize=True)
        expected_txt = source.encode_text(ids[:2], normalize=True)
        got = model.embed(
            {"image": {"pixels": pixels}, "text": {k: v[:2] for k, v in mine.items()}}
        )
    assert (got["image"] - expected_img).abs().max() <= 1e-5
    assert (got["text"] - expected_txt).abs().max() <= 1e-5
    assert math.isclose(
        float(model.logit_scale.detach()), float(source.logit_scale.detach()), rel_tol=1e-6
    )


def test_vit_b_32_parity():
    source, tokenizer = _open_clip("ViT-B-32", seed=0)
    model = from_open_clip(source, tokenizer)
    cfg = model.config
    assert cfg["embed_dim"] == 512
    assert cfg["image"]["encoder"]["patch_size"] == 32 and cfg["image"]["encoder"]["depth"] == 12
    assert cfg["image"]["encoder"]["act"] == "gelu"
    assert cfg["image"]["modality"]["image_size"] == 224
    assert cfg["text"]["encoder"]["vocab_size"] == 49408
    _assert_parity(source, tokenizer, model)


def test_small_quick_gelu_config_through_the_command_and_the_hub_folder(tmp_path: Path, capsys):
    out = tmp_path / "converted"
    torch.manual_seed(7)
    code = main(
        [
            "convert",
            "open_clip",
            "ViT-B-32",
            str(out),
            "--set",
            "embed_dim=48",
            "--set",
            "quick_gelu=true",
            "--set",
            "vision_cfg=" + json.dumps(SMALL["vision_cfg"]),
            "--set",
            "text_cfg=" + json.dumps(SMALL["text_cfg"]),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= {
        p.name for p in out.iterdir()
    }
    assert "open_clip `ViT-B-32`" in (out / "README.md").read_text()
    model = from_hub(out)
    assert model.config["image"]["encoder"]["act"] == "quick_gelu"
    assert model.config["text"]["encoder"]["context_length"] == 20
    source, tokenizer = _open_clip("ViT-B-32", seed=7, **SMALL)  # the same random weights
    _assert_parity(source, tokenizer, model)


def test_average_pooling_and_no_ln_pre():
    vision = {**SMALL["vision_cfg"], "pool_type": "avg", "no_ln_pre": True}
    source, tokenizer = _open_clip("ViT-B-32", seed=1, **{**SMALL, "vision_cfg": vision})
    model = from_open_clip(source, tokenizer)
    assert model.config["image"]["encoder"]["pool"] == "mean"
    assert model.config["image"]["encoder"]["pre_norm"] is False
    _assert_parity(source, tokenizer, model)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"init_logit_bias": -10.0}, "logit_bias"),
        ({"vision_cfg": {**SMALL["vision_cfg"], "ls_init_value": 0.1}}, "layer scale"),
        ({"vision_cfg": {**SMALL["vision_cfg"], "layers": [1, 1, 1, 1]}}, "ModifiedResNet"),
    ],
)
def test_unsupported_models_are_refused(change, message):
    source, _ = _open_clip("ViT-B-32", seed=0, **{**SMALL, **change})
    with pytest.raises(ConversionError, match=message):
        clip_config_from_open_clip(source)


def test_a_tokenizer_that_differs_is_detected():
    source, tokenizer = _open_clip("ViT-B-32", seed=0, **SMALL)

    def lower_in_name_only(text: str) -> str:  # a clean-up the converted tokenizer lacks
        return " ".join(text.split())

    tokenizer.clean_fn = lower_in_name_only
    with pytest.raises(ConversionError, match="tokenizers differ"):
        from_open_clip(source, tokenizer)
