"""Contrastive losses against references written straight from the papers' formulas.

The references loop over anchors and build each softmax from ``exp`` and a sum, in float64,
so they share no code path with the implementation (matmul + cross_entropy, or the chunked
log-sum-exp kernel).
"""

from __future__ import annotations

import math

import pytest
import torch

from colearn_core import ConfigError, registries
from colearn_core.losses import (
    InfoNCELoss,
    LossInputError,
    NTXentLoss,
    SigLIPLoss,
    block_logsumexp,
)

torch.set_num_threads(1)
F64 = torch.float64
TOL = dict(rtol=1e-5, atol=1e-5)


def features(n: int, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g, dtype=F64, requires_grad=True)
    b = torch.randn(n, d, generator=g, dtype=F64, requires_grad=True)
    return a, b


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True)


# ---------------------------------------------------------------------- references


def ref_infonce(a, b, scale, combine="mean", normalize=True):
    """CLIP / ImageBind: L(a->b) = -1/N sum_i log(exp(s a_i.b_i) / sum_j exp(s a_i.b_j))."""
    if normalize:
        a, b = unit(a), unit(b)
    n = a.shape[0]
    sim = [[scale * torch.dot(a[i], b[j]) for j in range(n)] for i in range(n)]
    a_to_b = sum(
        -torch.log(torch.exp(sim[i][i]) / sum(torch.exp(x) for x in sim[i])) for i in range(n)
    )
    b_to_a = sum(
        -torch.log(torch.exp(sim[j][j]) / sum(torch.exp(sim[i][j]) for i in range(n)))
        for j in range(n)
    )
    a_to_b, b_to_a = a_to_b / n, b_to_a / n
    return (a_to_b + b_to_a) / 2 if combine == "mean" else a_to_b + b_to_a


def ref_ntxent(z1, z2, scale, normalize=True):
    """SimCLR eq. 1: l(i, j) = -log(exp(s z_i.z_j) / sum_{k != i} exp(s z_i.z_k)), averaged
    over all 2N anchors."""
    z = torch.cat([z1, z2])
    if normalize:
        z = unit(z)
    n2 = z.shape[0]
    n = n2 // 2
    total = 0
    for i in range(n2):
        j = (i + n) % n2
        denominator = sum(torch.exp(scale * torch.dot(z[i], z[k])) for k in range(n2) if k != i)
        total = total - torch.log(torch.exp(scale * torch.dot(z[i], z[j])) / denominator)
    return total / n2


def ref_siglip(a, b, scale, bias, normalize=True):
    """SigLIP: -1/N sum_i sum_j log(1 / (1 + exp(-y_ij (t a_i.b_j + bias))))."""
    if normalize:
        a, b = unit(a), unit(b)
    n = a.shape[0]
    total = 0
    for i in range(n):
        for j in range(n):
            y = 1.0 if i == j else -1.0
            logit = scale * torch.dot(a[i], b[j]) + bias
            total = total - torch.log(1 / (1 + torch.exp(-y * logit)))
    return total / n


def grads(value, tensors):
    return torch.autograd.grad(value, tensors)


def assert_close_all(xs, ys):
    for x, y in zip(xs, ys, strict=True):
        torch.testing.assert_close(x, y, **TOL)


# ---------------------------------------------------------------------- value and gradient


@pytest.mark.parametrize("n", [1, 2, 5, 12])
@pytest.mark.parametrize("temperature", [0.05, 0.07, 1.0])
@pytest.mark.parametrize("chunk_size", [None, 1, 4])
def test_infonce_matches_reference(n, temperature, chunk_size):
    a, b = features(n, seed=n)
    loss = InfoNCELoss(
        temperature=temperature, learnable_temperature=True, chunk_size=chunk_size
    ).double()
    value = loss(a, b)
    log_scale = torch.tensor(math.log(1 / temperature), dtype=F64, requires_grad=True)
    expected = ref_infonce(a, b, log_scale.exp())
    torch.testing.assert_close(value, expected, **TOL)
    assert_close_all(grads(value, [a, b, loss.logit_scale]), grads(expected, [a, b, log_scale]))


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_infonce_sum_is_imagebind_two_directions(chunk_size):
    a, b = features(6)
    value = InfoNCELoss(temperature=0.1, combine="sum", chunk_size=chunk_size).double()(a, b)
    expected = ref_infonce(a, b, 10.0, combine="sum")
    torch.testing.assert_close(value, expected, **TOL)
    assert_close_all(grads(value, [a, b]), grads(expected, [a, b]))


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_infonce_without_normalisation(chunk_size):
    a, b = features(5)
    a2, b2 = (a * 0.3).detach().requires_grad_(), (b * 0.3).detach().requires_grad_()
    value = InfoNCELoss(temperature=0.5, normalize=False, chunk_size=chunk_size).double()(a2, b2)
    expected = ref_infonce(a2, b2, 2.0, normalize=False)
    torch.testing.assert_close(value, expected, **TOL)
    assert_close_all(grads(value, [a2, b2]), grads(expected, [a2, b2]))


@pytest.mark.parametrize("n", [1, 2, 5, 9])
@pytest.mark.parametrize("temperature", [0.1, 0.5])
@pytest.mark.parametrize("chunk_size", [None, 1, 4])
def test_ntxent_matches_reference(n, temperature, chunk_size):
    z1, z2 = features(n, seed=10 + n)
    loss = NTXentLoss(
        temperature=temperature, learnable_temperature=True, chunk_size=chunk_size
    ).double()
    value = loss(z1, z2)
    log_scale = torch.tensor(math.log(1 / temperature), dtype=F64, requires_grad=True)
    expected = ref_ntxent(z1, z2, log_scale.exp())
    torch.testing.assert_close(value, expected, **TOL)
    assert_close_all(grads(value, [z1, z2, loss.logit_scale]), grads(expected, [z1, z2, log_scale]))


def test_ntxent_stacked_views_equal_separate_views():
    z1, z2 = features(4)
    loss = NTXentLoss(temperature=0.2).double()
    torch.testing.assert_close(loss(torch.cat([z1, z2])), loss(z1, z2))


@pytest.mark.parametrize("n", [1, 3, 8])
@pytest.mark.parametrize("temperature", [0.1, 0.5])
@pytest.mark.parametrize("chunk_size", [None, 1, 3])
def test_siglip_matches_reference(n, temperature, chunk_size):
    a, b = features(n, seed=20 + n)
    loss = SigLIPLoss(temperature=temperature, bias=-3.0, chunk_size=chunk_size).double()
    value = loss(a, b)
    log_scale = torch.tensor(math.log(1 / temperature), dtype=F64, requires_grad=True)
    bias = torch.tensor(-3.0, dtype=F64, requires_grad=True)
    expected = ref_siglip(a, b, log_scale.exp(), bias)
    torch.testing.assert_close(value, expected, **TOL)
    assert_close_all(
        grads(value, [a, b, loss.logit_scale, loss.logit_bias]),
        grads(expected, [a, b, log_scale, bias]),
    )


def test_float32_chunked_equals_float32_full():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(64, 32, generator=g, requires_grad=True)
    b = torch.randn(64, 32, generator=g, requires_grad=True)
    for cls in (InfoNCELoss, NTXentLoss, SigLIPLoss):
        full, chunked = cls(), cls(chunk_size=10)
        v_full, v_chunk = full(a, b), chunked(a, b)
        torch.testing.assert_close(v_chunk, v_full, rtol=1e-5, atol=1e-5)
        assert_close_all(grads(v_chunk, [a, b]), grads(v_full, [a, b]))


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_block_logsumexp_gradcheck(chunk_size):
    g = torch.Generator().manual_seed(4)
    q = torch.randn(5, 3, generator=g, dtype=F64, requires_grad=True)
    k = torch.randn(7, 3, generator=g, dtype=F64, requires_grad=True)
    s = torch.tensor(1.7, dtype=F64, requires_grad=True)
    exclude = torch.tensor([0, 2, 6, 1, 1])

    def f(q, k, s):
        row, col = block_logsumexp(q, k, s, chunk_size=chunk_size, exclude=exclude, columns=True)
        return row, col

    assert torch.autograd.gradcheck(f, (q, k, s))
    row, col = f(q, k, s)
    logits = s * q @ k.T
    logits = logits.index_put((torch.arange(5), exclude), torch.tensor(-math.inf, dtype=F64))
    torch.testing.assert_close(row, torch.logsumexp(logits, 1))
    torch.testing.assert_close(col, torch.logsumexp(logits, 0))


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_backward_twice_with_retain_graph(chunk_size):
    """The kept logits are not overwritten by a first backward pass."""
    a, b = features(7)
    value = InfoNCELoss(chunk_size=chunk_size).double()(a, b)
    first = grads(value, [a, b])
    value = InfoNCELoss(chunk_size=chunk_size).double()(a, b)
    value.backward(retain_graph=True)
    again = [a.grad.clone(), b.grad.clone()]
    a.grad = b.grad = None
    value.backward()
    assert_close_all(again, first)
    assert_close_all([a.grad, b.grad], first)


def test_chunked_never_holds_full_logits(monkeypatch):
    """Every matmul in the chunked path is at most chunk_size x B."""
    import colearn_core.losses as losses

    seen = []
    real = losses._block_logits

    def spy(q, k, scale, exclude, start, stop, dtype):
        out = real(q, k, scale, exclude, start, stop, dtype)
        seen.append(tuple(out.shape))
        return out

    monkeypatch.setattr(losses, "_block_logits", spy)
    a, b = features(10)
    InfoNCELoss(chunk_size=3).double()(a, b).backward()
    assert seen and all(rows <= 3 and cols == 10 for rows, cols in seen)
    assert len(seen) == 2 * 4  # 4 blocks forward, 4 recomputed in backward


# ---------------------------------------------------------------------- peers


def test_infonce_equals_open_clip():
    open_clip = pytest.importorskip("open_clip")
    a, b = features(9)
    expected = open_clip.ClipLoss()(unit(a), unit(b), torch.tensor(1 / 0.07, dtype=F64))
    torch.testing.assert_close(InfoNCELoss(temperature=0.07).double()(a, b), expected)


def test_ntxent_equals_lightly():
    lightly_loss = pytest.importorskip("lightly.loss")
    z1, z2 = features(9)
    expected = lightly_loss.NTXentLoss(temperature=0.5)(z1, z2)
    torch.testing.assert_close(NTXentLoss(temperature=0.5).double()(z1, z2), expected)


# ---------------------------------------------------------------------- temperature, bias


def test_learnable_temperature_is_clamped_at_max_scale():
    a, b = features(6)
    loss = InfoNCELoss(temperature=0.07, learnable_temperature=True).double()
    with torch.no_grad():
        loss.logit_scale.fill_(math.log(1000.0))
    assert loss.scale().item() == pytest.approx(100.0)
    assert loss.temperature == pytest.approx(0.01)
    value = loss(a, b)
    torch.testing.assert_close(value, ref_infonce(a, b, 100.0), **TOL)
    (scale_grad,) = grads(value, [loss.logit_scale])
    assert scale_grad.item() == 0.0  # beyond the clamp
    loss.clamp_()
    assert loss.logit_scale.item() == pytest.approx(math.log(100.0))


def test_custom_max_scale_and_fixed_temperature():
    loss = NTXentLoss(temperature=0.5, learnable_temperature=True, max_scale=4.0)
    with torch.no_grad():
        loss.logit_scale.fill_(3.0)
    assert loss.scale().item() == pytest.approx(4.0)
    fixed = InfoNCELoss(temperature=0.2)
    assert "logit_scale" not in dict(fixed.named_parameters())
    assert fixed.state_dict()["logit_scale"].item() == pytest.approx(math.log(5.0))
    learnable = InfoNCELoss(temperature=0.2, learnable_temperature=True)
    assert [n for n, _ in learnable.named_parameters()] == ["logit_scale"]


def test_learnable_temperature_trains():
    a, b = features(8)
    a, b = a.detach(), b.detach()
    loss = InfoNCELoss(temperature=1.0, learnable_temperature=True)
    opt = torch.optim.SGD(loss.parameters(), lr=0.5)
    before = loss.scale().item()
    for _ in range(3):
        opt.zero_grad()
        loss(a.float(), a.float() + 0.01 * b.float()).backward()
        opt.step()
    assert loss.scale().item() > before  # well-aligned pairs: sharpen the softmax


def test_siglip_bias_fixed_and_learnable():
    a, b = features(4)
    fixed = SigLIPLoss(bias=2.0, learnable_bias=False, learnable_temperature=False).double()
    assert list(fixed.parameters()) == []
    torch.testing.assert_close(fixed(a, b), ref_siglip(a, b, 10.0, 2.0), **TOL)
    learnable = SigLIPLoss(bias=0.5).double()
    value = learnable(a, b)
    bias = torch.tensor(0.5, dtype=F64, requires_grad=True)
    expected = ref_siglip(a, b, 10.0, bias)
    torch.testing.assert_close(
        grads(value, [learnable.logit_bias])[0], grads(expected, [bias])[0], **TOL
    )
    assert learnable.config["bias"] == 0.5


# ---------------------------------------------------------------------- registration, config


def test_registered_by_name():
    assert registries.losses.get("infonce") is InfoNCELoss
    assert registries.losses.get("ntxent") is NTXentLoss
    assert registries.losses.get("siglip") is SigLIPLoss
    assert registries.losses.entry("infonce").plugin == "colearn-core"


def test_config_rebuilds_the_loss():
    loss = InfoNCELoss(temperature=0.1, combine="sum", chunk_size=64)
    again = InfoNCELoss(**loss.config)
    assert again.config == loss.config
    a, b = features(5)
    torch.testing.assert_close(loss.double()(a, b), again.double()(a, b))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(temperature=0), "temperature must be > 0"),
        (dict(temperature=-1.0), "temperature must be > 0"),
        (dict(temperature=float("nan")), "finite"),
        (dict(temperature=0.001), "above max_scale"),
        (dict(max_scale=0), "max_scale"),
        (dict(distributed="ring"), "'local' or 'full'"),
        (dict(chunk_size=0), "chunk_size"),
        (dict(combine="max"), "combine"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        InfoNCELoss(**kwargs)


def test_bad_siglip_bias():
    with pytest.raises(ConfigError, match="bias"):
        SigLIPLoss(bias=float("inf"))


# ---------------------------------------------------------------------- bad input


PAIR_LOSSES = [InfoNCELoss, NTXentLoss, SigLIPLoss]


def names(cls):
    return ("z1", "z2") if cls is NTXentLoss else ("a", "b")


@pytest.mark.parametrize("cls", PAIR_LOSSES)
def test_mismatched_batch_sizes(cls):
    with pytest.raises(LossInputError, match=r"same batch size.*got 4 and 3"):
        cls()(torch.randn(4, 8), torch.randn(3, 8))


@pytest.mark.parametrize("cls", PAIR_LOSSES)
def test_mismatched_dims(cls):
    with pytest.raises(LossInputError, match=r"same feature width.*got 8 and 6"):
        cls()(torch.randn(4, 8), torch.randn(4, 6))


@pytest.mark.parametrize("cls", PAIR_LOSSES)
@pytest.mark.parametrize("shape", [(4,), (4, 3, 8)])
def test_not_2d(cls, shape):
    first, second = names(cls)
    with pytest.raises(LossInputError, match=rf"`{first}` must be 2-D.*{tuple(shape)}"):
        cls()(torch.randn(*shape), torch.randn(4, 8))
    with pytest.raises(LossInputError, match=rf"`{second}` must be 2-D"):
        cls()(torch.randn(4, 8), torch.randn(*shape))


@pytest.mark.parametrize("cls", PAIR_LOSSES)
def test_not_tensor_not_float_empty(cls):
    first, second = names(cls)
    with pytest.raises(LossInputError, match=rf"`{first}` must be a torch.Tensor, got list"):
        cls()([[1.0]], torch.randn(1, 1))
    with pytest.raises(LossInputError, match=rf"`{second}` must be a floating-point"):
        cls()(torch.randn(2, 3), torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(LossInputError, match=rf"`{first}` is empty"):
        cls()(torch.randn(0, 3), torch.randn(0, 3))


@pytest.mark.parametrize("cls", PAIR_LOSSES)
@pytest.mark.parametrize("chunk_size", [None, 2])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_names_the_input_and_rows(cls, chunk_size, bad):
    first, second = names(cls)
    x = torch.randn(5, 4)
    x[3, 1] = bad
    with pytest.raises(LossInputError, match=rf"`{second}` has non-finite values.*1 row\(s\): 3"):
        cls(chunk_size=chunk_size)(torch.randn(5, 4), x)
    with pytest.raises(LossInputError, match=rf"`{first}` has non-finite"):
        cls(chunk_size=chunk_size, normalize=False)(x, torch.randn(5, 4))


def test_non_finite_check_can_be_disabled():
    x = torch.randn(3, 4)
    x[0, 0] = float("nan")
    assert torch.isnan(InfoNCELoss(check_finite=False)(x, torch.randn(3, 4)))


def test_ntxent_stacked_views_need_even_rows():
    with pytest.raises(LossInputError, match=r"`z` stacks two views.*got 5"):
        NTXentLoss()(torch.randn(5, 4))
    with pytest.raises(LossInputError, match="`z` must be 2-D"):
        NTXentLoss()(torch.randn(6))


def test_example_inputs_contract():
    for cls in PAIR_LOSSES:
        loss = cls()
        inputs = loss.example_inputs(4, generator=torch.Generator().manual_seed(0))
        value = loss(*(x.requires_grad_() for x in inputs))
        assert value.dim() == 0 and torch.isfinite(value)
        value.backward()
        assert all(x.grad is not None and torch.isfinite(x.grad).all() for x in inputs)


@pytest.mark.parametrize("cls", PAIR_LOSSES)
def test_autocast_matmuls_in_low_precision_consistently(cls):
    """Under autocast the matmuls run in bf16 and the result stays close to float32."""
    g = torch.Generator().manual_seed(5)
    a = torch.randn(16, 8, generator=g, requires_grad=True)
    b = torch.randn(16, 8, generator=g, requires_grad=True)
    exact = cls()(a, b)
    exact_grads = grads(exact, [a, b])
    results = []
    for chunk_size in (None, 5):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            value = cls(chunk_size=chunk_size)(a, b)
        assert value.dtype == torch.float32
        results.append((value, *grads(value, [a, b])))
    for result in results:  # bf16 has 8 bits of mantissa
        torch.testing.assert_close(result[0], exact, rtol=2e-2, atol=2e-2)
        for x, y in zip(result[1:], exact_grads):
            torch.testing.assert_close(x, y, rtol=0.1, atol=2e-3)
