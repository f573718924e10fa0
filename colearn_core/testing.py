"""Contract checks that every plugin's tests run on what it registers.

Typical use in a plugin's tests (pytest)::

    from colearn_core.testing import check_plugin

    def test_contract():
        check_plugin("colearn-plugin-image")

or the single checks :func:`check_encoder`, :func:`check_loss`, :func:`check_modality`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .interfaces import Encoder, EncoderOutput, Loss, Modality
from .registry import registries

__all__ = ["check_encoder", "check_loss", "check_modality", "check_plugin"]


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def check_encoder(
    encoder_cls: type[Encoder],
    config: Mapping[str, Any] | None = None,
    *,
    batch_size: int = 2,
) -> Encoder:
    """Shapes, backward, determinism under a seed, and a safetensors state-dict round trip."""
    from safetensors.torch import load_file, save_file

    config = dict(encoder_cls.example_config() if config is None else config)
    name = encoder_cls.__name__

    torch.manual_seed(0)
    encoder = encoder_cls(**config)
    torch.manual_seed(0)
    twin = encoder_cls(**config)
    for (key, p), q in zip(encoder.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(p, q), f"{name}: parameter {key} differs under the same seed"
    assert isinstance(encoder.width, int) and encoder.width > 0, f"{name}: width must be > 0"

    inputs = encoder.example_inputs(batch_size, _seeded(1))
    encoder.eval()
    out = encoder(inputs)
    assert isinstance(out, EncoderOutput), f"{name}: forward must return EncoderOutput"
    assert out.tokens.ndim == 3, f"{name}: tokens must be (B, T, D), got {tuple(out.tokens.shape)}"
    assert out.tokens.shape[0] == batch_size and out.tokens.shape[2] == encoder.width, (
        f"{name}: tokens shape {tuple(out.tokens.shape)} != (B={batch_size}, T, D={encoder.width})"
    )
    assert out.pooled.shape == (batch_size, encoder.width), (
        f"{name}: pooled shape {tuple(out.pooled.shape)} != ({batch_size}, {encoder.width})"
    )
    if out.mask is not None:
        assert out.mask.shape == out.tokens.shape[:2], f"{name}: mask must be (B, T)"
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.pooled).all(), (
        f"{name}: non-finite outputs"
    )
    again = encoder(inputs)
    assert torch.equal(out.pooled, again.pooled), f"{name}: eval forward is not deterministic"

    encoder.train()
    out = encoder(inputs)
    (out.pooled.square().mean() + out.tokens.square().mean()).backward()
    grads = [p.grad for p in encoder.parameters() if p.requires_grad]
    assert grads, f"{name}: has no trainable parameters"
    reached = sum(g is not None and bool(torch.isfinite(g).all()) for g in grads)
    assert reached > 0, f"{name}: no gradient reached the parameters"

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "encoder.safetensors"
        state = {k: v.contiguous() for k, v in encoder.state_dict().items()}
        save_file(state, str(path))
        torch.manual_seed(123)
        restored = encoder_cls(**config)
        restored.load_state_dict(load_file(str(path)), strict=True)
    encoder.eval()
    restored.eval()
    with torch.no_grad():
        a, b = encoder(inputs).pooled, restored(inputs).pooled
    assert torch.equal(a, b), f"{name}: outputs differ after a safetensors round trip"
    return encoder


def check_loss(
    loss: Loss, inputs: Sequence[Tensor] | None = None, *, batch_size: int = 4
) -> Tensor:
    """A finite scalar whose gradient reaches every floating-point input."""
    if inputs is None:
        inputs = loss.example_inputs(batch_size, _seeded(2))
    inputs = [x.detach().clone().requires_grad_(x.is_floating_point()) for x in inputs]
    value = loss(*inputs)
    name = type(loss).__name__
    assert isinstance(value, Tensor) and value.ndim == 0, f"{name}: must return a scalar tensor"
    assert torch.isfinite(value), f"{name}: loss is not finite ({value.item()})"
    value.backward()
    for i, x in enumerate(inputs):
        if x.requires_grad:
            assert x.grad is not None, f"{name}: no gradient reached input {i}"
            assert torch.isfinite(x.grad).all(), f"{name}: non-finite gradient for input {i}"
            assert x.grad.abs().sum() > 0, f"{name}: zero gradient for input {i}"
    return value


def check_modality(
    modality_cls: type[Modality], config: Mapping[str, Any] | None = None, *, n: int = 3
) -> dict[str, Tensor]:
    """Preprocess + collate a few raw samples; every batch tensor leads with dimension n."""
    modality = modality_cls(**dict(config or {}))
    samples = modality_cls.example_samples(n)
    processed = [modality.preprocess(s) for s in samples]
    for i, p in enumerate(processed):
        assert p and all(isinstance(v, Tensor) for v in p.values()), (
            f"{modality_cls.__name__}: preprocess(sample {i}) must return named tensors"
        )
    batch = modality.collate(processed)
    for key, value in batch.items():
        assert value.shape[0] == n, f"{modality_cls.__name__}: batch[{key!r}] is not batch-first"
    augmented = modality.augment(batch, generator=_seeded(3))
    assert set(augmented) >= set(batch), f"{modality_cls.__name__}: augment dropped keys"
    return batch


def check_plugin(distribution: str) -> dict[str, list[str]]:
    """Run the contracts on every encoder, modality and loss a plugin registered."""
    checked: dict[str, list[str]] = {}
    found = False
    for kind, check in (
        ("encoders", lambda obj: check_encoder(obj)),
        ("modalities", lambda obj: check_modality(obj)),
        ("losses", lambda obj: check_loss(obj())),
    ):
        for name, entry in registries[kind].items():
            if entry.plugin != distribution:
                continue
            found = True
            check(entry.obj)
            checked.setdefault(kind, []).append(name)
    registered = any(
        entry.plugin == distribution
        for kind in ("methods", "tasks", "fusions", "commands", "datasets")
        for _, entry in registries[kind].items()
    )
    assert found or registered, f"plugin {distribution!r} registered nothing (is it installed?)"
    return checked
