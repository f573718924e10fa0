"""Input corruption: proportions over many samples, determinism, what must never change."""

import pytest
import torch
from colearn_plugin_vilbert.masking import (
    IGNORE_INDEX,
    mask_regions,
    mask_tokens,
    same_captions,
    segment_ids,
    swap_captions,
    use_hard_negatives,
)
from colearn_plugin_vilbert.scenes import make_nsp_pairs

SPECIAL = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
VOCAB = 50


def _tokens(b=400, t=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (b, t), generator=g)
    lengths = torch.randint(8, t + 1, (b,), generator=g)
    mask = torch.arange(t)[None] < lengths[:, None]
    ids[:, 0] = SPECIAL["cls"]
    ids[torch.arange(b), lengths - 1] = SPECIAL["sep"]
    ids[~mask] = SPECIAL["pad"]
    maskable = mask & (ids != SPECIAL["cls"]) & (ids != SPECIAL["sep"])
    return ids, maskable


def test_mask_tokens_proportions_80_10_10():
    ids, maskable = _tokens()
    g = torch.Generator().manual_seed(1)
    out, labels = mask_tokens(
        ids, maskable, mask_id=4, vocab_size=VOCAB, special_ids=SPECIAL.values(), generator=g
    )
    selected = labels != IGNORE_INDEX
    n_maskable = int(maskable.sum())
    assert n_maskable > 10000
    # 15% of the maskable tokens (binomial sd ~ 0.3 percentage points)
    assert abs(selected.sum() / n_maskable - 0.15) < 0.01
    assert not (selected & ~maskable).any(), "a special or padding token was selected"
    assert torch.equal(labels[selected], ids[selected]), "labels must be the original tokens"
    sel_out, sel_in = out[selected], ids[selected]
    is_mask = sel_out == 4
    unchanged = sel_out == sel_in
    replaced = ~is_mask & ~unchanged
    n = len(sel_in)
    assert abs(is_mask.float().mean() - 0.8) < 0.02
    # a random replacement may draw the original token (1 in 45): "unchanged" is 10% + that
    p_same = 1 / (VOCAB - len(SPECIAL))
    assert abs(unchanged.float().mean() - (0.1 + 0.1 * p_same)) < 0.015
    assert abs(replaced.float().mean() - 0.1 * (1 - p_same)) < 0.015
    assert n > 2000
    # random replacements never produce special tokens
    assert not torch.isin(sel_out[replaced], torch.tensor(list(SPECIAL.values()))).any()
    # tokens that were not selected are untouched
    assert torch.equal(out[~selected], ids[~selected])


def test_mask_tokens_is_deterministic_under_a_seed():
    ids, maskable = _tokens(b=8, t=16)
    runs = [
        mask_tokens(
            ids,
            maskable,
            mask_id=4,
            vocab_size=VOCAB,
            special_ids=SPECIAL.values(),
            generator=torch.Generator().manual_seed(7),
        )
        for _ in range(2)
    ]
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    other = mask_tokens(
        ids,
        maskable,
        mask_id=4,
        vocab_size=VOCAB,
        special_ids=SPECIAL.values(),
        generator=torch.Generator().manual_seed(8),
    )
    assert not torch.equal(runs[0][1], other[1])


def test_mask_tokens_rejects_bad_fractions():
    ids, maskable = _tokens(b=2, t=8)
    with pytest.raises(ValueError, match="mask\\+random"):
        mask_tokens(ids, maskable, mask_id=4, vocab_size=VOCAB, mask_frac=0.95, random_frac=0.1)


def test_mask_regions_proportions_90_10():
    g = torch.Generator().manual_seed(0)
    b, r, f = 2000, 12, 6
    feats = torch.rand(b, r, f) + 0.5  # never zero by chance
    valid = torch.arange(r)[None] < torch.randint(1, r + 1, (b, 1), generator=g)
    out, selected = mask_regions(feats, valid, generator=torch.Generator().manual_seed(1))
    assert not (selected & ~valid).any(), "a padding region was selected"
    assert abs(selected.sum() / valid.sum() - 0.15) < 0.01
    zeroed = (out == 0).all(-1)
    assert not (zeroed & ~selected).any()
    kept = selected & ~zeroed
    assert abs(zeroed[selected].float().mean() - 0.9) < 0.02
    assert torch.equal(out[kept], feats[kept]), "the other 10% keep their features"
    assert torch.equal(out[~selected], feats[~selected])


def test_swap_captions_swaps_exactly_half_with_other_examples():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, VOCAB, (10, 12), generator=g)  # all captions differ
    swap = swap_captions(ids, generator=torch.Generator().manual_seed(3))
    moved = swap.text_index != torch.arange(10)
    assert int(moved.sum()) == 5
    assert torch.equal(swap.aligned, (~moved).long())


def test_swap_captions_labels_identical_captions_as_aligned():
    ids = torch.tensor([[2, 7, 3], [2, 7, 3], [2, 8, 3], [2, 9, 3]])
    mask = torch.ones_like(ids)
    for seed in range(20):
        swap = swap_captions(ids, mask, generator=torch.Generator().manual_seed(seed))
        same = (ids[swap.text_index] == ids).all(1)
        assert torch.equal(swap.aligned.bool(), same)


def test_swap_captions_alignment_rate_over_many_batches():
    swapped = total = 0
    for seed in range(200):
        ids = torch.randint(5, VOCAB, (7, 6), generator=torch.Generator().manual_seed(seed))
        swap = swap_captions(ids, generator=torch.Generator().manual_seed(seed))
        swapped += int((swap.aligned == 0).sum())
        total += 7
    assert abs(swapped / total - 0.5) < 0.03  # round(3.5) per batch


def test_hard_negatives_replace_a_fraction_of_the_swapped_captions_only():
    b = 8
    own = torch.arange(b)
    hard = swapped = 0
    for seed in range(500):
        ids = torch.randint(5, VOCAB, (b, 6), generator=torch.Generator().manual_seed(seed))
        g = torch.Generator().manual_seed(seed)
        swap = swap_captions(ids, generator=g)
        index = use_hard_negatives(swap, 0.25, generator=g)
        moved = swap.text_index != own
        is_hard = index >= b
        assert torch.equal(index[~moved], own[~moved]), "kept captions stay"
        assert not (is_hard & ~moved).any()
        assert torch.equal(index[is_hard], own[is_hard] + b), "each gets its own hard negative"
        assert torch.equal(index[moved & ~is_hard], swap.text_index[moved & ~is_hard])
        hard += int(is_hard.sum())
        swapped += int(moved.sum())
    assert swapped == 500 * 4 and abs(hard / swapped - 0.25) < 0.03  # 3 standard deviations
    swap = swap_captions(ids, generator=torch.Generator().manual_seed(0))
    assert torch.equal(use_hard_negatives(swap, 0.0), swap.text_index)
    assert (use_hard_negatives(swap, 1.0) >= b).sum() == 4
    with pytest.raises(ValueError, match="fraction must be in"):
        use_hard_negatives(swap, 1.5)


def test_same_captions_ignores_padding_at_any_length():
    a = torch.tensor([[2, 7, 3, 0, 0], [2, 7, 3, 0, 0], [2, 8, 3, 9, 0]])
    b = torch.tensor([[2, 7, 3], [2, 7, 9], [2, 8, 3]])
    ones = torch.ones_like(b, dtype=torch.bool)
    assert same_captions(a, a != 0, b, ones).tolist() == [True, False, False]
    assert same_captions(b, ones, a, a != 0).tolist() == [True, False, False]
    assert same_captions(b, None, b.flip(0), None).tolist() == [False, True, False]


def test_segment_ids_from_sep_positions():
    ids = torch.tensor([[2, 10, 11, 3, 12, 3, 0, 0], [2, 10, 3, 0, 0, 0, 0, 0]])
    assert segment_ids(ids, sep_id=3).tolist() == [
        [0, 0, 0, 0, 1, 1, 1, 1],
        [0, 0, 0, 1, 1, 1, 1, 1],
    ]


def test_next_sentence_pairs_half_true_continuations():
    docs = [[f"d{d} s{s}" for s in range(2 + d % 4)] for d in range(600)]
    pairs = make_nsp_pairs(docs, torch.Generator().manual_seed(0))
    assert len(pairs) == sum(len(d) - 1 for d in docs)
    true = [p for p in pairs if p[2] == 1]
    assert abs(len(true) / len(pairs) - 0.5) < 0.03
    for a, b, is_next in pairs:
        da, sa = a.split()
        db, sb = b.split()
        if is_next:
            assert da == db and int(sb[1:]) == int(sa[1:]) + 1
        else:
            assert da != db, "a random second sentence must come from another document"
    again = make_nsp_pairs(docs, torch.Generator().manual_seed(0))
    assert again == pairs
