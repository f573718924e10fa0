"""The imagebind method: towers, logit scales, the image-centric loss, missing modalities,
partial loading, frozen towers, CLIP initialisation and third-party modalities."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
import torch.nn.functional as F
from colearn_plugin_imagebind.missing import PRESENT, OptionalModality
from colearn_plugin_imagebind.model import ImageBind
from imagebind_helpers import collate, images, texts, tiny_config, tones

from colearn_core import (
    ConfigError,
    Encoder,
    EncoderOutput,
    Modality,
    from_hub,
    load_plugins,
    registries,
)
from colearn_core.testing import check_plugin


@pytest.fixture(scope="module")
def model() -> ImageBind:
    torch.manual_seed(0)
    return ImageBind(tiny_config()).eval()


def raw_batch(n: int = 4, **missing: list[int]) -> dict[str, list]:
    raw = {"image": images(n), "text": texts(n), "audio": tones(n)}
    for tower, rows in missing.items():
        for i in rows:
            raw[tower][i] = None
    return raw


def test_plugin_contract():
    assert check_plugin("colearn-plugin-imagebind") == {}  # registers no encoder/modality/loss
    for name in ("imagebind-zero-shot", "emergent-zero-shot", "cross-modal-retrieval"):
        assert registries.tasks.entry(name).plugin == "colearn-plugin-imagebind"
    assert registries.methods.entry("imagebind").plugin == "colearn-plugin-imagebind"
    assert "convert/imagebind" in registries.commands
    assert "fashion-speech" in registries.datasets


def test_towers_are_encoder_head_normalise_scale(model):
    """Each tower against a reference of ImageBind's pipeline, written out step by step."""
    batch = collate(model, raw_batch(3))
    got = model.embed(batch)
    with torch.no_grad():
        image = model.towers["image"]
        want = F.normalize(image.head(image.encoder(batch["image"]).pooled), dim=-1)
        torch.testing.assert_close(got["image"], want)

        text = model.towers["text"]
        z = F.normalize(text.head(text.encoder(batch["text"]).pooled), dim=-1)
        torch.testing.assert_close(got["text"], min(math.exp(math.log(1 / 0.07)), 100) * z)

        audio = model.towers["audio"]
        fbank = batch["audio"]["fbank"]  # (B, clips, 1, bins, frames)
        assert fbank.shape[:2] == (3, 2)
        per_clip = [
            20.0 * F.normalize(audio.head(audio.encoder({"fbank": fbank[:, s]}).pooled), dim=-1)
            for s in range(2)
        ]
        torch.testing.assert_close(got["audio"], torch.stack(per_clip).mean(0))
    # ImageBind's scales: none for the anchor, text learnable from 1/0.07, audio fixed at 20
    assert model.towers["image"].scale is None
    assert isinstance(model.towers["text"].scale.log_logit_scale, torch.nn.Parameter)
    assert "towers.audio.scale.log_logit_scale" in dict(model.named_buffers())
    assert model.logit_scale("audio") == pytest.approx(20.0)
    assert model.logit_scale("text") == pytest.approx(1 / 0.07, rel=1e-5)
    assert model.config["towers"]["audio"]["clips"] is True


def _reference_loss(a: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    logits = a @ m.T  # m carries its tower's logit scale
    target = torch.arange(a.shape[0])
    return F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)


def test_loss_is_image_centric_symmetric_infonce_over_present_pairs(model):
    gen = torch.Generator().manual_seed(3)
    n = 6
    emb = {
        "image": F.normalize(torch.randn(n, 8, generator=gen), dim=-1),
        "text": 14.0 * F.normalize(torch.randn(n, 8, generator=gen), dim=-1),
        "audio": 20.0 * F.normalize(torch.randn(n, 8, generator=gen), dim=-1),
    }
    masks = {
        "image": torch.tensor([1, 1, 1, 1, 1, 0], dtype=torch.bool),
        "text": torch.tensor([1, 0, 1, 1, 1, 1], dtype=torch.bool),
        "audio": torch.tensor([0, 1, 1, 0, 1, 1], dtype=torch.bool),
    }
    batch = {t: {PRESENT: m} for t, m in masks.items()}
    losses = model.losses_from_embeddings(emb, batch)
    assert set(losses) == {"image_text", "image_audio"}  # never text-audio
    for tower in ("text", "audio"):
        both = masks["image"] & masks[tower]
        want = _reference_loss(emb["image"][both], emb[tower][both])
        torch.testing.assert_close(losses[f"image_{tower}"], want)
    # without masks every row counts
    full = model.losses_from_embeddings(emb)
    torch.testing.assert_close(full["image_audio"], _reference_loss(emb["image"], emb["audio"]))
    # a tower with no row paired with an image gives no term
    batch["audio"][PRESENT] = torch.tensor([0, 0, 0, 0, 0, 1], dtype=torch.bool)
    assert set(model.losses_from_embeddings(emb, batch)) == {"image_text"}
    with pytest.raises(KeyError, match="binds every modality to 'image'"):
        model.losses_from_embeddings({"text": emb["text"], "audio": emb["audio"]})


def test_loss_weights_scale_their_terms():
    torch.manual_seed(0)
    weighted = ImageBind(tiny_config(loss_weights={"audio": 0.25})).eval()
    gen = torch.Generator().manual_seed(1)
    emb = {t: F.normalize(torch.randn(4, 8, generator=gen), dim=-1) for t in ("image", "audio")}
    torch.testing.assert_close(
        weighted.losses_from_embeddings(emb)["image_audio"],
        0.25 * _reference_loss(emb["image"], emb["audio"]),
    )


def test_missing_modalities_are_masked_not_encoded(model):
    raw = raw_batch(5, text=[1], audio=[0, 3])
    batch = collate(model, raw)
    assert batch["text"][PRESENT].tolist() == [True, False, True, True, True]
    assert batch["audio"][PRESENT].tolist() == [False, True, True, False, True]
    assert batch["audio"]["fbank"].shape[0] == 5  # placeholders keep one row per example
    emb = model.embed(batch)
    assert torch.count_nonzero(emb["audio"][[0, 3]]) == 0
    assert torch.count_nonzero(emb["text"][1]) == 0
    # present rows are exactly what encoding those samples alone gives
    alone = model.embed(collate(model, {"audio": [raw["audio"][i] for i in (1, 2, 4)]}))
    torch.testing.assert_close(emb["audio"][[1, 2, 4]], alone["audio"])
    out = model(batch)
    keep = torch.tensor([1, 2, 4])
    torch.testing.assert_close(
        out.losses["image_audio"], _reference_loss(emb["image"][keep], emb["audio"][keep])
    )
    # a batch where nobody has audio: the tower holds only the mask; no audio loss
    batch = collate(model, raw_batch(3, audio=[0, 1, 2]))
    assert set(batch["audio"]) == {PRESENT}
    out = model(batch)
    assert set(out.losses) == {"image_text"}
    assert torch.count_nonzero(out.embeddings["audio"]) == 0


def test_optional_modality_delegates_everything_else(model):
    text = model.modalities["text"]
    assert isinstance(text, OptionalModality) and isinstance(text, Modality)
    assert text.name == "text" and text.config is text.inner.config
    assert text.tokenize(["a dress."])["input_ids"].shape == (1, 8)  # the wrapped modality's
    assert text.preprocess(None) == {}
    with pytest.raises(ValueError, match="empty list"):
        text.collate([])


def test_gradients_reach_present_rows_only():
    torch.manual_seed(0)
    m = ImageBind(tiny_config()).train()
    batch = collate(m, raw_batch(4, audio=[0, 1]))  # two audio examples: one pair each way
    out = m(batch)
    out.loss.backward()
    grads = [p.grad for p in m.towers["audio"].encoder.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    assert m.towers["text"].scale.log_logit_scale.grad is not None


def test_partial_towers_load_alone_from_a_saved_model(model, tmp_path, capsys):
    folder = model.save_pretrained(tmp_path / "ib")
    part = from_hub(folder, modalities=["image", "audio"])
    assert part.tower_names == ("image", "audio") and set(part.towers) == {"image", "audio"}
    assert set(part.modalities) == {"image", "audio"}
    full_params = sum(p.numel() for p in model.parameters())
    part_params = sum(p.numel() for p in part.parameters())
    assert part_params == full_params - sum(p.numel() for p in model.towers["text"].parameters())
    batch = collate(model, raw_batch(3))
    want = model.embed(batch)
    got = part.embed({t: batch[t] for t in ("image", "audio")})
    for tower in ("image", "audio"):
        torch.testing.assert_close(got[tower], want[tower], atol=0, rtol=0)
    with pytest.raises(KeyError, match="no 'text' tower"):
        part.encode("text", batch["text"])
    reloaded = from_hub(folder)
    for tower, value in reloaded.embed(batch).items():
        torch.testing.assert_close(value, want[tower], atol=0, rtol=0)
    with capsys.disabled():
        print(f"\npartial tiny model: {part_params} of {full_params} parameters")


def test_from_config_builds_only_the_named_towers():
    with torch.device("meta"):
        part = ImageBind.from_config(tiny_config(), modalities=["audio"])
    assert list(part.towers) == ["audio"]
    assert part.config["towers"]["text"]["encoder"]["vocab_size"] > 0  # still fully resolved
    with pytest.raises(ConfigError, match="cannot build"):
        ImageBind.from_config(tiny_config(), modalities=["imu"])


def test_frozen_towers_are_not_trained():
    torch.manual_seed(0)
    m = ImageBind(tiny_config(freeze=["image", "text"]))
    m.train()
    assert not m.towers["image"].training and not m.towers["text"].training
    assert m.towers["audio"].training
    assert all(not p.requires_grad for t in ("image", "text") for p in m.towers[t].parameters())
    out = m(collate(m, raw_batch(4)))
    out.loss.backward()
    assert all(p.grad is None for t in ("image", "text") for p in m.towers[t].parameters())
    assert any(p.grad is not None for p in m.towers["audio"].parameters())


def test_augment_encodes_a_random_view_in_training_only():
    config = tiny_config()
    config["towers"]["image"]["augment"] = True
    torch.manual_seed(0)
    m = ImageBind(config)
    batch = collate(m, raw_batch(4, image=[2]))
    m.eval()
    plain = m.encode("image", batch["image"])
    m.train()
    torch.manual_seed(1)
    view = m.encode("image", batch["image"])
    torch.manual_seed(1)  # the same view, made by the modality by hand
    by_hand = m.modalities["image"].augment(batch["image"])
    m.eval()
    torch.testing.assert_close(view, m.encode("image", by_hand))
    assert not torch.allclose(view[[0, 1, 3]], plain[[0, 1, 3]], atol=1e-4)
    assert torch.equal(view[2], torch.zeros_like(view[2]))  # a missing image stays missing
    torch.manual_seed(2)
    m.train()
    assert not torch.allclose(m.encode("image", batch["image"]), view, atol=1e-4)
    # other towers, and frozen ones, are left alone
    torch.testing.assert_close(
        m.encode("text", batch["text"]), m.eval().encode("text", batch["text"])
    )
    frozen = ImageBind({**config, "freeze": ["image"]}).train()
    frozen.load_state_dict(m.state_dict())
    torch.testing.assert_close(frozen.encode("image", batch["image"]), plain)
    with pytest.raises(ConfigError, match="towers.image.augment must be true or false"):
        config["towers"]["image"]["augment"] = "yes"
        ImageBind(config)


def _clip_config() -> dict:
    c = tiny_config()["towers"]
    return {
        "embed_dim": 8,
        "image": {"modality": c["image"]["modality"], "encoder": c["image"]["encoder"]},
        "text": {"modality": c["text"]["modality"], "encoder": c["text"]["encoder"]},
        "init_temperature": 0.05,
    }


def test_init_from_a_clip_model(tmp_path):
    clip = registries.methods.get("clip").from_config(_clip_config()).eval()
    folder = clip.save_pretrained(tmp_path / "clip")
    audio_only = {"audio": tiny_config()["towers"]["audio"], "image": {}, "text": {}}
    config = {"towers": audio_only, "init_from_clip": str(folder), "freeze": ["image", "text"]}
    m = ImageBind(config).eval()
    assert m.embed_dim == 8
    assert m.config["init_from_clip"] is None
    assert m.config["initialized_from"] == {"clip": str(folder), "revision": None}
    batch = collate(m, raw_batch(3))
    mine = m.embed(batch)
    theirs = clip.embed({t: batch[t] for t in ("image", "text")})
    torch.testing.assert_close(mine["image"], theirs["image"])
    torch.testing.assert_close(mine["text"], 20.0 * theirs["text"])  # CLIP's scale, 1 / 0.05
    # the saved model no longer needs the CLIP folder
    saved = m.save_pretrained(tmp_path / "ib")
    shutil.rmtree(folder)
    again = from_hub(saved)
    torch.testing.assert_close(again.embed(batch)["text"], mine["text"])
    with pytest.raises(ConfigError, match="is a 'imagebind' model, not a 'clip' model"):
        ImageBind({**config, "init_from_clip": str(saved)})
    folder = clip.save_pretrained(tmp_path / "clip-again")
    with pytest.raises(ConfigError, match="takes the image and text towers"):
        ImageBind({**config, "init_from_clip": str(folder), "towers": tiny_config()["towers"]})


class _VectorModality(Modality):
    name = "ib-test-vector"

    def preprocess(self, sample, **kwargs):
        return {"values": torch.as_tensor(sample, dtype=torch.float32)}


class _VectorEncoder(Encoder):
    modality = "ib-test-vector"

    def __init__(self, **config):
        super().__init__(**config)
        self.width = int(config.get("width", 12))
        self.net = torch.nn.Linear(5, self.width)

    def forward(self, inputs):
        h = self.net(inputs["values"])
        return EncoderOutput(tokens=h[:, None], pooled=h)


def test_any_registered_modality_can_be_bound(tmp_path):
    """A third-party modality and encoder, registered by name, become a tower."""
    load_plugins()  # a first lookup would load them and clear what is registered before
    registries.modalities.register("ib-test-vector", _VectorModality)
    registries.encoders.register("ib-test-vector/linear", _VectorEncoder)
    try:
        towers = {
            "image": tiny_config()["towers"]["image"],
            "ib-test-vector": {"encoder": {"name": "ib-test-vector/linear", "width": 12}},
        }
        m = ImageBind({"embed_dim": 8, "towers": towers}).eval()
        cfg = m.config["towers"]["ib-test-vector"]
        assert cfg["logit_scale"] == {"init": 1 / 0.07, "learnable": True, "max": 100.0}
        assert cfg["clips"] is False
        raw = {
            "image": images(3),
            "ib-test-vector": [[float(i + j) for j in range(5)] for i in range(3)],
        }
        out = m(collate(m, raw))
        assert set(out.losses) == {"image_ib-test-vector"}
        assert out.logits["image_ib-test-vector"].shape == (3, 3)
        again = from_hub(m.save_pretrained(tmp_path / "third-party"))
        torch.testing.assert_close(
            again(collate(again, raw)).embeddings["ib-test-vector"],
            out.embeddings["ib-test-vector"],
        )
    finally:
        registries.modalities.unregister("ib-test-vector")
        registries.encoders.unregister("ib-test-vector/linear")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": 1}, "unknown config keys"),
        ({"towers": {"text": tiny_config()["towers"]["text"]}}, "anchor 'image'"),
        ({"freeze": ["depth"]}, "freeze names"),
        ({"embed_dim": 0}, "embed_dim"),
        (
            {"towers": {"image": {"encoder": {"name": "image/vit"}}, "smell": {}}},
            "no registered modality",
        ),
        ({"towers": {"image": {"encoder": None}, "text": {}}}, "registered image encoders: "),
        (
            {"towers": {"image": {"encoder": {"name": "image/vit"}, "size": 3}, "text": {}}},
            "unknown keys",
        ),
    ],
)
def test_config_errors_name_the_key(change, message):
    with pytest.raises(ConfigError, match=message):
        ImageBind({**tiny_config(), **change})


def test_patch_norm_eps_needs_a_patch_norm():
    config = tiny_config()
    config["towers"]["image"]["patch_norm_eps"] = 1e-5  # image/vit has no patch LayerNorm
    with pytest.raises(ConfigError, match="no patch LayerNorm"):
        ImageBind(config)
    config = tiny_config()
    config["towers"]["audio"]["patch_norm_eps"] = 1e-5
    m = ImageBind(config)
    assert m.towers["audio"].encoder.trunk.patch_embed.norm.eps == 1e-5
