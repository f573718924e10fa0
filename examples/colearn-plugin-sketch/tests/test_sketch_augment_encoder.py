"""Views of a sketch (shift and erase) and the CNN's shapes."""

import pytest
import torch

from colearn_plugin_sketch.encoder import SketchCNN
from colearn_plugin_sketch.modality import SketchModality


def sketch_batch(modality, n=4):
    return modality.collate([modality.preprocess(s) for s in modality.example_samples(n)])


def test_shift_moves_strokes_without_wrapping():
    modality = SketchModality(image_size=32, max_shift=3, drop_p=0.0)
    batch = {"edges": torch.zeros(64, 1, 32, 32)}
    batch["edges"][:, :, 10, 10] = 1.0  # one stroke pixel
    out = modality.augment(batch, generator=torch.Generator().manual_seed(0))["edges"]
    positions = out[:, 0].flatten(1).argmax(dim=1)
    ys, xs = positions // 32, positions % 32
    assert out.flatten(1).sum(dim=1).tolist() == [1.0] * 64  # moved, never lost or duplicated
    assert ys.sub(10).abs().max() <= 3 and xs.sub(10).abs().max() <= 3
    assert len(set(zip(ys.tolist(), xs.tolist(), strict=True))) > 10  # shifts vary across the batch
    # At the border, strokes leave the picture instead of wrapping around.
    edge = {"edges": torch.zeros(64, 1, 32, 32)}
    edge["edges"][:, :, :, 0] = 1.0
    shifted = modality.augment(edge, generator=torch.Generator().manual_seed(0))["edges"]
    assert shifted[:, :, :, -3:].sum() == 0


def test_erasing_removes_whole_patches_at_rate_drop_p():
    modality = SketchModality(image_size=32, max_shift=0, drop_p=0.25, drop_size=8)
    batch = {"edges": torch.ones(200, 1, 32, 32)}
    out = modality.augment(batch, generator=torch.Generator().manual_seed(1))["edges"]
    patches = out.unfold(2, 8, 8).unfold(3, 8, 8)  # (B, 1, 4, 4, 8, 8)
    means = patches.mean(dim=(-1, -2))
    assert set(means.unique().tolist()) == {0.0, 1.0}  # a patch is kept or erased whole
    assert (means == 0).float().mean().item() == pytest.approx(0.25, abs=0.03)


def test_augment_is_seeded():
    modality = SketchModality(image_size=32)
    batch = sketch_batch(modality)
    a, b, c = (
        modality.augment(batch, generator=torch.Generator().manual_seed(s))["edges"]
        for s in (0, 0, 1)
    )
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == batch["edges"].shape and 0 <= a.min() and a.max() <= 1


def test_cnn_token_grid():
    encoder = SketchCNN(base=4, stages=3, width=8).eval()
    out = encoder({"edges": torch.rand(2, 1, 64, 64)})
    assert out.tokens.shape == (2, 64, 8)  # 64 / 2**3 = 8, so an 8 x 8 grid of tokens
    torch.testing.assert_close(out.pooled, out.tokens.mean(1) + out.tokens.amax(1))


def test_cnn_refuses_wrong_input():
    with pytest.raises(ValueError, match=r"expected edges of shape \(B, 1, S, S\)"):
        SketchCNN()({"edges": torch.rand(2, 3, 32, 32)})


def test_cnn_learns_to_tell_squares_from_rings():
    """The modality + encoder carry shape information: a linear head separates two shapes."""
    torch.manual_seed(0)
    modality = SketchModality(image_size=32)
    gen = torch.Generator().manual_seed(0)
    images, labels = [], []
    for i in range(48):
        img = torch.full((32, 32), 0.1)
        y, x = torch.randint(4, 16, (2,), generator=gen).tolist()
        if i % 2:
            img[y : y + 12, x : x + 12] = 0.9
        else:
            yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
            img[((yy - y - 6) ** 2 + (xx - x - 6) ** 2).float().sqrt().sub(5).abs() < 1.5] = 0.9
        images.append(modality.preprocess(img))
        labels.append(i % 2)
    batch, target = modality.collate(images), torch.tensor(labels)
    encoder = SketchCNN(base=8, stages=3, width=16)
    head = torch.nn.Linear(16, 2)
    optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=3e-3)
    for _ in range(40):
        optimizer.zero_grad()
        logits = head(encoder({"edges": batch["edges"][:32]}).pooled)
        loss = torch.nn.functional.cross_entropy(logits, target[:32])
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        held_out = head(encoder({"edges": batch["edges"][32:]}).pooled).argmax(1)
    assert (held_out == target[32:]).float().mean() >= 0.9
