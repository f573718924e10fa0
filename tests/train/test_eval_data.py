"""EvalData: batches cached after one complete pass, re-read when too large, safe to mutate."""

from __future__ import annotations

import torch

from colearn_core.train.evaluate import EvalData


class CountingLoader:
    """A loader of ``n`` batches that counts how often it is read."""

    def __init__(self, n: int = 3) -> None:
        self.n, self.passes = n, 0

    def __iter__(self):
        self.passes += 1
        for i in range(self.n):
            yield {"x": {"values": torch.full((2, 4), float(i))}, "label": torch.tensor([i, i])}

    def __len__(self) -> int:
        return self.n


def _values(data: EvalData) -> list[float]:
    return [float(b["x"]["values"][0, 0]) for b in data]


def test_second_pass_comes_from_the_cache():
    loader = CountingLoader()
    data = EvalData(loader, torch.device("cpu"))
    assert _values(data) == _values(data) == _values(data) == [0.0, 1.0, 2.0]
    assert loader.passes == 1


def test_a_task_mutating_batches_does_not_change_the_next_pass():
    data = EvalData(CountingLoader(), torch.device("cpu"))
    for batch in data:  # first pass, from the loader
        batch["x"]["values"].zero_()
    for batch in data:  # from the cache
        batch["x"]["values"].fill_(-1.0)
    assert _values(data) == [0.0, 1.0, 2.0]


def test_a_split_over_the_limit_is_read_again():
    loader = CountingLoader()
    # each batch holds 2*4*4 + 2*8 = 48 bytes: two fit, three do not
    data = EvalData(loader, torch.device("cpu"), cache_bytes=100)
    assert _values(data) == _values(data) == [0.0, 1.0, 2.0]
    assert loader.passes == 2


def test_an_interrupted_pass_is_not_cached():
    loader = CountingLoader()
    data = EvalData(loader, torch.device("cpu"))
    for _ in data:
        break
    assert _values(data) == [0.0, 1.0, 2.0]
    assert loader.passes == 2
    assert _values(data) == [0.0, 1.0, 2.0] and loader.passes == 2
