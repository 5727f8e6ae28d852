"""Calls without a registry row: differentiated through the ATen ops torch runs for them.

Each case is a model that calls one torch function the registry may have no row for; the
oracle records the ATen ops torch lowers the call to (and torch._decomp's decomposition of
an ATen op without a row) and must match autograd at rtol 1e-9 with input gradients. Where
the call still has no row, the report names it. Planted bugs: a custom Function wrapping a
lowered call with a wrong backward fails, naming the Function; an op with neither a row nor
a decomposition is refused naming the call and the ATen op.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import torch_ref
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry import lookup_function, registry


class _Head(nn.Module):
    """Linear(4, 4) and then the call under test, as users write a head."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.proj(x))


def _ones(h: torch.Tensor) -> torch.Tensor:
    return torch.ones(h.shape[0], dtype=h.dtype)


#: name → (the function under test, the torch callable it reaches, torch-level)
CASES: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], Callable[..., object]]] = {
    "kl_div": (
        lambda h: F.kl_div(h.log_softmax(-1), h.flip(0).softmax(-1), reduction="none"),
        F.kl_div,
    ),
    "poisson_nll_loss": (
        lambda h: F.poisson_nll_loss(h, h.abs(), reduction="none"),
        F.poisson_nll_loss,
    ),
    "gaussian_nll_loss": (
        lambda h: F.gaussian_nll_loss(h, h.flip(0), h.abs() + 1, reduction="none"),
        F.gaussian_nll_loss,
    ),
    "hinge_embedding_loss": (
        lambda h: F.hinge_embedding_loss(h, torch.sign(h.flip(0)).detach(), reduction="none"),
        F.hinge_embedding_loss,
    ),
    "cosine_embedding_loss": (
        lambda h: F.cosine_embedding_loss(h, h.flip(0), _ones(h), reduction="none"),
        F.cosine_embedding_loss,
    ),
    "margin_ranking_loss": (
        lambda h: F.margin_ranking_loss(h[:, 0], h[:, 1], _ones(h), reduction="none"),
        F.margin_ranking_loss,
    ),
    "soft_margin_loss": (
        lambda h: F.soft_margin_loss(h, torch.sign(h.flip(1)).detach(), reduction="none"),
        F.soft_margin_loss,
    ),
    "multilabel_soft_margin_loss": (
        lambda h: F.multilabel_soft_margin_loss(h, (h.flip(0) > 0).double(), reduction="none"),
        F.multilabel_soft_margin_loss,
    ),
    "multi_margin_loss": (
        lambda h: F.multi_margin_loss(h, torch.tensor([0, 1, 2]), reduction="none"),
        F.multi_margin_loss,
    ),
    "triplet_margin_loss": (
        lambda h: F.triplet_margin_loss(h, 2 * h, h.flip(0), reduction="none"),
        F.triplet_margin_loss,
    ),
    "cartesian_prod": (lambda h: torch.cartesian_prod(h[0], h[1]), torch.cartesian_prod),
    "inner": (lambda h: torch.inner(h, h.flip(0)), torch.inner),
    "channel_shuffle": (lambda h: F.channel_shuffle(h.view(3, 4, 1), 2), F.channel_shuffle),
    "renorm": (lambda h: torch.renorm(h, 2, 0, 1.0), torch.renorm),
    "aminmax": (lambda h: h * torch.aminmax(h).max, torch.aminmax),
    "convolution": (
        lambda h: torch.convolution(
            h.view(1, 1, 3, 4),
            h[:2, :2].reshape(1, 1, 2, 2),
            None,
            [1, 1],
            [0, 0],
            [1, 1],
            False,
            [0, 0],
            1,
        ),
        torch.convolution,
    ),  # fmt: skip
    "slice_scatter": (
        lambda h: torch.slice_scatter(h, 2 * h[:, 1::2], 1, 1, 4, 2),
        torch.slice_scatter,
    ),
    "select_scatter": (lambda h: torch.select_scatter(h, h[:, 0] ** 2, 1, 2), torch.select_scatter),
    # (their decompositions write through a diagonal view and a narrowed one)
    "diagonal_scatter, dims and an offset": (
        lambda h: torch.diagonal_scatter(h.view(3, 2, 2), h[:2, :2].sin(), 1, 2, 0),
        torch.diagonal_scatter,
    ),
    "svd (deprecated; aten._linalg_svd)": (lambda h: torch.svd(h).V * torch.svd(h).S, torch.svd),
    "linalg.cond (singular values alone)": (lambda h: h * torch.linalg.cond(h), torch.linalg.cond),
    "linalg.tensorsolve (aten._linalg_solve_ex)": (
        lambda h: torch.linalg.tensorsolve(h[:, :3] + 3 * torch.eye(3), h[:, 3]),
        torch.linalg.tensorsolve,
    ),
    "alias_copy": (lambda h: 2 * torch.alias_copy(h), torch.alias_copy),
    "unfold_copy (Tensor.unfold's copy, not F.unfold)": (
        lambda h: torch.unfold_copy(h, 1, 2, 1).sum(-1),
        torch.unfold_copy,
    ),
    "constant_pad_nd": (
        lambda h: torch.constant_pad_nd(h, (1, 2, 0, 1), 0.5),
        torch.constant_pad_nd,
    ),
}


def _x() -> torch.Tensor:
    return torch.randn(3, 4, generator=torch.Generator().manual_seed(1))


def _model(fn: Callable[[torch.Tensor], torch.Tensor]) -> _Head:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _Head(fn)


def _loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((out - target) ** 2).mean()


@pytest.mark.parametrize("name", list(CASES))
def test_a_call_without_a_row_matches_autograd_through_torchs_lowering(name: str):
    fn, reached = CASES[name]
    model, x = _model(fn), _x()
    target = torch.randn(model(x).shape, generator=torch.Generator().manual_seed(2))
    report = torch_ref.compare_gradients(model, _loss, x, target, rtol=1e-9, input_grads=True)
    assert report.ok, report.failure_message()
    registry()
    if lookup_function(reached) is None:  # (still no row of its own: the report says so)
        assert any("without a registry row" in n for n in report.notes), report.notes


class _WrongKL(torch.autograd.Function):
    """KL divergence by F.kl_div (no row of its own) with a backward off by 1%."""

    @staticmethod
    def forward(ctx, logp: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(q)
        return F.kl_div(logp, q, reduction="none")

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (q,) = ctx.saved_tensors
        return -q * grad * 1.01, None


def test_a_wrong_backward_of_a_lowered_call_fails_naming_the_function():
    model = _model(lambda h: _WrongKL.apply(h.log_softmax(-1), h.flip(0).softmax(-1).detach()))
    x = _x()
    target = torch.randn(3, 4, generator=torch.Generator().manual_seed(2))
    report = torch_ref.compare_gradients(model, _loss, x, target, input_grads=True)
    assert not report.ok
    assert "_WrongKL" in report.failure_message()


def test_a_correct_backward_of_the_same_call_passes():
    class _KL(_WrongKL):
        @staticmethod
        def backward(ctx, grad: torch.Tensor):
            (q,) = ctx.saved_tensors
            return -q * grad, None

    model = _model(lambda h: _KL.apply(h.log_softmax(-1), h.flip(0).softmax(-1).detach()))
    x = _x()
    target = torch.randn(3, 4, generator=torch.Generator().manual_seed(2))
    report = torch_ref.compare_gradients(model, _loss, x, target, rtol=1e-9, input_grads=True)
    assert report.ok, report.failure_message()


def test_an_op_with_neither_a_row_nor_a_decomposition_is_refused_naming_it():
    model = _model(lambda h: torch.fft.rfft(h).abs())
    with pytest.raises(
        UnsupportedModuleError, match=r"torch\.fft\.rfft .*aten\._fft_r2c, on complex values"
    ):
        torch_ref.manual_gradients(model, _loss, _x(), torch.zeros(3, 3))


def test_a_value_an_unfollowed_op_makes_is_a_constant_where_it_carries_no_gradient():
    """matrix_rank's integer result is a constant (as in autograd), though torch computes it
    through ops the record cannot follow; histc is a constant in autograd too."""
    model = _model(lambda h: h * torch.linalg.matrix_rank(h) + torch.histc(h, bins=4).sum())
    report = torch_ref.compare_gradients(
        model, _loss, _x(), torch.zeros(3, 4), rtol=1e-9, input_grads=True
    )
    assert report.ok, report.failure_message()


def test_a_no_grad_write_inside_a_lowered_call_keeps_the_gradient_path():
    """F.cosine_embedding_loss clamps in place under no_grad inside torch's own code: autograd
    keeps the gradient path through the clamped value, and so must the record."""
    fn, _ = CASES["cosine_embedding_loss"]
    model, x = _model(fn), _x() * 1e-7  # (tiny rows: the clamp is active)
    report = torch_ref.compare_gradients(
        model, _loss, x, torch.zeros(3), rtol=1e-9, input_grads=True
    )
    assert report.ok, report.failure_message()


class _Cache(nn.Module):
    """A cache buffer written through views, as KV and state caches are (Mamba's
    `conv_states[i].copy_(...)`): copy_ has no row of its own (lowered), += has one."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.register_buffer("kv", torch.zeros(3, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        self.kv[:, :4].copy_(h)
        self.kv[:, 4:] += 2 * h
        return self.kv @ torch.linspace(-1, 1, 16).view(8, 2)


def test_a_cache_written_through_views_carries_the_gradient_and_stays_the_twins():
    torch.manual_seed(0)
    model, x = _Cache(), _x()
    report = torch_ref.compare_gradients(
        model, _loss, x, torch.randn(3, 2), rtol=1e-9, input_grads=True
    )
    assert report.ok, report.failure_message()
    grads = torch_ref.manual_gradients(model, _loss, x, torch.randn(3, 2))
    assert grads["a.weight"].abs().sum() > 0  # (through the cache, the only path)
    assert torch.count_nonzero(model.kv) == 0  # (the caller's buffer is as it was)


def test_a_draw_from_a_private_generator_inside_a_lowered_call_is_refused():
    """torch.normal(mean, std, generator=g): its decomposition would draw anew, so the
    manual pass and autograd would see different draws (a global draw is refused anyway)."""
    g = torch.Generator().manual_seed(0)
    model = _model(lambda h: torch.normal(h, h.abs() + 1, generator=g))
    with pytest.raises(ValueError, match=r"torch\.normal.*draws random numbers.*aten\.normal"):
        torch_ref.manual_gradients(model, _loss, _x(), torch.zeros(3, 4))


def _diagonal_scatter() -> _Head:
    return _model(lambda h: torch.diagonal_scatter(h[:, :3], 2 * h[:, 3]))


def test_diagonal_scatter_matches_through_as_strided_and_a_write_through_its_diagonal():
    report = torch_ref.compare_gradients(
        _diagonal_scatter(), _loss, _x(), torch.randn(3, 3), rtol=1e-9, input_grads=True
    )
    assert report.ok, report.failure_message()


def test_a_decomposition_through_an_op_the_record_cannot_follow_is_refused_not_guessed(
    monkeypatch: pytest.MonkeyPatch,
):
    """Planted: as_strided without its row (no decomposition either): the value
    diagonal_scatter's decomposition makes through it is refused where it leaves the call,
    never taken for a constant."""
    from torch_ref import lowering

    monkeypatch.delitem(lowering._SPELLING, "as_strided")
    monkeypatch.setattr(lowering, "lookup_function", lambda fn: None)
    monkeypatch.setattr(lowering, "lookup_method", lambda name: None)
    with pytest.raises(UnsupportedModuleError, match=r"torch\.diagonal_scatter .*aten\.as_strided"):
        torch_ref.manual_gradients(_diagonal_scatter(), _loss, _x(), torch.zeros(3, 3))


def test_a_write_inside_a_decomposition_through_a_view_it_cannot_follow_is_refused(
    monkeypatch: pytest.MonkeyPatch,
):
    """Planted: diagonal_scatter's decomposition writes through a diagonal view below
    autograd, where no version count tells; without the diagonal's write-back the base is
    stale, and is refused rather than read (the written value would otherwise be lost)."""
    from torch_ref import lowering

    known = lowering._view_index
    monkeypatch.setattr(
        lowering, "_view_index", lambda n, a, k: None if n == "diagonal" else known(n, a, k)
    )
    with pytest.raises(UnsupportedModuleError, match=r"writes in place \(aten\.copy_to\)"):
        torch_ref.manual_gradients(_diagonal_scatter(), _loss, _x(), torch.zeros(3, 3))
