"""Contrastive losses: symmetric InfoNCE (CLIP, ImageBind), NT-Xent (SimCLR), sigmoid (SigLIP).

All three compare a batch of feature vectors with itself or with a paired batch through a
``B x B`` matrix of scaled similarities ``logits[i, j] = scale * <q_i, k_j>``, where
``scale = 1 / temperature``, and share these options:

- **temperature**: fixed, or learnable as ``logit_scale = log(1 / temperature)`` (CLIP's
  parameterisation), the scale clamped at ``max_scale`` (100, as in CLIP) in the forward pass;
  :meth:`ContrastiveLoss.clamp_` clamps the parameter itself after an optimiser step.
- **normalize**: L2-normalise the features first (cosine similarity); on by default.
- **distributed**: with ``torch.distributed`` initialised, features are gathered from every
  process with gradients. ``"local"`` (default): each process computes the loss terms of its
  own rows against the gathered columns. ``"full"``: each process computes the whole
  ``B_global x B_global`` loss. In both modes, and on every process, the returned value equals
  the loss of one process that sees the concatenated batch, and so do the gradients reaching
  this process's input features and the loss's own parameters. Under DDP, which *averages*
  parameter gradients over ``W`` processes, the encoders then receive ``1/W`` of the
  single-process gradient; ``ddp_scaled=True`` multiplies the gradients reaching the input
  features by ``W`` so that the averaged gradients are exactly the single-process ones.
  Without a process group, both modes are the single-process loss.
- **chunk_size**: compute the loss in blocks of ``chunk_size`` rows against all columns, so
  at most ``chunk_size x B`` logits exist at once; the backward pass recomputes each block
  (:func:`block_logsumexp`). Same value and gradients as the unchunked loss.

Bad input (not 2-D, mismatched batch sizes or widths, NaN/inf) raises
:class:`LossInputError`, naming the argument.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import distributed as cdist
from .errors import ColearnError, ConfigError
from .hookspecs import Register, hookimpl
from .interfaces import Loss

__all__ = [
    "ContrastiveLoss",
    "InfoNCELoss",
    "LossInputError",
    "NTXentLoss",
    "SigLIPLoss",
    "block_logsumexp",
]

DistributedMode = Literal["local", "full"]


class LossInputError(ColearnError, ValueError):
    """A loss received features of the wrong shape, type or value; the message names which."""


# --------------------------------------------------------------------------- input checks


def _check_matrix(name: str, x: Any) -> None:
    if not isinstance(x, Tensor):
        raise LossInputError(f"input `{name}` must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise LossInputError(
            f"input `{name}` must be 2-D (batch, dim), got shape {tuple(x.shape)}; pass one "
            "vector per example (e.g. EncoderOutput.pooled), not token features"
        )
    if not x.is_floating_point():
        raise LossInputError(f"input `{name}` must be a floating-point tensor, got {x.dtype}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise LossInputError(f"input `{name}` is empty: shape {tuple(x.shape)}")


def _check_pair(names: tuple[str, str], a: Any, b: Any) -> None:
    _check_matrix(names[0], a)
    _check_matrix(names[1], b)
    if a.shape[0] != b.shape[0]:
        raise LossInputError(
            f"inputs `{names[0]}` and `{names[1]}` must have the same batch size (row i of "
            f"one pairs with row i of the other), got {a.shape[0]} and {b.shape[0]}"
        )
    if a.shape[1] != b.shape[1]:
        raise LossInputError(
            f"inputs `{names[0]}` and `{names[1]}` must have the same feature width, got "
            f"{a.shape[1]} and {b.shape[1]}; project both into one embedding space first"
        )


def _check_finite(name: str, x: Tensor, sizes: list[int]) -> None:
    """Raise if ``x`` (rows of every process, concatenated) holds NaN or inf.

    Checking the gathered features means every process raises together instead of leaving
    the others waiting in a collective.
    """
    bad = ~torch.isfinite(x).all(dim=1)
    if not bool(bad.any()):
        return
    rows = bad.nonzero().flatten().tolist()
    shown = ", ".join(map(str, rows[:5])) + (", ..." if len(rows) > 5 else "")
    where = ""
    if len(sizes) > 1:
        bounds = torch.tensor(sizes).cumsum(0).tolist()
        procs = sorted({next(p for p, end in enumerate(bounds) if r < end) for r in rows})
        where = f" (from process{'es' if len(procs) > 1 else ''} {', '.join(map(str, procs))})"
    raise LossInputError(
        f"input `{name}` has non-finite values (NaN or inf) in {len(rows)} row(s): "
        f"{shown}{where}; check the encoder's outputs and the learning rate"
    )


# --------------------------------------------------------------------------- chunked kernel


def _dtypes(q: Tensor, k: Tensor) -> tuple[torch.dtype, torch.dtype]:
    """(matmul dtype, logits dtype). Under autocast the matmuls use autocast's dtype, as
    plain autograd would, in forward *and* backward; logits are at least float32."""
    device = q.device.type
    if torch.is_autocast_enabled(device):
        mm = torch.get_autocast_dtype(device)
    else:
        mm = torch.promote_types(q.dtype, k.dtype)
    return mm, torch.promote_types(mm, torch.float32)


def _block_logits(
    q: Tensor, k: Tensor, scale: Tensor, exclude: Tensor | None, start: int, stop: int, dtype
) -> Tensor:
    """``scale * q[start:stop] @ k.T`` in ``dtype``, excluded entries -inf; ``q`` and ``k``
    already in the matmul dtype."""
    if q.dtype == dtype:  # scaling the (c, D) rows is cheaper than the (c, N) logits
        logits = (q[start:stop] * scale) @ k.T
    else:  # low precision: scale after the upcast, not in the low-precision matmul
        logits = (q[start:stop] @ k.T).to(dtype).mul_(scale)
    if exclude is not None:
        rows = torch.arange(stop - start, device=logits.device)
        logits[rows, exclude[start:stop]] = -math.inf
    return logits


class _BlockLogSumExp(torch.autograd.Function):
    """Row/column log-sum-exp of ``scale * q @ k.T`` in row blocks.

    With ``keep`` the whole matrix is one block that is saved for backward (fastest when it
    fits); otherwise backward recomputes each block (memory ``O(chunk_size * N)``). Either way
    backward builds one gradient matrix ``G`` per block for both directions, so the cost is a
    few passes over the logits and two matmuls, against two cross-entropies and their
    transposes in plain autograd.
    """

    @staticmethod
    def forward(ctx, q, k, scale, exclude, chunk_size, columns, keep):  # type: ignore[override]
        mm, dtype = _dtypes(q, k)
        with torch.autocast(q.device.type, enabled=False):
            q_mm, k_mm = q.to(mm), k.to(mm)
            s = scale.detach().to(dtype)
            if keep:
                chunk_size = max(q.shape[0], 1)
            row = torch.empty(q.shape[0], dtype=dtype, device=q.device)
            col = torch.full(
                (k.shape[0] if columns else 0,), -math.inf, dtype=dtype, device=q.device
            )
            logits = None
            for start in range(0, q.shape[0], chunk_size):
                stop = min(start + chunk_size, q.shape[0])
                logits = _block_logits(q_mm, k_mm, s, exclude, start, stop, dtype)  # (c, N)
                row[start:stop] = torch.logsumexp(logits, dim=1)
                if columns:
                    col = torch.logaddexp(col, torch.logsumexp(logits, dim=0))
                if not keep:
                    logits = None
        ctx.save_for_backward(q, k, scale, exclude, row, col, logits)
        ctx.chunk_size, ctx.columns, ctx.mm = chunk_size, columns, mm
        return row, col

    @staticmethod
    def backward(ctx, g_row, g_col):  # type: ignore[override]
        q, k, scale, exclude, row, col, saved = ctx.saved_tensors
        mm, dtype = ctx.mm, row.dtype
        with torch.autocast(q.device.type, enabled=False):
            q_mm, k_mm = q.to(mm), k.to(mm)
            s = scale.detach().to(dtype)
            grad_q = torch.empty_like(q)
            grad_k = torch.zeros_like(k, dtype=dtype)
            grad_s = torch.zeros((), dtype=dtype, device=q.device)
            for start in range(0, q.shape[0], ctx.chunk_size):
                stop = min(start + ctx.chunk_size, q.shape[0])
                recomputed = saved is None
                if recomputed:
                    logits = _block_logits(q_mm, k_mm, s, exclude, start, stop, dtype)
                else:
                    logits = saved
                # d lse_i / d logits_ij = softmax of row i at j (of column j for the column lse)
                g = (logits - row[start:stop, None]).exp_().mul_(g_row[start:stop, None])
                if ctx.columns:
                    # a recomputed block is ours to overwrite; a saved one may be needed again
                    p_col = logits.sub_(col) if recomputed else logits - col
                    g.add_(p_col.exp_().mul_(g_col))
                del logits
                gk = (g.to(mm) @ k_mm).to(dtype)  # (c, D): gradient w.r.t. scale * q_blk
                grad_q[start:stop] = gk * s
                grad_s += (gk * q[start:stop].to(dtype)).sum()
                grad_k += (g.T.to(mm) @ q_mm[start:stop]).to(dtype) * s
                del g
        return (
            grad_q,
            grad_k.to(k.dtype),
            grad_s.to(scale.dtype) if ctx.needs_input_grad[2] else None,
            None,
            None,
            None,
            None,
        )


def block_logsumexp(
    q: Tensor,
    k: Tensor,
    scale: Tensor,
    *,
    chunk_size: int | None,
    exclude: Tensor | None = None,
    columns: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Row (and optionally column) log-sum-exp of ``scale * q @ k.T``, differentiable.

    With ``chunk_size``, works on blocks of ``chunk_size`` rows of ``q`` against all of ``k``
    and the backward pass recomputes each block, so memory is ``O(chunk_size * len(k))`` in
    both passes and the full matrix never exists. With None, the whole matrix is computed once
    and kept for backward (faster, ``O(M * N)`` memory).

    Args:
        q: ``(M, D)`` row features. k: ``(N, D)`` column features.
        scale: 0-d tensor multiplying the dot products (gradient supported).
        chunk_size: rows per block, or None for a single kept block.
        exclude: ``(M,)`` long, a column index per row whose entry is left out (``-inf``),
            e.g. each row's own index in NT-Xent.
        columns: also return the log-sum-exp down each column (``(N,)``).

    Returns:
        ``(row_lse (M,), col_lse (N,) or None)``, in at least float32.
    """
    keep = chunk_size is None
    row, col = _BlockLogSumExp.apply(q, k, scale, exclude, chunk_size or 0, bool(columns), keep)
    return row, (col if columns else None)


# --------------------------------------------------------------------------- losses


class ContrastiveLoss(Loss):
    """Temperature, normalisation, distribution and chunking shared by the contrastive losses.

    Args:
        temperature: initial (or fixed) temperature ``T``; logits are ``<q, k> / T``.
        learnable_temperature: learn ``logit_scale = log(1/T)`` as a parameter.
        max_scale: the largest ``1/T`` used; the forward pass clamps the scale there.
        normalize: L2-normalise features before comparing them.
        distributed: ``"local"`` or ``"full"``, see the module docstring.
        chunk_size: rows per block for the memory-saving chunked computation; None computes
            the whole logits matrix at once (fastest when it fits).
        ddp_scaled: multiply input-feature gradients by the world size (see module docstring).
        check_finite: raise on NaN/inf features (costs one pass and a device sync).
    """

    def __init__(
        self,
        *,
        temperature: float = 0.07,
        learnable_temperature: bool = False,
        max_scale: float = 100.0,
        normalize: bool = True,
        distributed: DistributedMode = "local",
        chunk_size: int | None = None,
        ddp_scaled: bool = False,
        check_finite: bool = True,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)):
            raise ConfigError(f"{name}: temperature must be a finite number, got {temperature!r}")
        if temperature <= 0:
            raise ConfigError(f"{name}: temperature must be > 0, got {temperature}")
        if not max_scale > 0:
            raise ConfigError(f"{name}: max_scale must be > 0, got {max_scale}")
        if 1.0 / temperature > max_scale * (1 + 1e-6):
            raise ConfigError(
                f"{name}: temperature {temperature} means a scale of {1 / temperature:g}, above "
                f"max_scale={max_scale:g}; raise max_scale or the temperature"
            )
        if distributed not in ("local", "full"):
            raise ConfigError(f"{name}: distributed must be 'local' or 'full', got {distributed!r}")
        if chunk_size is not None and (
            isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
        ):
            raise ConfigError(
                f"{name}: chunk_size must be a positive int or None, got {chunk_size!r}"
            )
        self.max_scale = float(max_scale)
        self.normalize = normalize
        self.distributed = distributed
        self.chunk_size = chunk_size
        self.ddp_scaled = ddp_scaled
        self.check_finite = check_finite
        init = torch.tensor(math.log(1.0 / temperature))
        if learnable_temperature:
            self.logit_scale = nn.Parameter(init)
        else:
            self.register_buffer("logit_scale", init)
        #: The constructor's arguments (JSON-serialisable), for a model's config.json.
        self.config: dict[str, Any] = {
            "temperature": temperature,
            "learnable_temperature": learnable_temperature,
            "max_scale": max_scale,
            "normalize": normalize,
            "distributed": distributed,
            "chunk_size": chunk_size,
            "ddp_scaled": ddp_scaled,
            "check_finite": check_finite,
        }

    def scale(self) -> Tensor:
        """``1 / temperature`` as a 0-d tensor, clamped at :attr:`max_scale`."""
        return self.logit_scale.clamp(max=math.log(self.max_scale)).exp()

    @property
    def temperature(self) -> float:
        """The temperature in use (after clamping)."""
        return 1.0 / float(self.scale().detach())

    @torch.no_grad()
    def clamp_(self) -> None:
        """Clamp ``logit_scale`` in place to ``log(max_scale)``, as CLIP does after each step.

        The forward pass already never uses a larger scale, but a parameter beyond the clamp
        gets no gradient; calling this after ``optimizer.step()`` keeps it learnable.
        """
        self.logit_scale.clamp_(max=math.log(self.max_scale))

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items())

    # helpers for subclasses ----------------------------------------------------------------

    def _prepare(self, x: Tensor) -> Tensor:
        if self.ddp_scaled:
            x = cdist.scale_grad(x, cdist.world_size())
        return F.normalize(x, dim=-1) if self.normalize else x

    def _gather(self, named: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[int]]:
        """Gather every process's rows of each tensor (in the mode's way) and check them."""
        first = next(iter(named.values()))
        sizes = cdist.gathered_sizes(first.shape[0], first.device)
        gather = (
            cdist.all_gather_with_grad
            if self.distributed == "local"
            else cdist.all_gather_keep_local_grad
        )
        out = {name: gather(x, sizes=sizes) for name, x in named.items()}
        if self.check_finite:
            for name, x in out.items():
                _check_finite(name, x.detach(), sizes)
        return out, sizes

    def _finish(self, part: Tensor) -> Tensor:
        """Turn this process's differentiable part into a loss whose value is the total."""
        if cdist.world_size() == 1 or self.distributed == "full":
            return part
        total = cdist.all_reduce_sum(part)
        return total + (part - part.detach())

    def _scale_for_rows(self) -> Tensor:
        """The scale; in local mode its gradient is summed over processes (each holds a part)."""
        s = self.scale()
        return cdist.sum_grad_across_processes(s) if self.distributed == "local" else s


def _cross_entropy_sum(
    q: Tensor,
    k: Tensor,
    scale: Tensor,
    positives: Tensor,
    chunk_size: int | None,
    exclude: Tensor | None = None,
) -> Tensor:
    """``sum_i -log softmax_j(scale q_i.k_j)[t_i]`` where ``positives[i] = q_i.k_{t_i}``."""
    row, _ = block_logsumexp(q, k, scale, chunk_size=chunk_size, exclude=exclude)
    return (row - scale * positives).sum()


class InfoNCELoss(ContrastiveLoss):
    """Symmetric InfoNCE between paired batches ``a`` and ``b`` (CLIP, ImageBind).

    ``logits = scale * a @ b.T``; row ``i`` of ``a`` pairs with row ``i`` of ``b`` and every
    other row of the batch (all processes' rows when distributed) is a negative. The loss
    combines ``CE(a -> b)`` (softmax over each row) and ``CE(b -> a)`` (over each column),
    each averaged over the batch:

    - ``combine="mean"`` (default): ``(CE(a->b) + CE(b->a)) / 2``, CLIP's loss.
    - ``combine="sum"``: ``CE(a->b) + CE(b->a)``, ImageBind's ``L(I,M) + L(M,I)`` (twice the
      mean; the same optimum, double the gradient).

    A bias added to every logit cancels in a softmax, so this loss has none (see
    :class:`SigLIPLoss`). Other options: :class:`ContrastiveLoss`.
    """

    def __init__(self, *, combine: Literal["mean", "sum"] = "mean", **options: Any) -> None:
        super().__init__(**options)
        if combine not in ("mean", "sum"):
            raise ConfigError(f"InfoNCELoss: combine must be 'mean' or 'sum', got {combine!r}")
        self.combine = combine
        self.config["combine"] = combine

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """``a``, ``b``: ``(B, D)`` paired features -> scalar loss."""
        _check_pair(("a", "b"), a, b)
        a, b = self._prepare(a), self._prepare(b)
        n = a.shape[0]
        weight = 0.5 if self.combine == "mean" else 1.0
        if cdist.world_size() == 1 or self.distributed == "full":
            if cdist.world_size() == 1:
                if self.check_finite:
                    _check_finite("a", a.detach(), [n])
                    _check_finite("b", b.detach(), [n])
            else:
                gathered, _ = self._gather({"a": a, "b": b})
                a, b = gathered["a"], gathered["b"]
            return self._symmetric(a, b, self.scale()) * (weight / a.shape[0])
        gathered, sizes = self._gather({"a": a, "b": b})
        big_a, big_b = gathered["a"], gathered["b"]
        scale = self._scale_for_rows()
        positives = (a * b).sum(-1)
        part = _cross_entropy_sum(a, big_b, scale, positives, self.chunk_size)
        part = part + _cross_entropy_sum(b, big_a, scale, positives, self.chunk_size)
        return self._finish(part * (weight / sum(sizes)))

    def _symmetric(self, a: Tensor, b: Tensor, scale: Tensor) -> Tensor:
        """``CE(a->b) + CE(b->a)``, each summed over rows, from one pass over ``a @ b.T``."""
        row, col = block_logsumexp(a, b, scale, chunk_size=self.chunk_size, columns=True)
        assert col is not None
        positives = scale * (a * b).sum(-1)
        return row.sum() + col.sum() - 2 * positives.sum()


class NTXentLoss(ContrastiveLoss):
    """NT-Xent over ``2N`` views (SimCLR): each view's positive is the other view of its
    example and the other ``2(N-1)`` views are negatives.

    ``forward(z1, z2)`` with two ``(N, D)`` views, or ``forward(z)`` with ``z = cat([z1, z2])``
    of shape ``(2N, D)`` (rows ``i`` and ``i + N`` are positives). With ``Z = cat([z1, z2])``
    and ``s = scale``, the loss is the mean over the ``2N`` anchors ``i`` of
    ``-log( exp(s Z_i.Z_p(i)) / sum_{j != i} exp(s Z_i.Z_j) )``. Distributed, ``z1`` and
    ``z2`` are gathered separately, so the views of every process pair up as in one big batch.
    Default temperature 0.1. Other options: :class:`ContrastiveLoss`.
    """

    def __init__(self, *, temperature: float = 0.1, **options: Any) -> None:
        super().__init__(temperature=temperature, **options)

    def forward(self, z1: Tensor, z2: Tensor | None = None) -> Tensor:
        """``z1``, ``z2``: ``(N, D)`` views, or ``z1`` alone ``(2N, D)`` -> scalar loss."""
        if z2 is None:
            _check_matrix("z", z1)
            if z1.shape[0] % 2:
                raise LossInputError(
                    f"input `z` stacks two views (2N, D) and needs an even number of rows, got "
                    f"{z1.shape[0]}; or pass the views separately: forward(z1, z2)"
                )
            z1, z2 = z1.chunk(2)
        else:
            _check_pair(("z1", "z2"), z1, z2)
        z1, z2 = self._prepare(z1), self._prepare(z2)
        n = z1.shape[0]
        if cdist.world_size() == 1:
            if self.check_finite:
                _check_finite("z1", z1.detach(), [n])
                _check_finite("z2", z2.detach(), [n])
            return self._all_anchors(z1, z2, self.scale())
        gathered, sizes = self._gather({"z1": z1, "z2": z2})
        if self.distributed == "full":
            return self._all_anchors(gathered["z1"], gathered["z2"], self.scale())
        total = sum(sizes)
        start = sum(sizes[: cdist.rank()])
        rows = torch.cat([z1, z2])  # (2n, D)
        columns = torch.cat([gathered["z1"], gathered["z2"]])  # (2N, D)
        own = torch.arange(start, start + n, device=z1.device)
        own = torch.cat([own, own + total])  # global index of each row
        positives = (z1 * z2).sum(-1).repeat(2)
        scale = self._scale_for_rows()
        part = _cross_entropy_sum(rows, columns, scale, positives, self.chunk_size, own)
        return self._finish(part / (2 * total))

    def _all_anchors(self, z1: Tensor, z2: Tensor, scale: Tensor) -> Tensor:
        n = z1.shape[0]
        z = torch.cat([z1, z2])  # (2N, D)
        index = torch.arange(2 * n, device=z.device)
        positives = (z1 * z2).sum(-1).repeat(2)
        loss = _cross_entropy_sum(z, z, scale, positives, self.chunk_size, index)
        return loss / (2 * n)


class SigLIPLoss(ContrastiveLoss):
    """Pairwise sigmoid loss (SigLIP): every pair ``(a_i, b_j)`` is its own binary problem.

    ``logits = scale * a @ b.T + bias``; the loss is
    ``-(1/B) sum_ij log sigmoid(y_ij * logits_ij)`` with ``y_ij = 1`` if ``i == j`` else
    ``-1``, summed over all ``B x B`` pairs (all processes' rows when distributed) and divided
    by the batch size. Defaults follow the paper: temperature 0.1 (scale 10) and bias -10,
    both learnable.

    Args:
        bias: initial (or fixed) bias added to every logit.
        learnable_bias: learn the bias.
        Other options: :class:`ContrastiveLoss`.
    """

    def __init__(
        self,
        *,
        temperature: float = 0.1,
        learnable_temperature: bool = True,
        bias: float = -10.0,
        learnable_bias: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(
            temperature=temperature, learnable_temperature=learnable_temperature, **options
        )
        if not (isinstance(bias, (int, float)) and math.isfinite(bias)):
            raise ConfigError(f"SigLIPLoss: bias must be a finite number, got {bias!r}")
        init = torch.tensor(float(bias))
        if learnable_bias:
            self.logit_bias = nn.Parameter(init)
        else:
            self.register_buffer("logit_bias", init)
        self.config.update(bias=bias, learnable_bias=learnable_bias)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """``a``, ``b``: ``(B, D)`` paired features -> scalar loss."""
        _check_pair(("a", "b"), a, b)
        a, b = self._prepare(a), self._prepare(b)
        n = a.shape[0]
        if cdist.world_size() == 1:
            if self.check_finite:
                _check_finite("a", a.detach(), [n])
                _check_finite("b", b.detach(), [n])
            return self._pairs(a, b, a, b, self.scale(), self.logit_bias) / n
        gathered, sizes = self._gather({"a": a, "b": b})
        if self.distributed == "full":
            big_a, big_b = gathered["a"], gathered["b"]
            return self._pairs(big_a, big_b, big_a, big_b, self.scale(), self.logit_bias) / sum(
                sizes
            )
        scale = self._scale_for_rows()
        bias = cdist.sum_grad_across_processes(self.logit_bias)
        part = self._pairs(a, gathered["b"], a, b, scale, bias)
        return self._finish(part / sum(sizes))

    def _pairs(
        self, q: Tensor, k: Tensor, pos_q: Tensor, pos_k: Tensor, scale: Tensor, bias: Tensor
    ) -> Tensor:
        """Sum over rows ``q`` x columns ``k`` of ``-log sigmoid(y * logit)``; the positive
        pairs are ``(pos_q_i, pos_k_i)``."""
        # -log sigmoid(x) = softplus(-x) = softplus(x) - x: softplus on every pair, then
        # subtract the positives' logits, so no sign matrix is needed.
        dtype = torch.promote_types(q.dtype, torch.float32)  # B^2 terms: sum in >= float32
        positives = (scale * (pos_q * pos_k).sum(-1).to(dtype) + bias).sum()
        if self.chunk_size is None:
            return _softplus_block(q, k, scale, bias) - positives
        return _BlockSoftplusSum.apply(q, k, scale, bias, self.chunk_size) - positives


def _softplus_block(q: Tensor, k: Tensor, scale: Tensor, bias: Tensor) -> Tensor:
    """``sum softplus(scale * q @ k.T + bias)``, in at least float32."""
    dtype = torch.promote_types(q.dtype, torch.float32)
    return F.softplus(((scale * q) @ k.T).to(dtype) + bias).sum()


class _BlockSoftplusSum(torch.autograd.Function):
    """``sum softplus(scale * q @ k.T + bias)`` in row blocks; backward recomputes each block.

    (A hand-written function rather than ``torch.utils.checkpoint``, whose first use imports
    ``torch._dynamo``: seconds of start-up for every process.)
    """

    @staticmethod
    def forward(ctx, q, k, scale, bias, chunk_size):  # type: ignore[override]
        mm, dtype = _dtypes(q, k)
        with torch.autocast(q.device.type, enabled=False):
            q_mm, k_mm = q.to(mm), k.to(mm)
            s, b = scale.detach().to(dtype), bias.detach().to(dtype)
            total = torch.zeros((), dtype=dtype, device=q.device)
            for start in range(0, q.shape[0], chunk_size):
                stop = min(start + chunk_size, q.shape[0])
                logits = _block_logits(q_mm, k_mm, s, None, start, stop, dtype)
                total += F.softplus(logits.add_(b)).sum()
        ctx.save_for_backward(q, k, scale, bias)
        ctx.chunk_size, ctx.mm = chunk_size, mm
        return total

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        q, k, scale, bias = ctx.saved_tensors
        mm = ctx.mm
        dtype = torch.promote_types(mm, torch.float32)
        with torch.autocast(q.device.type, enabled=False):
            q_mm, k_mm = q.to(mm), k.to(mm)
            s, b = scale.detach().to(dtype), bias.detach().to(dtype)
            grad_q = torch.empty_like(q)
            grad_k = torch.zeros_like(k, dtype=dtype)
            grad_s = torch.zeros((), dtype=dtype, device=q.device)
            grad_b = torch.zeros((), dtype=dtype, device=q.device)
            for start in range(0, q.shape[0], ctx.chunk_size):
                stop = min(start + ctx.chunk_size, q.shape[0])
                logits = _block_logits(q_mm, k_mm, s, None, start, stop, dtype)
                g = logits.add_(b).sigmoid_().mul_(grad)  # d softplus(x) / dx = sigmoid(x)
                gk = (g.to(mm) @ k_mm).to(dtype)
                grad_q[start:stop] = gk * s
                grad_s += (gk * q[start:stop].to(dtype)).sum()
                grad_b += g.sum()
                grad_k += (g.T.to(mm) @ q_mm[start:stop]).to(dtype) * s
                del g, logits
        return (
            grad_q,
            grad_k.to(k.dtype),
            grad_s.to(scale.dtype) if ctx.needs_input_grad[2] else None,
            grad_b.to(bias.dtype) if ctx.needs_input_grad[3] else None,
            None,
        )


@hookimpl
def register_losses(register: Register) -> None:
    register("infonce", InfoNCELoss)
    register("ntxent", NTXentLoss)
    register("siglip", SigLIPLoss)
