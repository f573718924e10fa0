"""colearn_core.testing's contracts on the sketch plugin, found through its entry point."""

from colearn_core import registries
from colearn_core.testing import check_encoder, check_modality, check_plugin

from colearn_plugin_sketch.encoder import SketchCNN
from colearn_plugin_sketch.modality import SketchModality


def test_sketch_plugin_contract():
    checked = check_plugin("colearn-plugin-sketch")
    assert checked == {"encoders": ["sketch/cnn"], "modalities": ["sketch"]}


def test_sketch_registered_through_entry_point():
    assert registries.modalities.entry("sketch").plugin == "colearn-plugin-sketch"
    assert registries.encoders.get("sketch/cnn") is SketchCNN


def test_sketch_encoder_contract_other_configs():
    check_encoder(SketchCNN, {"base": 4, "stages": 1, "width": 4})
    check_encoder(SketchCNN, {"base": 2, "stages": 3, "width": 8}, batch_size=3)


def test_sketch_modality_contract_with_binary_strokes():
    batch = check_modality(SketchModality, {"image_size": 32, "threshold": 0.3}, n=4)
    assert batch["edges"].shape == (4, 1, 32, 32)
    assert set(batch["edges"].unique().tolist()) == {0.0, 1.0}
