"""Small process helpers and an all-gather that carries gradients.

Every function here is a no-op (or returns the single-process answer) when ``torch.distributed``
is not available or not initialised, so code written for many processes runs unchanged in one.

Two gathers, for the two ways a contrastive loss is split across processes:

- :func:`all_gather_with_grad`: the backward pass *sums* the gradients that every process
  computed for this process's rows. Use it when each process computes a *part* of the loss
  (``local`` mode): the sum over processes is then the gradient of the whole loss.
- :func:`all_gather_keep_local_grad`: the other processes' rows are constants and only the
  local rows carry gradient, with no communication in backward. Use it when each process
  computes the *whole* loss (``full`` mode): that loss already depends on the local rows in
  every way the single-process loss does.

Processes may hold different numbers of rows (a last, short batch): the row counts are
exchanged first and the tensors padded for the collective. ``accelerate``'s ``gather`` is not
used because it carries no gradient; ``torch.distributed.nn.functional.all_gather`` is
deprecated and needs equal sizes.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "all_gather_keep_local_grad",
    "all_gather_with_grad",
    "all_reduce_sum",
    "gathered_sizes",
    "is_distributed",
    "rank",
    "scale_grad",
    "sum_grad_across_processes",
    "world_size",
]


def is_distributed() -> bool:
    """True when ``torch.distributed`` is available and a process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def world_size(group: dist.ProcessGroup | None = None) -> int:
    """Number of processes in ``group`` (the default group when None); 1 when not distributed."""
    return dist.get_world_size(group) if is_distributed() else 1


def rank(group: dist.ProcessGroup | None = None) -> int:
    """This process's rank in ``group``; 0 when not distributed."""
    return dist.get_rank(group) if is_distributed() else 0


def gathered_sizes(
    rows: int, device: torch.device | str = "cpu", group: dist.ProcessGroup | None = None
) -> list[int]:
    """Every process's row count, in rank order: one small all-gather (``[rows]`` alone if
    not distributed). ``device`` must suit the backend (a CUDA device for NCCL)."""
    if world_size(group) == 1:
        return [rows]
    mine = torch.tensor([rows], dtype=torch.long, device=device)
    sizes = [torch.empty_like(mine) for _ in range(world_size(group))]
    dist.all_gather(sizes, mine, group=group)
    return torch.cat(sizes).tolist()  # one device sync, not one per process


def _gather_rows(x: Tensor, sizes: list[int], group) -> Tensor:
    """Concatenate every process's ``x`` along dim 0 (no autograd); pads to the largest."""
    x = x.contiguous()
    largest = max(sizes)
    if x.shape[0] < largest:
        x = torch.cat([x, x.new_zeros((largest - x.shape[0], *x.shape[1:]))])
    parts = [torch.empty_like(x) for _ in sizes]
    dist.all_gather(parts, x, group=group)
    return torch.cat([part[:n] for part, n in zip(parts, sizes)])


class _AllGatherSumGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, sizes: list[int], group) -> Tensor:  # type: ignore[override]
        ctx.group = group
        ctx.start = sum(sizes[: rank(group)])
        ctx.rows = x.shape[0]
        return _gather_rows(x, sizes, group)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        # Each process holds d(its loss)/d(all rows); the total's gradient for my rows is the
        # sum over processes. all_reduce (not reduce_scatter) because gloo lacks the latter.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad[ctx.start : ctx.start + ctx.rows], None, None


def all_gather_with_grad(
    x: Tensor, group: dist.ProcessGroup | None = None, sizes: list[int] | None = None
) -> Tensor:
    """``cat([x of process 0, x of process 1, ...])`` whose backward sums all processes'
    gradients for the local rows. Returns ``x`` itself when not distributed.

    ``sizes`` (every process's row count, from :func:`gathered_sizes`) saves one collective
    when the caller already knows them.
    """
    if world_size(group) == 1:
        return x
    sizes = sizes or gathered_sizes(x.shape[0], x.device, group)
    return _AllGatherSumGrad.apply(x, sizes, group)


def all_gather_keep_local_grad(
    x: Tensor, group: dist.ProcessGroup | None = None, sizes: list[int] | None = None
) -> Tensor:
    """``cat([x of process 0, x of process 1, ...])`` where only this process's rows (which
    are ``x`` itself) carry gradient; no communication in backward. ``x`` when not
    distributed."""
    if world_size(group) == 1:
        return x
    sizes = sizes or gathered_sizes(x.shape[0], x.device, group)
    with torch.no_grad():
        everything = _gather_rows(x.detach(), sizes, group)
    start = sum(sizes[: rank(group)])
    return torch.cat([everything[:start], x, everything[start + x.shape[0] :]])


def all_reduce_sum(x: Tensor, group: dist.ProcessGroup | None = None) -> Tensor:
    """The sum of ``x`` over processes, as a new tensor without gradient (``x`` detached
    when not distributed)."""
    out = x.detach().clone()
    if world_size(group) > 1:
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
    return out


class _SumGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, group) -> Tensor:  # type: ignore[override]
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad, None


def sum_grad_across_processes(x: Tensor, group: dist.ProcessGroup | None = None) -> Tensor:
    """Identity whose backward sums the gradient over processes.

    For a value replicated on every process (a temperature) that each process uses in its
    part of a loss: the summed gradient is the gradient of the whole loss.
    """
    if world_size(group) == 1 or not x.requires_grad:
        return x
    return _SumGrad.apply(x, group)


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, factor: float) -> Tensor:  # type: ignore[override]
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return grad * ctx.factor, None


def scale_grad(x: Tensor, factor: float) -> Tensor:
    """Identity whose backward multiplies the gradient by ``factor``."""
    if factor == 1 or not x.requires_grad:
        return x
    return _ScaleGrad.apply(x, factor)
