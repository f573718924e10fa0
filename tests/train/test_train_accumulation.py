"""Gradient accumulation: contrastive micro-batches give the loss and gradients of one big
batch (every micro-batch is a negative for the others); other methods average micro-batches."""

from __future__ import annotations

import copy

import torch

from colearn_core.train.data import split_batch
from colearn_core.train.trainer import Trainer


def grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def assert_close(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-6, rtol=1e-5, msg=name)


def setup(make_recipe, tmp_path, *sets):
    _, recipe = make_recipe("trainer.batch_size=32", "trainer.grad_accum_steps=4", *sets)
    trainer = Trainer(recipe, output_dir=tmp_path / "run")
    batch = next(iter(trainer.loader))
    reference = copy.deepcopy(trainer.method)
    return trainer, batch, reference


def test_four_micro_batches_equal_one_batch_of_four_times_the_size(make_recipe, tmp_path):
    trainer, batch, reference = setup(make_recipe, tmp_path)
    assert trainer.cached_contrastive
    losses = trainer.compute_gradients(batch)

    big = reference(batch).losses["contrastive"]  # one batch of 32: 31 negatives per row
    big.backward()
    torch.testing.assert_close(losses["contrastive"], big.detach(), atol=1e-6, rtol=1e-6)
    assert_close(grads(trainer.method), grads(reference))
    assert reference.logit_scale.grad.abs() > 0  # the temperature's gradient is counted once

    # Averaging four batches of 8 (7 negatives each) is a different objective: the test can fail.
    naive = copy.deepcopy(reference)
    naive.zero_grad()
    sum(naive(mb).losses["contrastive"] / 4 for mb in split_batch(batch, 4)).backward()
    pairs = zip(grads(naive).values(), grads(reference).values())
    diff = max((a - b).abs().max() for a, b in pairs)
    assert diff > 1e-3


def test_dropout_masks_are_replayed_in_the_recomputation(make_recipe, tmp_path):
    trainer, batch, reference = setup(make_recipe, tmp_path, "method.config.dropout=0.3")
    start = torch.get_rng_state()
    losses = trainer.compute_gradients(batch)
    after_trainer = torch.get_rng_state()

    # Reference: embed the micro-batches one after the other with a graph (the same random
    # draws as the trainer's no-grad pass), one loss over everything.
    torch.set_rng_state(start)
    parts = [reference.embed(mb) for mb in split_batch(batch, 4)]
    embeddings = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    loss = reference.losses_from_embeddings(embeddings)["contrastive"]
    loss.backward()
    torch.testing.assert_close(losses["contrastive"], loss.detach(), atol=1e-6, rtol=1e-6)
    assert_close(grads(trainer.method), grads(reference))
    # the training RNG continues from where the forward pass left it
    assert torch.equal(after_trainer, torch.get_rng_state())


def test_plain_accumulation_averages_micro_batch_losses(make_recipe, tmp_path):
    trainer, batch, reference = setup(make_recipe, tmp_path)
    trainer.cached_contrastive = False  # what a non-contrastive method gets
    losses = trainer.compute_gradients(batch)
    parts = [reference(mb).losses["contrastive"] for mb in split_batch(batch, 4)]
    (sum(parts) / 4).backward()
    torch.testing.assert_close(losses["contrastive"], sum(p.detach() for p in parts) / 4)
    assert_close(grads(trainer.method), grads(reference))


def test_batch_norm_statistics_move_once_per_micro_batch(make_recipe, tmp_path):
    trainer, batch, reference = setup(make_recipe, tmp_path, "method.config.batch_norm=true")
    trainer.compute_gradients(batch)
    with torch.no_grad():  # what the running statistics see in plain training: one pass each
        for mb in split_batch(batch, 4):
            reference.embed(mb)
    for tower in ("a", "b"):
        got, want = trainer.method.norms[tower], reference.norms[tower]
        assert int(got.num_batches_tracked) == int(want.num_batches_tracked) == 4
        torch.testing.assert_close(got.running_mean, want.running_mean)
        torch.testing.assert_close(got.running_var, want.running_var)


def test_a_frozen_tower_is_skipped_in_the_recomputation(make_recipe, tmp_path):
    trainer, batch, reference = setup(make_recipe, tmp_path)
    for model in (trainer.method, reference):
        for module in (model.encoders["b"], model.projections["b"]):
            module.requires_grad_(False)
    losses = trainer.compute_gradients(batch)
    big = reference(batch).losses["contrastive"]
    big.backward()
    torch.testing.assert_close(losses["contrastive"], big.detach(), atol=1e-6, rtol=1e-6)
    for (name, got), want in zip(trainer.method.named_parameters(), reference.parameters()):
        assert (got.grad is None) == (want.grad is None), name
        if want.grad is not None:
            torch.testing.assert_close(got.grad, want.grad, atol=1e-6, rtol=1e-5, msg=name)
    assert trainer.method.encoders["b"].net[0].weight.grad is None
