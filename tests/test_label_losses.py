"""The losses over labels, F.multilabel_margin_loss and F.ctc_loss, against torch.autograd
through a small model: every reduction, the options and target forms torch takes, torch's
subgradient at the hinge and torch's convention for CTC's gradient, a planted wrong backward
named, and the refusals (an infinite CTC loss, a label that is the blank).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _tolerances import TOLERANCES
from torch import nn

import torch_ref
from manual_bp import losses as L

TOL = TOLERANCES["model"]


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- multi-label margin ------------------------------------------------------------------

#: a duplicate label, a row with no label (y[0] = −1), every class a label, a label after −1
LABELS = torch.tensor([[1, 1, 3, -1, 0], [-1, 2, 0, 0, 0], [4, 3, 2, 1, 0], [2, -1, 4, 0, 0]])
WEIGHTS = torch.tensor([0.5, 2.0, -1.0, 3.0], dtype=torch.float64)

MARGIN_CASES: list[tuple[str, Callable[..., torch.Tensor]]] = [
    ("mean", F.multilabel_margin_loss),
    ("sum", functools.partial(F.multilabel_margin_loss, reduction="sum")),
    ("none, weighted",
     lambda y, t: (F.multilabel_margin_loss(y, t, reduction="none") * WEIGHTS).sum()),
    ("module", nn.MultiLabelMarginLoss()),
    ("module sum", nn.MultiLabelMarginLoss(reduction="sum")),
    ("legacy size_average=False", functools.partial(F.multilabel_margin_loss, size_average=False)),
]  # fmt: skip


@pytest.mark.parametrize("loss", [c[1] for c in MARGIN_CASES], ids=[c[0] for c in MARGIN_CASES])
def test_multilabel_margin_loss_matches_autograd(loss: Callable[..., torch.Tensor]) -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 5).double()
    x = torch.randn(4, 3, generator=_g(1), dtype=torch.float64)
    report = torch_ref.compare_gradients(model, loss, x, LABELS, input_grads=True, **TOL)
    assert report.ok, str(report)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_multilabel_margin_loss_of_one_sample(reduction: str) -> None:
    """A (C,) input is one sample; reduction='none' gives a scalar then, as torch's."""
    torch.manual_seed(0)
    model = nn.Linear(3, 5).double()
    x = torch.randn(3, generator=_g(2), dtype=torch.float64)
    loss = functools.partial(F.multilabel_margin_loss, reduction=reduction)
    report = torch_ref.compare_gradients(model, loss, x, LABELS[0], input_grads=True, **TOL)
    assert report.ok, str(report)


@pytest.mark.parametrize("shape", [(), (5,), (4, 5)], ids=["()", "(C,)", "(N, C)"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_multilabel_margin_loss_value_and_chain_match_torch(shape: tuple, reduction: str) -> None:
    """The manual loss alone: its value and δ_x = chain(δ, ∂ℓ/∂x) for a random δ of the
    loss's shape, against torch's, for every input shape torch takes."""
    x = torch.randn(shape, generator=_g(9), dtype=torch.float64, requires_grad=True)
    t = {2: LABELS, 1: LABELS[0], 0: torch.tensor([0])}[len(shape)]  # (() has one class)
    value = F.multilabel_margin_loss(x, t, reduction=reduction)
    delta = torch.randn(value.shape, generator=_g(10), dtype=torch.float64)
    (grad,) = torch.autograd.grad(value, x, delta)
    manual = L.MultiLabelMarginLoss(reduction)
    got, dx = manual(x.detach().numpy(), t.numpy())
    assert np.shape(got) == tuple(value.shape) == manual.output_shape(shape)
    np.testing.assert_allclose(got, value.detach().numpy(), **TOLERANCES["loss"])
    chained = manual.chain(delta.numpy(), dx)
    assert chained.shape == tuple(grad.shape), f"δ_x of shape {chained.shape}"
    np.testing.assert_allclose(chained, grad.numpy(), **TOLERANCES["loss"])


def test_multilabel_margin_loss_takes_torchs_subgradient_at_the_hinge() -> None:
    """z = 1 − x[y_j] + x[i] = 0 exactly: torch counts the pair where z > 0 only."""
    x = np.array([[1.0, 0.0, -0.5, 0.25], [0.5, -0.5, 2.0, 0.0]])  # z = 0 at (0, 1), (1, 1)
    t = np.array([[0, -1, 1, 1], [0, 3, -1, 0]])
    for reduction in ("mean", "sum", "none"):
        xt = torch.tensor(x, requires_grad=True)
        value = F.multilabel_margin_loss(xt, torch.tensor(t), reduction=reduction)
        (grad,) = torch.autograd.grad(value.sum(), xt)
        manual = L.MultiLabelMarginLoss(reduction)
        got, dx = manual(x, t)
        np.testing.assert_array_equal(np.asarray(got), value.detach().numpy())
        np.testing.assert_array_equal(manual.chain(np.ones(np.shape(got)), dx), grad.numpy())
        assert manual.ties(x, t)[:, 1].all(), "the pairs on the kink are named as ties"


# --- CTC -----------------------------------------------------------------------------------

T, N, C = 8, 3, 5
PADDED = torch.tensor([[1, 1, 2, 3], [3, 2, 0, 0], [4, 0, 0, 0]])  # (a repeated label)
JOINED = torch.tensor([1, 1, 2, 3, 3, 2, 4])
LENGTHS = (torch.tensor([8, 6, 5]), torch.tensor([4, 2, 1]))


def _ctc(*args: Any, **kwargs: Any) -> Callable[..., torch.Tensor]:
    return lambda lp, t: F.ctc_loss(lp, t, *args, **kwargs)


CTC_CASES: list[tuple[str, Callable[..., torch.Tensor], torch.Tensor]] = [
    ("mean, padded, blank=0", _ctc(*LENGTHS), PADDED),
    ("sum, concatenated, blank=0", _ctc(*LENGTHS, reduction="sum"), JOINED),
    ("none weighted, unequal input lengths",
     lambda lp, t: (F.ctc_loss(lp, t, (8, 3, 2), (4, 2, 1), reduction="none")
                    * torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)).sum(), PADDED),
    ("mean, blank=C-1", _ctc(*LENGTHS, blank=C - 1), PADDED.remainder(C - 1)),
    ("sum, concatenated, blank=C-1", _ctc((8, 7, 8), (4, 2, 1), blank=C - 1, reduction="sum"),
     JOINED.remainder(C - 1)),
    ("lengths as lists, an empty target", _ctc([8, 8, 4], [4, 0, 1]), PADDED),
    ("int32 targets and lengths", _ctc(LENGTHS[0].int(), LENGTHS[1].int()), PADDED.int()),
    ("zero_infinity, one impossible sample, mean",
     _ctc((8, 1, 5), (4, 2, 1), zero_infinity=True), PADDED),
    ("zero_infinity, one impossible sample, sum",
     _ctc((3, 6, 5), (4, 2, 1), zero_infinity=True, reduction="sum"), PADDED),
    ("zero_infinity, one impossible sample, none",
     lambda lp, t: F.ctc_loss(lp, t, (8, 6, 0), (4, 2, 1), zero_infinity=True,
                              reduction="none").sum(), PADDED),
    ("zero_infinity, nothing infinite", _ctc(*LENGTHS, zero_infinity=True), PADDED),
    ("module", lambda lp, t: nn.CTCLoss()(lp, t, *LENGTHS), PADDED),
    ("module, blank=C-1, sum, zero_infinity",
     lambda lp, t: nn.CTCLoss(C - 1, "sum", True)(lp, t, (8, 1, 5), (4, 2, 1)),
     PADDED.remainder(C - 1)),
]  # fmt: skip


def _ctc_model(log_softmax: bool = True) -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Linear(3, C), nn.LogSoftmax(-1)] if log_softmax else [nn.Linear(3, C)]
    return nn.Sequential(*layers).double()


@pytest.mark.parametrize(
    ("loss", "target"), [c[1:] for c in CTC_CASES], ids=[c[0] for c in CTC_CASES]
)
def test_ctc_loss_matches_autograd(loss: Callable[..., torch.Tensor], target: torch.Tensor) -> None:
    x = torch.randn(T, N, 3, generator=_g(3), dtype=torch.float64)
    report = torch_ref.compare_gradients(_ctc_model(), loss, x, target, input_grads=True, **TOL)
    assert report.ok, str(report)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_ctc_loss_unbatched(reduction: str) -> None:
    """log_probs (T, C), one sample: reduction='none' gives a scalar, as torch's."""
    x = torch.randn(T, 3, generator=_g(4), dtype=torch.float64)
    loss = _ctc((7,), (3,), reduction=reduction)
    report = torch_ref.compare_gradients(_ctc_model(), loss, x, PADDED[0, :3], **TOL)
    assert report.ok, str(report)


def test_ctc_gradient_is_torchs_convention() -> None:
    """On log_probs that are not normalised, torch's gradient is e^{lp} − posterior, not the
    derivative of the forward: the oracle matches torch's, and the manual formula minus
    e^{lp} is the central difference of the loss."""
    x = torch.randn(T, N, 3, generator=_g(5), dtype=torch.float64)
    report = torch_ref.compare_gradients(
        _ctc_model(log_softmax=False), _ctc(*LENGTHS, reduction="sum"), x, PADDED, **TOL
    )
    assert report.ok, str(report)
    lp = np.random.default_rng(0).normal(size=(4, 2, 3))
    ctc = L.CTCLoss((4, 3), (2, 1), reduction="sum")
    labels = np.array([[1, 2], [2, 0]])
    _, grad = ctc(lp, labels)
    eps, numeric = 1e-6, np.zeros_like(lp)
    for i in np.ndindex(lp.shape):
        step = np.zeros_like(lp)
        step[i] = eps
        numeric[i] = (ctc(lp + step, labels)[0] - ctc(lp - step, labels)[0]) / (2 * eps)
    live = (np.arange(4)[:, None] < np.array([4, 3]))[:, :, None]
    fd = TOLERANCES["finite_differences"]
    np.testing.assert_allclose(grad - np.exp(lp) * live, numeric, **fd)
    assert np.abs(grad - numeric).max() > 0.1, "torch's convention differs from ∂ℓ/∂lp"


def test_an_infinite_ctc_loss_is_refused_with_its_reason() -> None:
    x = torch.randn(T, N, 3, generator=_g(6), dtype=torch.float64)
    with pytest.raises(ValueError, match=r"the CTC loss is infinite for sample 1: .*no finite"):
        torch_ref.compare_gradients(_ctc_model(), _ctc((8, 1, 5), (4, 2, 1)), x, PADDED)


@pytest.mark.parametrize(
    ("target", "match"),
    [
        (PADDED.double(), "labels of dtype torch.int32 or torch.int64, got dtype torch.float64"),
        (PADDED - 1, r"other than blank=0, got 0 as label 0 of sample 0"),
        (PADDED + 2, r"in \[0, 5\) other than blank=0, got 5 as label 0 of sample 1"),
    ],
    ids=["float targets", "a label that is the blank", "a label out of range"],
)
def test_ctc_refusals(target: torch.Tensor, match: str) -> None:
    x = torch.randn(T, N, 3, generator=_g(7), dtype=torch.float64)
    with pytest.raises(ValueError, match=match):
        torch_ref.compare_gradients(_ctc_model(), _ctc((8, 8, 8), (1, 1, 1)), x, target)


# --- a planted wrong backward is found and named ---------------------------------------------


def _wrong_in_one_place(loss: Callable[..., torch.Tensor], where: tuple[Any, ...]) -> type:
    """A custom Function computing `loss(y)` whose backward is torch's own, except at `where`
    (one class of one sample), scaled by 1.5."""

    class PlantedLoss(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, y: torch.Tensor) -> torch.Tensor:
            ctx.save_for_backward(y)
            return loss(y)

        @staticmethod
        def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
            (y,) = ctx.saved_tensors
            with torch.enable_grad():
                y = y.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(loss(y), y, g)
            grad = grad.clone()
            grad[where] *= 1.5
            return grad

    return PlantedLoss


@pytest.mark.parametrize("which", ["multilabel_margin_loss", "ctc_loss"])
def test_a_wrong_backward_of_the_loss_is_found_and_named(which: str) -> None:
    if which == "ctc_loss":
        fn = _wrong_in_one_place(lambda y: F.ctc_loss(y, PADDED, *LENGTHS), (slice(None), 1, 2))
        model, x = _ctc_model(), torch.randn(T, N, 3, generator=_g(8), dtype=torch.float64)
    else:
        fn = _wrong_in_one_place(lambda y: F.multilabel_margin_loss(y, LABELS), (0, 4))
        torch.manual_seed(0)
        model, x = nn.Linear(3, 5).double(), torch.randn(4, 3, generator=_g(8)).double()
    report = torch_ref.compare_gradients(model, lambda y, t: fn.apply(y), x, None, **TOL)
    assert not report.ok
    rows = [r for r in report.rows if r.kind == "function"]
    assert [(r.name, r.status) for r in rows] == [("PlantedLoss#0 input 0", "fail")], str(report)
    assert any("PlantedLoss (call 0): its backward differs" in n for n in report.notes)
