"""Time and peak memory of a contrastive loss's forward + backward, colearn against its peers.

    python benchmarks/losses.py --sizes 1024 8192 32768 --dim 512

Prints one JSON document on stdout (progress goes to stderr). ``B`` is the side of the
``B x B`` similarity matrix: for CLIP-style losses ``B`` pairs of ``(B, D)`` features, for
NT-Xent two views of ``B/2`` examples (``2N = B`` anchors), so every row of a size has the
same ``B^2`` logits (4.3 GB in float32 at ``B = 32768``).

Implementations (``--impls``): ``colearn-infonce`` and ``colearn-infonce-chunked`` against
open_clip's ``ClipLoss`` (``open_clip-cliploss``, given L2-normalised features, the
normalisation timed too); ``colearn-ntxent`` and ``colearn-ntxent-chunked`` against lightly's
``NTXentLoss`` (``lightly-ntxent``). A peer that is not installed is reported as skipped
(``pip install open_clip_torch lightly``).

Every measurement runs in a fresh subprocess. The first call is a warm-up whose peak memory
is recorded: on CPU the rise of the process's peak resident set (``VmHWM``, reset through
``/proc/self/clear_refs`` once the inputs exist) above the resident set before the call; on
CUDA ``torch.cuda.max_memory_allocated`` above the memory allocated before. Then ``--repeats``
timed calls; the median is reported as ``time_s``: on CPU the process's CPU time (one torch
thread by default, so that other load on a shared machine does not count; wall times are
listed too), on CUDA wall time after synchronising. An unchunked loss whose logits would not
fit in the memory available (``--memory-factor`` x the logits' size) is skipped rather than
run into the out-of-memory killer.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

IMPLS = {
    # name: (loss family, chunked?, peer module that must be importable)
    "colearn-infonce": ("clip", False, None),
    "colearn-infonce-chunked": ("clip", True, None),
    "open_clip-cliploss": ("clip", False, "open_clip"),
    "colearn-ntxent": ("ntxent", False, None),
    "colearn-ntxent-chunked": ("ntxent", True, None),
    "lightly-ntxent": ("ntxent", False, "lightly"),
}


# ---------------------------------------------------------------------- child process


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_bytes(reset_ok: bool) -> int:
    if reset_ok:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _build(impl: str, chunk_size: int, device: str):
    import torch
    import torch.nn.functional as F

    from colearn_core.losses import InfoNCELoss, NTXentLoss

    if impl == "colearn-infonce":
        return InfoNCELoss(temperature=0.07).to(device)
    if impl == "colearn-infonce-chunked":
        return InfoNCELoss(temperature=0.07, chunk_size=chunk_size).to(device)
    if impl == "colearn-ntxent":
        return NTXentLoss(temperature=0.5).to(device)
    if impl == "colearn-ntxent-chunked":
        return NTXentLoss(temperature=0.5, chunk_size=chunk_size).to(device)
    if impl == "open_clip-cliploss":
        from open_clip.loss import ClipLoss

        clip_loss = ClipLoss()
        scale = torch.tensor(1 / 0.07, device=device)
        return lambda a, b: clip_loss(F.normalize(a, dim=-1), F.normalize(b, dim=-1), scale)
    if impl == "lightly-ntxent":
        from lightly.loss import NTXentLoss as LightlyNTXent

        return LightlyNTXent(temperature=0.5)
    raise ValueError(f"unknown implementation {impl!r}; choose from {', '.join(IMPLS)}")


def child(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(spec["threads"])
    device = spec["device"]
    family = IMPLS[spec["impl"]][0]
    loss_fn = _build(spec["impl"], spec["chunk_size"], device)
    rows = spec["batch"] if family == "clip" else spec["batch"] // 2
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(rows, spec["dim"], generator=g, device=device, requires_grad=True)
    b = torch.randn(rows, spec["dim"], generator=g, device=device, requires_grad=True)

    def step() -> float:
        a.grad = b.grad = None
        loss = loss_fn(a, b)
        loss.backward()
        return float(loss)

    cuda = device.startswith("cuda")

    def timed() -> tuple[float, float, float]:
        cpu, wall = time.process_time(), time.perf_counter()
        value = step()
        if cuda:
            torch.cuda.synchronize()
        return value, time.process_time() - cpu, time.perf_counter() - wall

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        reset_ok = True
    else:
        before = _rss_bytes()
        reset_ok = _reset_peak()
    value, warm_cpu, warm_wall = timed()
    peak = (torch.cuda.max_memory_allocated() if cuda else _peak_bytes(reset_ok)) - before
    cpu_times, wall_times = [warm_cpu], [warm_wall]
    if spec["repeats"] > 0:
        cpu_times, wall_times = [], []
        for _ in range(spec["repeats"]):
            _, cpu, wall = timed()
            cpu_times.append(cpu)
            wall_times.append(wall)
    # One CPU thread on a shared machine: the process's CPU time is the stable measure (wall
    # time includes waiting for the core). On CUDA only wall time means anything.
    main_times = wall_times if cuda else cpu_times
    return {
        "time_s": round(statistics.median(main_times), 4),
        "time_kind": "wall" if cuda else "process cpu",
        "cpu_s": [round(t, 4) for t in cpu_times],
        "wall_s": [round(t, 4) for t in wall_times],
        "peak_mb": round(peak / 2**20, 1),
        "peak_method": "cuda.max_memory_allocated"
        if cuda
        else ("VmHWM" if reset_ok else "ru_maxrss"),
        "loss": round(value, 6),
    }


# ---------------------------------------------------------------------- parent


def _available_bytes(device: str) -> int:
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info()
        return free
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 1 << 62


def _installed(module: str | None) -> bool:
    if module is None:
        return True
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 8192])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--impls", nargs="+", default=list(IMPLS), choices=list(IMPLS))
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after the warm-up")
    parser.add_argument(
        "--max-repeats-large",
        type=int,
        default=1,
        help="timed calls for sizes >= 16384 (each takes a while on CPU)",
    )
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    parser.add_argument(
        "--memory-factor",
        type=float,
        default=6.0,
        help="skip an unchunked loss when this many B x B float32 matrices exceed the "
        "memory available",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    import torch

    results = []
    for batch in args.sizes:
        for impl in args.impls:
            family, chunked, module = IMPLS[impl]
            row: dict[str, Any] = {"impl": impl, "family": family, "batch": batch}
            results.append(row)
            if not _installed(module):
                row["status"] = f"skipped: {module} is not installed"
                print(f"B={batch} {impl}: {row['status']}", file=sys.stderr)
                continue
            need = args.memory_factor * batch * batch * 4
            available = _available_bytes(args.device)
            if not chunked and need > available:
                row["status"] = (
                    f"skipped: needs about {need / 2**30:.1f} GiB, "
                    f"{available / 2**30:.1f} GiB available"
                )
                print(f"B={batch} {impl}: {row['status']}", file=sys.stderr)
                continue
            spec = {
                "impl": impl,
                "batch": batch,
                "dim": args.dim,
                "repeats": args.repeats
                if batch < 16384
                else min(args.repeats, args.max_repeats_large),
                "chunk_size": args.chunk_size if chunked else None,
                "device": args.device,
                "threads": args.threads,
            }
            proc = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps(spec)],
                capture_output=True,
                text=True,
                env={**os.environ, "OMP_NUM_THREADS": str(args.threads)},
            )
            if proc.returncode != 0:
                row["status"] = f"failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}"
            else:
                row.update(json.loads(proc.stdout.strip().splitlines()[-1]), status="ok")
                if chunked:
                    row["chunk_size"] = args.chunk_size
            print(f"B={batch} {impl}: {row}", file=sys.stderr)

    report = {
        "command": "python benchmarks/losses.py " + " ".join(sys.argv[1:]),
        "dim": args.dim,
        "device": args.device,
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "results": results,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
