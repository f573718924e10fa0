"""Parity with Meta's ImageBind code (the ``imagebind-unofficial`` wheel's ``models/``).

The official model is built with random weights (every tensor perturbed, so LayerNorms,
biases, learned key/value biases and logit scales all matter), converted with
``colearn_plugin_imagebind.convert`` and both embed the same inputs: image (official
"vision"), text, audio (3 clips), depth and thermal must agree within 1e-4.

- a small config (every tower narrow and 2 blocks deep),
- ImageBind-huge's shapes: every key and shape of the full 1.2B-parameter model mapped on the
  meta device (nothing allocated), and the numbers at huge widths, heads, patch sizes and
  output width with 2 blocks per tower (the block mapping is the same for every block).
"""

from __future__ import annotations

import math

import imagebind_official as official
import pytest
import torch
from colearn_plugin_imagebind.convert import (
    HUGE,
    ConversionError,
    convert_state_dict,
    from_state_dict,
    imagebind_config,
)
from colearn_plugin_imagebind.model import ImageBind

TOWERS = ("image", "text", "audio", "depth", "thermal")
OFFICIAL = {t: ("vision" if t == "image" else t) for t in TOWERS}
SMALL = {
    "out_embed_dim": 24,
    "vision_embed_dim": 32,
    "vision_num_blocks": 2,
    "vision_num_heads": 4,
    "text_embed_dim": 32,
    "text_num_blocks": 2,
    "text_num_heads": 2,
    "audio_embed_dim": 32,
    "audio_num_blocks": 2,
    "audio_num_heads": 4,
    "depth_embed_dim": 16,
    "depth_num_blocks": 2,
    "depth_num_heads": 2,
    "thermal_embed_dim": 32,
    "thermal_num_blocks": 2,
    "thermal_num_heads": 4,
    "imu_embed_dim": 16,
    "imu_num_blocks": 1,
    "imu_num_heads": 2,
}


@torch.no_grad()
def _randomise(model: torch.nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if name.endswith("text.mask"):
            continue  # the causal mask
        if name.endswith("log_logit_scale"):
            tensor.fill_(math.log(2.0 + 20.0 * torch.rand((), generator=gen).item()))
            continue
        tensor.add_(0.05 * torch.randn(tensor.shape, generator=gen))


def _inputs(batch: int, seed: int = 1) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.zeros(batch, 77, dtype=torch.long)
    for i in range(batch):
        n = 3 + 5 * i
        ids[i, 0] = 49406
        ids[i, 1 : n + 1] = torch.randint(1, 49000, (n,), generator=gen)
        ids[i, n + 1] = 49407
    return {
        "vision": torch.randn(batch, 3, 224, 224, generator=gen),
        "text": ids,
        "audio": torch.randn(batch, 3, 1, 128, 204, generator=gen),
        "depth": torch.randn(batch, 1, 224, 224, generator=gen),
        "thermal": torch.randn(batch, 1, 224, 224, generator=gen),
    }


def _colearn_batch(x: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    ids = x["text"]
    return {
        "image": {"pixels": x["vision"]},
        "text": {"input_ids": ids, "attention_mask": (ids != 0).long()},
        "audio": {"fbank": x["audio"]},
        "depth": {"pixels": x["depth"]},
        "thermal": {"pixels": x["thermal"]},
    }


def _check_parity(arch: dict, *, seed: int = 0, batch: int = 2) -> dict[str, float]:
    module = official.load()
    torch.manual_seed(seed)
    theirs = module.ImageBindModel(**arch).eval()
    _randomise(theirs, seed)
    heads = {k: v for k, v in arch.items() if k.endswith("_num_heads")}
    ours = from_state_dict(theirs.state_dict(), arch=heads, tokenizer=official.bpe_path())
    x = _inputs(batch)
    with torch.no_grad():
        want = theirs(x)
        got = ours.embed(_colearn_batch(x))
    diffs = {}
    for tower in TOWERS:
        w, g = want[OFFICIAL[tower]], got[tower]
        assert g.shape == w.shape, tower
        diffs[tower] = float((g - w).abs().max())
        # the embeddings are not trivially small: a wrong scale or sign would show
        assert float(w.norm(dim=-1).min()) > 0.5, tower
    bad = {t: d for t, d in diffs.items() if d > 1e-4}
    assert not bad, f"max abs differences above 1e-4: {bad} (all: {diffs})"
    return diffs


def test_small_config_embeddings_equal_the_official_model(capsys):
    diffs = _check_parity(SMALL)
    with capsys.disabled():
        print("\nImageBind parity, small config, max |colearn - official|:", diffs)


@pytest.mark.slow
def test_huge_widths_embeddings_equal_the_official_model(capsys):
    """ImageBind-huge's widths, heads, patch sizes and 1024-d output, 2 blocks per tower."""
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    arch = {**HUGE, "imu_num_blocks": 1}
    for key in list(arch):
        if key.endswith("_num_blocks"):
            arch[key] = 2 if not key.startswith("imu") else 1
    diffs = _check_parity(arch, batch=1)
    with capsys.disabled():
        print("\nImageBind parity, huge widths (2 blocks), max |colearn - official|:", diffs)


def test_huge_checkpoint_maps_every_tensor_on_meta(capsys):
    """The full imagebind_huge(): every official tensor (but IMU's and the text causal mask)
    has exactly one colearn counterpart of the same shape, and colearn has nothing else."""
    module = official.load()
    theirs = official.build_on_meta(module.imagebind_huge)
    state = theirs.state_dict()
    with torch.device("meta"):
        ours = ImageBind(imagebind_config())
    converted = convert_state_dict(state, ours)  # strict: raises on leftovers
    own = ours.state_dict()
    assert set(converted) == set(own)
    for key, value in converted.items():
        assert value.shape == own[key].shape, key
    n_theirs = sum(p.numel() for k, p in theirs.named_parameters() if ".imu." not in k)
    n_ours = sum(p.numel() for p in ours.parameters())
    # the only difference: the vision Conv3d's 2-frame kernel is one Conv2d kernel here
    conv3d = state["modality_preprocessors.vision.rgbt_stem.proj.1.weight"].numel()
    assert n_theirs - n_ours == conv3d // 2
    with capsys.disabled():
        towers = {n: sum(p.numel() for p in t.parameters()) / 1e6 for n, t in ours.towers.items()}
        print(f"\nImageBind-huge: {n_ours / 1e6:.1f}M parameters (no IMU); by tower (M):", towers)


def test_conversion_errors_name_the_problem():
    module = official.load()
    theirs = official.build_on_meta(module.ImageBindModel, **SMALL)
    state = dict(theirs.state_dict())
    with torch.device("meta"):
        ours = ImageBind(imagebind_config(**SMALL))
    state.pop("modality_heads.audio.2.weight")
    with pytest.raises(ConversionError, match="modality_heads.audio.2.weight"):
        convert_state_dict(state, ours)
    state = dict(theirs.state_dict())
    state["modality_trunks.depth.blocks.1.extra"] = torch.zeros(1)
    with pytest.raises(ConversionError, match="unused checkpoint tensors.*blocks.1.extra"):
        convert_state_dict(state, ours)
    with torch.device("meta"):
        wrong = ImageBind(imagebind_config(**{**SMALL, "depth_embed_dim": 24}))
    with pytest.raises(ConversionError, match="shape"):
        convert_state_dict(dict(theirs.state_dict()), wrong)


def test_text_tokenizer_matches_imagebinds():
    """The converted text modality tokenises as ImageBind's SimpleTokenizer."""
    module = official.load("multimodal_preprocessors")
    reference = module.SimpleTokenizer(bpe_path=str(official.bpe_path()))
    texts = ["a dog barking.", "A Photo of Two CATS!", "an ankle boot, 12.5% off", "x " * 100]
    from colearn_plugin_text.modality import TextModality

    mine = TextModality(tokenizer=str(official.bpe_path()), style="clip", context_length=77)
    assert torch.equal(mine.tokenize(texts)["input_ids"], reference(texts))


def test_colearn_convert_imagebind_writes_a_model_that_from_hub_loads(tmp_path):
    """The command on a checkpoint file; the folder loads with from_hub, whole or in part,
    and embeds as the official model does."""
    from colearn_core import from_hub
    from colearn_core.cli import main

    module = official.load()
    torch.manual_seed(0)
    theirs = module.ImageBindModel(**SMALL).eval()
    _randomise(theirs, 1)
    path = tmp_path / "imagebind_small.pth"
    torch.save(theirs.state_dict(), path)
    heads = [f"--set={k}={v}" for k, v in SMALL.items() if k.endswith("_num_heads")]
    out = tmp_path / "converted"
    args = ["convert", "imagebind", str(path), str(out), "--tokenizer", str(official.bpe_path())]
    assert main(args + heads) == 0
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    x = _inputs(2, seed=5)
    with torch.no_grad():
        want = theirs(x)
        full = from_hub(out).embed(_colearn_batch(x))
        part = from_hub(out, modalities=["image", "audio"])
        got = part.embed({t: _colearn_batch(x)[t] for t in ("image", "audio")})
    assert set(part.towers) == {"image", "audio"}
    for tower in TOWERS:
        assert float((full[tower] - want[OFFICIAL[tower]]).abs().max()) <= 1e-4, tower
    for tower in ("image", "audio"):
        torch.testing.assert_close(got[tower], full[tower], atol=0, rtol=0)
    # the converted tokenizer gives ImageBind's ids
    text = from_hub(out, modalities=["image", "text"]).modalities["text"]
    reference = official.load("multimodal_preprocessors").SimpleTokenizer(
        bpe_path=str(official.bpe_path())
    )
    assert torch.equal(text.tokenize(["a dog barks"])["input_ids"][0], reference("a dog barks"))


def test_checkpoints_load_from_torch_files_and_safetensors(tmp_path):
    from colearn_plugin_imagebind.convert import load_checkpoint
    from safetensors.torch import save_file

    state = {"a.weight": torch.randn(3, 2), "b": torch.arange(4)}
    torch.save({"model": state}, tmp_path / "wrapped.pth")
    save_file(state, str(tmp_path / "plain.safetensors"))
    for name in ("wrapped.pth", "plain.safetensors"):
        loaded = load_checkpoint(tmp_path / name)
        assert loaded.keys() == state.keys()
        assert all(torch.equal(loaded[k], state[k]) for k in state)

    path = tmp_path / "bad.pth"
    torch.save({"weights": [1, 2, 3]}, path)  # loads (weights_only allows lists): no tensors
    with pytest.raises(ConversionError, match="expected a state dict of tensors"):
        load_checkpoint(path)
    with pytest.raises(ConversionError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pth")
    marker = tmp_path / "ran"
    torch.save({"w": torch.zeros(1), "x": _Evil(str(marker))}, tmp_path / "evil.pth")
    with pytest.raises(ConversionError, match="weights_only"):
        load_checkpoint(tmp_path / "evil.pth")
    assert not marker.exists()  # nothing in the pickle ran


class _Evil:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))
