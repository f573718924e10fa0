"""The simclr method: loss wiring, view generation, online probe, config, contracts."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from colearn_plugin_simclr.method import SimCLR

from colearn_core import ConfigError, registries
from colearn_core.losses import NTXentLoss
from colearn_core.testing import check_plugin


def make_model(**overrides) -> SimCLR:
    config = SimCLR.example_config()
    config.update(overrides)
    torch.manual_seed(0)
    return registries.methods.get("simclr")(config)


def make_batch(n: int = 6, labels: bool = True, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    # Normalised images of [0, 1] pixels (the example config's mean 0.5, std 0.25).
    pixels = (torch.rand(n, 1, 12, 12, generator=g) - 0.5) / 0.25
    batch: dict = {"image": {"pixels": pixels}}
    if labels:
        batch["label"] = torch.arange(n) % 3
    return batch


def reference_ntxent(z1: torch.Tensor, z2: torch.Tensor, t: float, normalize: bool) -> float:
    """NT-Xent by its definition, one anchor at a time (Chen et al. 2020, eq. 1)."""
    z = torch.cat([z1, z2]).double()
    if normalize:
        z = z / z.norm(dim=1, keepdim=True)
    n2 = z.shape[0]
    total = 0.0
    for i in range(n2):
        p = (i + n2 // 2) % n2
        num = math.exp(float(z[i] @ z[p]) / t)
        den = sum(math.exp(float(z[i] @ z[j]) / t) for j in range(n2) if j != i)
        total += -math.log(num / den)
    return total / n2


def test_plugin_contracts():
    checked = check_plugin("colearn-plugin-simclr")
    assert checked["encoders"] == ["image/simclr-cnn"]
    for kind, names in (
        ("methods", ["simclr"]),
        ("tasks", ["knn", "linear-probe"]),
        ("datasets", ["fashion-mnist"]),
    ):
        for name in names:
            assert registries[kind].entry(name).plugin == "colearn-plugin-simclr"


@pytest.mark.parametrize("normalize", [True, False])
def test_loss_equals_core_ntxent_and_reference(normalize):
    model = make_model(loss={"temperature": 0.3, "normalize": normalize})
    batch = make_batch()
    emb = model.embed(batch, generator=torch.Generator().manual_seed(1))
    z1, z2 = emb["view1"], emb["view2"]
    assert z1.shape == z2.shape == (6, 8)
    got = model.losses_from_embeddings(emb, batch)["ntxent"]
    core = NTXentLoss(temperature=0.3, normalize=normalize)(z1, z2)
    assert torch.allclose(got, core, atol=1e-6)
    ref = reference_ntxent(z1.detach(), z2.detach(), 0.3, normalize)
    assert got.item() == pytest.approx(ref, rel=1e-5)


def test_forward_embeddings_are_the_encoder_and_head_on_the_views():
    model = make_model()
    model.eval()  # batch norm uses running stats, so we can recompute row by row
    batch = make_batch()
    emb = model.embed(batch, generator=torch.Generator().manual_seed(3))
    v1, v2 = model.views(batch["image"], generator=torch.Generator().manual_seed(3))
    h1 = model.encoder({"pixels": v1}).pooled
    assert torch.allclose(emb["features1"], h1, atol=1e-5)
    assert torch.allclose(emb["view2"], model.head(model.encoder({"pixels": v2}).pooled), atol=1e-5)
    assert not emb["features1"].requires_grad  # detached for the probe


def test_views_differ_keep_shape_and_follow_the_seed():
    model = make_model()
    batch = make_batch(n=8)
    x = batch["image"]["pixels"]
    a1, a2 = model.views(batch["image"], generator=torch.Generator().manual_seed(5))
    b1, b2 = model.views(batch["image"], generator=torch.Generator().manual_seed(5))
    c1, _ = model.views(batch["image"], generator=torch.Generator().manual_seed(6))
    assert a1.shape == a2.shape == x.shape
    assert torch.equal(a1, b1) and torch.equal(a2, b2)
    assert not torch.allclose(a1, c1)
    # Every image's two views differ from each other and from the image.
    for i in range(8):
        assert not torch.allclose(a1[i], a2[i], atol=1e-3)
        assert not torch.allclose(a1[i], x[i], atol=1e-3)


def test_views_use_the_configured_augmentation_set():
    # Crop only (no flip, no colour): a full-image "crop" box must give the image back,
    # so with crop_scale [1, 1] and ratio [1, 1] both views equal the input.
    model = make_model(
        modality={
            **SimCLR.example_config()["modality"],
            "augmentations": ["crop"],
            "crop_scale": [1.0, 1.0],
            "crop_ratio": [1.0, 1.0],
        }
    )
    batch = make_batch()
    x = batch["image"]["pixels"]
    v1, v2 = model.views(batch["image"], generator=torch.Generator().manual_seed(0))
    assert torch.allclose(v1, x, atol=1e-4) and torch.allclose(v2, x, atol=1e-4)


def test_features_are_unaugmented_encoder_outputs():
    model = make_model()
    model.eval()
    batch = make_batch()
    f = model.features(batch)
    assert f.shape == (6, model.feature_dim)
    assert torch.equal(f, model.encoder(batch["image"]).pooled)
    assert torch.equal(f, model.features(batch))  # no randomness


def test_online_probe_learns_from_detached_features_only():
    model = make_model()
    out = model(make_batch())
    assert set(out.losses) == {"ntxent", "online_probe"}
    assert out.logits["online_probe"].shape == (12, 3)
    out.losses["online_probe"].backward()
    assert model.online_probe.weight.grad is not None
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is None for p in model.head.parameters())
    model.zero_grad(set_to_none=True)
    out = model(make_batch())
    out.losses["ntxent"].backward()
    assert model.online_probe.weight.grad is None
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())


def test_probe_loss_is_cross_entropy_over_both_views():
    model = make_model()
    batch = make_batch()
    emb = model.embed(batch)
    loss = model.losses_from_embeddings(emb, batch)["online_probe"]
    h = torch.cat([emb["features1"], emb["features2"]])
    expected = F.cross_entropy(model.online_probe(h), batch["label"].repeat(2))
    assert torch.allclose(loss, expected)


def test_no_labels_no_probe_loss_and_mismatch_is_an_error():
    model = make_model()
    assert set(model(make_batch(labels=False)).losses) == {"ntxent"}
    emb = model.embed(make_batch())
    with pytest.raises(ValueError, match="label"):
        model.losses_from_embeddings(emb, {"label": torch.zeros(4, dtype=torch.long)})


def test_accumulated_micro_batches_pair_views_correctly():
    # The trainer concatenates each embedding key over micro-batches: positives stay aligned.
    model = make_model()
    a, b = model.embed(make_batch(seed=1)), model.embed(make_batch(seed=2))
    joined = {k: torch.cat([a[k], b[k]]) for k in a}
    labels = {"label": torch.cat([make_batch()["label"]] * 2)}
    loss = model.losses_from_embeddings(joined, labels)["ntxent"]
    expected = reference_ntxent(joined["view1"].detach(), joined["view2"].detach(), 0.5, True)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_training_step_reduces_the_loss_on_a_fixed_batch():
    model = make_model(online_probe=None)
    batch = make_batch(n=16)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for step in range(30):
        gen = torch.Generator().manual_seed(step)
        loss = model.losses_from_embeddings(model.embed(batch, generator=gen))["ntxent"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < first - 0.1


def test_config_is_complete_json_and_rebuilds_the_same_model():
    model = make_model()
    text = json.dumps(model.config)
    again = SimCLR.from_config(json.loads(text))
    assert again.config == model.config
    assert model.config["encoder"]["in_chans"] == 1  # taken from the modality
    assert model.config["modality"]["image_size"] == 12
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in again.state_dict().items()}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"bogus": 1}, "unknown config keys"),
        ({"encoder": {"name": "text/bert"}}, "image encoder"),
        ({"projection": {"hidden_dim": "x"}}, "projection"),
        ({"online_probe": {"num_classes": 1}}, "online_probe"),
        ({"loss": {"temperature": -1.0}}, "temperature"),
    ],
)
def test_bad_config_is_a_clear_error(override, message):
    with pytest.raises(ConfigError, match=message):
        make_model(**override)


def test_missing_image_tower_is_a_clear_error():
    model = make_model()
    with pytest.raises(KeyError, match="data.columns"):
        model({"pixels": torch.zeros(2, 1, 12, 12)})


def test_vit_and_resnet_encoders_plug_in():
    modality = {**SimCLR.example_config()["modality"], "image_size": 16}
    for encoder in (
        {
            "name": "image/vit",
            "width": 16,
            "depth": 1,
            "heads": 2,
            "patch_size": 8,
            "image_size": 16,
            "pool": "mean",
        },
        {"name": "image/resnet", "arch": "resnet18", "layers": [1, 1, 1, 1], "small_stem": True},
    ):
        model = make_model(modality=modality, encoder=encoder)
        batch = {"image": {"pixels": torch.randn(4, 1, 16, 16)}, "label": torch.arange(4) % 3}
        out = model(batch)
        assert torch.isfinite(out.loss)
        assert model.features(batch).shape == (4, model.feature_dim)


def test_save_and_load_through_the_hub_layer(tmp_path):
    hub = pytest.importorskip("colearn_core.hub.pretrained")
    model = make_model()
    model.eval()
    model.save_pretrained(tmp_path / "m")
    loaded = hub.from_hub(tmp_path / "m")
    batch = make_batch()
    assert torch.allclose(loaded.features(batch), model.features(batch), atol=1e-6)
