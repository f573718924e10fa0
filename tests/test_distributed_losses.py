"""Two CPU processes (gloo) give the loss and the gradients of one process on the whole batch.

The processes hold different numbers of rows (3 and 5) so that uneven gathering is covered.
This file is also the worker script: ``python test_distributed_losses.py RANK PORT OUT``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from colearn_core import distributed as cdist
from colearn_core.losses import InfoNCELoss, LossInputError, NTXentLoss, SigLIPLoss

SIZES = [3, 5]
WIDTH = 6
KINDS = {"infonce": InfoNCELoss, "ntxent": NTXentLoss, "siglip": SigLIPLoss}


def _cases() -> dict[str, tuple[str, dict[str, Any]]]:
    cases: dict[str, tuple[str, dict[str, Any]]] = {}
    for kind in KINDS:
        for mode in ("local", "full"):
            for chunk in (None, 2):
                name = f"{kind}-{mode}" + ("-chunked" if chunk else "")
                options: dict[str, Any] = dict(distributed=mode, chunk_size=chunk)
                options["learnable_temperature"] = True
                cases[name] = (kind, options)
    cases["infonce-sum-local"] = (
        "infonce",
        dict(combine="sum", distributed="local", learnable_temperature=True),
    )
    for mode in ("local", "full"):
        for kind in ("infonce", "siglip"):
            options = dict(distributed=mode, ddp_scaled=True, learnable_temperature=True)
            cases[f"{kind}-{mode}-ddp"] = (kind, options)
    return cases


CASES = _cases()


def global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    total = sum(SIZES)
    a = torch.randn(total, WIDTH, generator=g, dtype=torch.float64)
    b = a + 0.5 * torch.randn(total, WIDTH, generator=g, dtype=torch.float64)
    return a, b


def run(kind: str, options: dict[str, Any], a: torch.Tensor, b: torch.Tensor):
    """Loss value, input gradients and parameter gradients of one call."""
    loss = KINDS[kind](**options).double()
    a = a.clone().requires_grad_()
    b = b.clone().requires_grad_()
    value = loss(a, b)
    value.backward()
    params = {name: p.grad for name, p in loss.named_parameters()}
    return value.detach(), a.grad, b.grad, params


# ---------------------------------------------------------------------- worker


def worker(rank: int, port: int, out: Path) -> None:
    import torch.distributed as dist
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=len(SIZES)
    )
    start = sum(SIZES[:rank])
    rows = slice(start, start + SIZES[rank])
    a, b = global_batch()
    results: dict[str, torch.Tensor] = {}
    messages: dict[str, str] = {}
    for name, (kind, options) in CASES.items():
        value, grad_a, grad_b, params = run(kind, options, a[rows], b[rows])
        results[f"{name}/loss"] = value
        results[f"{name}/grad_a"] = grad_a
        results[f"{name}/grad_b"] = grad_b
        for param, grad in params.items():
            results[f"{name}/{param}"] = grad

    # The raw gathers: values are the concatenation; gradients as documented.
    x = torch.arange(float(SIZES[rank] * 2)).reshape(-1, 2) + 100 * rank
    x.requires_grad_()
    weight = float(rank + 1)
    gathered = cdist.all_gather_with_grad(x)
    (weight * gathered).sum().backward()
    results["gather/value"] = gathered.detach()
    results["gather/grad"] = x.grad
    x.grad = None
    (weight * cdist.all_gather_keep_local_grad(x)).sum().backward()
    results["gather_local/grad"] = x.grad

    # NaN in one process's rows: every process raises (no one left waiting in a collective).
    for mode in ("local", "full"):
        bad_a = a[rows].clone()
        if rank == 1:
            bad_a[1, 0] = float("nan")
        try:
            InfoNCELoss(distributed=mode).double()(bad_a, b[rows])
        except LossInputError as exc:
            messages[f"nan-{mode}"] = str(exc)
    dist.barrier()
    dist.destroy_process_group()
    save_file({k: v.contiguous() for k, v in results.items()}, str(out / f"rank{rank}.safetensors"))
    (out / f"rank{rank}.json").write_text(json.dumps(messages))


# ---------------------------------------------------------------------- tests


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> list[tuple[dict[str, torch.Tensor], dict[str, str]]]:
    from safetensors.torch import load_file

    out = tmp_path_factory.mktemp("dist")
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLEARN_LOAD_PLUGINS": ""}
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, str(rank), str(port), str(out)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(len(SIZES))
    ]
    logs = []
    for proc in procs:
        try:
            logs.append(proc.communicate(timeout=180)[0])
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail("distributed workers timed out:\n" + "\n".join(logs))
    for rank, proc in enumerate(procs):
        assert proc.returncode == 0, f"worker {rank} failed:\n{logs[rank]}"
    return [
        (
            load_file(str(out / f"rank{r}.safetensors")),
            json.loads((out / f"rank{r}.json").read_text()),
        )
        for r in range(len(SIZES))
    ]


@pytest.mark.parametrize("name", list(CASES))
def test_equals_single_process(two_processes, name):
    kind, options = CASES[name]
    a, b = global_batch()
    value, grad_a, grad_b, params = run(kind, options, a, b)
    factor = len(SIZES) if options.get("ddp_scaled") else 1
    for rank, (results, _) in enumerate(two_processes):
        start = sum(SIZES[:rank])
        rows = slice(start, start + SIZES[rank])
        torch.testing.assert_close(results[f"{name}/loss"], value, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(results[f"{name}/grad_a"], factor * grad_a[rows])
        torch.testing.assert_close(results[f"{name}/grad_b"], factor * grad_b[rows])
        assert params, "each case has a learnable temperature"
        for param, grad in params.items():
            torch.testing.assert_close(results[f"{name}/{param}"], grad)


def test_gathers(two_processes):
    expected = torch.cat(
        [torch.arange(float(n * 2)).reshape(-1, 2) + 100 * r for r, n in enumerate(SIZES)]
    )
    weights = sum(range(1, len(SIZES) + 1))
    for rank, (results, _) in enumerate(two_processes):
        torch.testing.assert_close(results["gather/value"], expected)
        # backward sums every process's gradient for my rows: 1 + 2
        torch.testing.assert_close(
            results["gather/grad"], torch.full((SIZES[rank], 2), float(weights))
        )
        # only my own use of my rows counts
        torch.testing.assert_close(
            results["gather_local/grad"], torch.full((SIZES[rank], 2), float(rank + 1))
        )


def test_non_finite_raises_on_every_process(two_processes):
    for _, messages in two_processes:
        for mode in ("local", "full"):
            message = messages[f"nan-{mode}"]
            # global row 3 + 1 = 4 comes from process 1
            assert "`a` has non-finite values" in message and "4" in message
            assert "from process 1" in message


def test_helpers_are_no_ops_without_a_process_group():
    x = torch.randn(3, 2, requires_grad=True)
    assert not cdist.is_distributed()
    assert cdist.world_size() == 1 and cdist.rank() == 0
    assert cdist.gathered_sizes(3) == [3]
    assert cdist.all_gather_with_grad(x) is x
    assert cdist.all_gather_keep_local_grad(x) is x
    assert cdist.sum_grad_across_processes(x) is x
    torch.testing.assert_close(cdist.all_reduce_sum(x), x.detach())
    assert not cdist.all_reduce_sum(x).requires_grad
    (cdist.scale_grad(x, 3.0).sum()).backward()
    torch.testing.assert_close(x.grad, torch.full((3, 2), 3.0))


if __name__ == "__main__":
    worker(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
