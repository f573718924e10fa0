"""The clip method: config resolution, loss against its definition, temperature, towers, the
Hub round trip and the plugin contract."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from colearn_core import ConfigError, from_hub, registries
from colearn_core.testing import check_plugin

TINY = {
    "embed_dim": 16,
    "image": {
        "modality": {"image_size": 16, "channels": 1, "resize": "stretch"},
        "encoder": {
            "name": "image/vit",
            "width": 32,
            "depth": 1,
            "heads": 2,
            "patch_size": 8,
            "image_size": 16,
        },
    },
    "text": {
        "modality": {"tokenizer": "tiny", "context_length": 12},
        "encoder": {"name": "text/transformer", "width": 32, "depth": 1, "heads": 2},
    },
}
CAPTIONS = ["a photo of a cat", "two dogs playing", "a red car.", "an apple on a table"]


def make(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return registries.methods.get("clip").from_config({**TINY, **overrides})


def batch_for(model, n: int = 4, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(1, 20, 24, generator=g) for _ in range(n)]
    return {
        "image": model.preprocess("image", images),
        "text": model.preprocess("text", CAPTIONS[:n]),
    }


def test_config_is_resolved_and_complete():
    model = make()
    cfg = model.config
    # what the encoders must agree on with the modalities is recorded in the config
    assert cfg["image"]["encoder"]["in_chans"] == 1
    assert cfg["text"]["encoder"]["context_length"] == 12
    assert cfg["text"]["encoder"]["vocab_size"] == model.modalities["text"].vocab_size
    assert cfg["text"]["modality"]["style"] == "clip"  # modality defaults filled in
    # the temperature starts at 0.07, as in CLIP
    assert math.isclose(float(model.logit_scale.detach()), math.log(1 / 0.07), rel_tol=1e-6)
    assert set(model.modalities) == {"image", "text"}
    # the config alone rebuilds the same parameters
    twin = registries.methods.get("clip").from_config(cfg)
    assert {k: v.shape for k, v in twin.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"colour": 1}, "unknown config keys ['colour']"),
        ({"embed_dim": 0}, "embed_dim must be a positive int"),
        ({"projection": "mlp"}, "projection must be 'linear' or 'none'"),
        ({"image": {"encoder": {"name": "text/transformer"}}}, "'image.encoder.name'"),
        ({"image": {"sampler": {}}}, "must be a mapping with keys"),
        ({"projection": "none"}, "projection 'none' needs the image encoder"),
    ],
)
def test_bad_config_is_a_clear_error(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        make(**overrides)


def test_loss_is_symmetric_cross_entropy_of_scaled_cosine_similarities():
    model = make().train()
    batch = batch_for(model)
    out = model(batch)
    for z in out.embeddings.values():
        assert torch.allclose(z.norm(dim=-1), torch.ones(4), atol=1e-6)
    # reference: CLIP's pseudo-code
    raw_img = model.projections["image"](model.encoders["image"](batch["image"]).pooled)
    raw_txt = model.projections["text"](model.encoders["text"](batch["text"]).pooled)
    logits = (1 / 0.07) * F.normalize(raw_img, dim=-1) @ F.normalize(raw_txt, dim=-1).T
    labels = torch.arange(4)
    expected = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    assert torch.allclose(out.losses["contrastive"], expected, atol=1e-5)
    assert torch.allclose(out.loss, expected, atol=1e-5)
    out.loss.backward()
    assert model.logit_scale.grad is not None and model.logit_scale.grad != 0
    for tower in ("image", "text"):
        assert model.projections[tower].weight.grad.abs().sum() > 0
    # the cached-feature path the trainer uses gives the same loss
    again = model.losses_from_embeddings(model.embed(batch))
    assert torch.allclose(again["contrastive"], expected, atol=1e-5)


def test_scale_is_clamped_at_100():
    model = make()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(1000.0))
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(5, 16, generator=g), dim=-1)
    b = F.normalize(torch.randn(5, 16, generator=g), dim=-1)
    loss = model.losses_from_embeddings({"image": a, "text": b})["contrastive"]
    assert math.isclose(float(model.logit_scale.detach()), math.log(100.0), rel_tol=1e-6)
    assert math.isclose(model.temperature, 0.01, rel_tol=1e-5)
    logits = 100.0 * a @ b.T
    labels = torch.arange(5)
    expected = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    assert torch.allclose(loss, expected, atol=1e-5)
    loss.backward()
    assert model.logit_scale.grad is not None  # still learnable at the clamp


def test_eval_forward_has_logits_and_one_tower_gives_embeddings_only():
    model = make().eval()
    batch = batch_for(model, 3)
    with torch.no_grad():
        out = model(batch)
        logits = out.logits["image_text"]
        assert logits.shape == (3, 3)
        scale = model.loss.scale()
        assert torch.allclose(
            logits, scale * out.embeddings["image"] @ out.embeddings["text"].T, atol=1e-6
        )
        only = model({"text": batch["text"]})
    assert set(only.embeddings) == {"text"} and not only.losses
    with pytest.raises(KeyError, match="needs both towers"):
        model.losses_from_embeddings({"text": only.embeddings["text"]})


def test_partial_towers():
    full = make()
    image_only = registries.methods.get("clip").from_config(full.config, modalities=["image"])
    assert set(image_only.modalities) == {"image"}
    keys = set(image_only.state_dict())
    assert keys and keys < set(full.state_dict())
    assert not any(k.startswith(("encoders.text", "projections.text")) for k in keys)
    with pytest.raises(KeyError, match="no 'text' tower"):
        image_only.encode("text", {})
    with pytest.raises(ConfigError, match="cannot build"):
        registries.methods.get("clip").from_config(full.config, modalities=["audio"])


def test_hub_round_trip_keeps_weights_preprocessing_and_tokenizer(tmp_path: Path):
    model = make(seed=3).eval()
    folder = model.save_pretrained(tmp_path / "clip-tiny")
    assert (folder / "tokenizer.json").is_file()
    loaded = from_hub(folder)
    images = [torch.rand(1, 20, 24, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    with torch.no_grad():
        for tower, samples in (("image", images), ("text", CAPTIONS)):
            a, b = model.embed_raw(tower, samples), loaded.embed_raw(tower, samples)
            assert torch.equal(a, b), tower
    assert torch.equal(
        loaded.preprocess("text", CAPTIONS)["input_ids"],
        model.preprocess("text", CAPTIONS)["input_ids"],
    )
    text_only = from_hub(folder, modalities=["text"])
    assert set(text_only.modalities) == {"text"}
    with torch.no_grad():
        assert torch.equal(text_only.embed_raw("text", CAPTIONS), model.embed_raw("text", CAPTIONS))


def test_plugin_contract():
    checked = check_plugin("colearn-plugin-clip")
    assert checked == {}  # no encoders, modalities or losses of its own
    for kind, name in [
        ("methods", "clip"),
        ("tasks", "zero-shot-classification"),
        ("tasks", "retrieval"),
        ("datasets", "fashion-mnist-captions"),
        ("commands", "convert/open_clip"),  # the core CLI runs it as `colearn convert open_clip`
    ]:
        assert name in registries[kind], (kind, name)
    assert registries.methods.entry("clip").plugin == "colearn-plugin-clip"


def test_trimming_text_padding_changes_nothing_but_the_cost():
    trimmed = make(seed=5).eval()
    full = make(seed=5, trim_text_padding=False).eval()
    full.load_state_dict(trimmed.state_dict())
    text = trimmed.preprocess("text", ["a cat", "a dog on a mat"])
    assert text["attention_mask"].sum(1).max() < text["input_ids"].shape[1]  # padded
    seen = []
    hook = trimmed.encoders["text"].register_forward_pre_hook(
        lambda module, args: seen.append(args[0]["input_ids"].shape[1])
    )
    with torch.no_grad():
        a = trimmed.encode("text", text)
        b = full.encode("text", text)
    hook.remove()
    assert seen == [int(text["attention_mask"].sum(1).max())]
    assert torch.allclose(a, b, atol=1e-6)
