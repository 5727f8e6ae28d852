"""Losses against torch.autograd in float64: value and ∂L/∂y, every option, every error.

- CASES: a table of named cases, each a torch loss (module or functional) and its data;
  the manual loss is its conversion, and value and gradient must match autograd.
- properties: random shapes and options for the elementwise and the class losses.
- ERRORS / CONSTRUCTOR_ERRORS / UNSUPPORTED: expected refusals declared as data.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _tolerances import TOLERANCES
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from manual_bp import losses as L
from torch_ref.errors import UnsupportedModuleError
from torch_ref.losses import convert_loss, target_to_numpy

#: a tensor is close when max|manual − autograd| ≤ atol + rtol · max|autograd|.
TOL = dict.fromkeys(("value", "grad"), TOLERANCES["loss"])

Data = tuple[torch.Tensor, torch.Tensor]


def _assert_close(check: str, where: str, got: Any, want: Any) -> None:
    tol = TOL[check]
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (
        f"{check} of {where}: manual shape {got.shape} vs autograd shape {want.shape}"
    )
    err = np.abs(got - want)
    bound = tol["atol"] + tol["rtol"] * np.abs(want).max(initial=0.0)
    if not err.max(initial=0.0) <= bound:
        i = np.unravel_index(np.argmax(np.where(np.isnan(err), np.inf, err)), err.shape)
        raise AssertionError(
            f"{check} of {where} at index {tuple(int(k) for k in i)}: manual {got[i]!r} vs "
            f"autograd {want[i]!r} (|diff| {err[i]:.3e} > {bound:.3e})"
        )


def _autograd(loss_fn: Callable, x: torch.Tensor, t: torch.Tensor) -> tuple[float, np.ndarray]:
    x = x.detach().clone().requires_grad_(True)
    value = loss_fn(x, t)
    (grad,) = torch.autograd.grad(value, x)
    return value.item(), grad.numpy()


def _manual(loss_fn: Any, x: torch.Tensor, t: torch.Tensor) -> tuple[float, np.ndarray]:
    """The converted loss on NumPy copies, with every warning an error (no overflow)."""
    manual = convert_loss(loss_fn)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return manual(x.detach().numpy().copy(), target_to_numpy(manual, t))


# --- data builders (seeded, float64) -------------------------------------------------


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(g: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(shape, generator=g, dtype=torch.float64)


def rand(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(shape, generator=g, dtype=torch.float64)


def classes(g: torch.Generator, C: int, *shape: int) -> torch.Tensor:
    return torch.randint(0, C, shape, generator=g)


def probs(g: torch.Generator, *shape: int, dim: int = 1) -> torch.Tensor:
    return torch.softmax(randn(g, *shape), dim=dim)


def w64(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# --- the table of cases --------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    loss: Callable[[], Any]  # builds the torch loss (a module or a function)
    data: Callable[[torch.Generator], Data]


def _regression(g: torch.Generator) -> Data:
    return randn(g, 5, 4, scale=2.0), randn(g, 5, 4)


def _with_ties(g: torch.Generator) -> Data:
    """d = y − t exactly 0, ±0.5, ±1, ±2: the kinks of L1, SmoothL1 and Huber."""
    t = randn(g, 2, 5)
    d = w64(0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0, 0.0, 3.0, -0.25).reshape(2, 5)
    return t + d, t


def _ce_targets(g: torch.Generator) -> Data:
    return randn(g, 6, 4), torch.tensor([0, 3, -100, 1, -100, 2])


def _ce_kdim(g: torch.Generator) -> Data:
    t = classes(g, 3, 2, 4, 5)
    t[0, 1, :2] = -100
    return randn(g, 2, 3, 4, 5), t


def _bce_edges(g: torch.Generator) -> Data:
    p = w64(0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1e-50, 1 - 1e-16, 0.5).reshape(3, 3)
    t = w64(0.0, 1.0, 0.5, 0.0, 1.0, 0.5, 1.0, 0.0, 0.25).reshape(3, 3)
    return p, t


def _huge_logits(g: torch.Generator) -> Data:
    x = randn(g, 4, 5, scale=1e3)
    x[0] = w64(1e3, -1e3, 1e3, -1e3, 0.0)
    return x, classes(g, 5, 4)


def _huge_binary_logits(g: torch.Generator) -> Data:
    x = randn(g, 4, 5, scale=1e3)
    x[0] = w64(1e3, -1e3, 745.0, -745.0, 0.0)
    return x, rand(g, 4, 5).round()


CASES = [
    # regression
    Case("mse-mean", nn.MSELoss, _regression),
    Case("mse-sum", lambda: nn.MSELoss(reduction="sum"), _regression),
    Case("mse-0d", nn.MSELoss, lambda g: (randn(g), randn(g))),
    Case("mse-exact", nn.MSELoss, lambda g: (w64(1.0, 2.0), w64(1.0, 2.0))),
    Case("l1-mean-kinks", nn.L1Loss, _with_ties),
    Case("l1-sum", lambda: nn.L1Loss(reduction="sum"), _regression),
    Case("smooth_l1-default-kinks", nn.SmoothL1Loss, _with_ties),
    Case("smooth_l1-beta0.5-kinks", lambda: nn.SmoothL1Loss(beta=0.5), _with_ties),
    Case("smooth_l1-beta0-is-l1", lambda: nn.SmoothL1Loss(beta=0.0), _with_ties),
    Case("smooth_l1-beta2-sum", lambda: nn.SmoothL1Loss(reduction="sum", beta=2.0), _regression),
    Case("huber-default-kinks", nn.HuberLoss, _with_ties),
    Case("huber-delta2-kinks", lambda: nn.HuberLoss(delta=2.0), _with_ties),
    Case("huber-delta0.3-sum", lambda: nn.HuberLoss(reduction="sum", delta=0.3), _regression),
    Case("mse-huge", nn.MSELoss, lambda g: (randn(g, 3, 4, scale=1e3), randn(g, 3, 4))),
    # cross-entropy: index targets
    Case("ce-mean", nn.CrossEntropyLoss, lambda g: (randn(g, 6, 4), classes(g, 4, 6))),
    Case(
        "ce-sum",
        lambda: nn.CrossEntropyLoss(reduction="sum"),
        lambda g: (randn(g, 6, 4), classes(g, 4, 6)),
    ),
    Case(
        "ce-weight",
        lambda: nn.CrossEntropyLoss(weight=w64(0.2, 1.0, 3.0, 0.5)),
        lambda g: (randn(g, 6, 4), classes(g, 4, 6)),
    ),
    Case("ce-ignore-some", nn.CrossEntropyLoss, _ce_targets),
    Case(
        "ce-ignore-in-range",
        lambda: nn.CrossEntropyLoss(ignore_index=1),
        lambda g: (randn(g, 6, 4), torch.tensor([0, 1, 1, 2, 3, 1])),
    ),
    Case(
        "ce-weight-ignore-mean",
        lambda: nn.CrossEntropyLoss(weight=w64(0.2, 1.0, 3.0, 0.5)),
        _ce_targets,
    ),
    Case("ce-smoothing", lambda: nn.CrossEntropyLoss(label_smoothing=0.1), _ce_targets),
    Case("ce-smoothing-1", lambda: nn.CrossEntropyLoss(label_smoothing=1.0), _ce_targets),
    Case(
        "ce-weight-ignore-smoothing-mean",
        lambda: nn.CrossEntropyLoss(weight=w64(0.2, 1.0, 3.0, 0.5), label_smoothing=0.3),
        _ce_targets,
    ),
    Case(
        "ce-weight-ignore-smoothing-sum",
        lambda: nn.CrossEntropyLoss(
            weight=w64(0.2, 1.0, 3.0, 0.5), label_smoothing=0.3, reduction="sum"
        ),
        _ce_targets,
    ),
    Case("ce-kdim", nn.CrossEntropyLoss, lambda g: (randn(g, 2, 3, 4), classes(g, 3, 2, 4))),
    Case(
        "ce-kdim2-weight-ignore-smoothing",
        lambda: nn.CrossEntropyLoss(weight=w64(1.0, 2.0, 0.5), label_smoothing=0.2),
        _ce_kdim,
    ),
    Case(
        "ce-unbatched",
        nn.CrossEntropyLoss,
        lambda g: (randn(g, 5), torch.tensor(3)),
    ),
    Case(
        "ce-unbatched-weight-smoothing",
        lambda: nn.CrossEntropyLoss(weight=w64(1.0, 2.0, 0.5, 4.0, 1.5), label_smoothing=0.2),
        lambda g: (randn(g, 5), torch.tensor(3)),
    ),
    Case(
        "ce-uint8-targets",
        nn.CrossEntropyLoss,
        lambda g: (randn(g, 6, 4), classes(g, 4, 6).to(torch.uint8)),
    ),
    Case("ce-one-class", nn.CrossEntropyLoss, lambda g: (randn(g, 3, 1), torch.zeros(3).long())),
    Case("ce-huge-logits", nn.CrossEntropyLoss, _huge_logits),
    Case(
        "ce-huge-logits-smoothing-weight",
        lambda: nn.CrossEntropyLoss(weight=w64(1, 2, 3, 4, 5), label_smoothing=0.2),
        _huge_logits,
    ),
    # cross-entropy: probability targets
    Case("ce-prob", nn.CrossEntropyLoss, lambda g: (randn(g, 5, 4), probs(g, 5, 4))),
    Case(
        "ce-prob-sum",
        lambda: nn.CrossEntropyLoss(reduction="sum"),
        lambda g: (randn(g, 5, 4), probs(g, 5, 4)),
    ),
    Case(
        "ce-prob-weight-smoothing",
        lambda: nn.CrossEntropyLoss(weight=w64(0.2, 1.0, 3.0, 0.5), label_smoothing=0.25),
        lambda g: (randn(g, 5, 4), probs(g, 5, 4)),
    ),
    Case(
        "ce-prob-kdim-weight-smoothing",
        lambda: nn.CrossEntropyLoss(weight=w64(0.2, 1.0, 3.0), label_smoothing=0.1),
        lambda g: (randn(g, 2, 3, 4, 2), probs(g, 2, 3, 4, 2)),
    ),
    Case(
        "ce-prob-unnormalised",
        nn.CrossEntropyLoss,
        lambda g: (randn(g, 5, 4), rand(g, 5, 4) * 3),
    ),
    Case(
        "ce-prob-unbatched",
        lambda: nn.CrossEntropyLoss(label_smoothing=0.1),
        lambda g: (randn(g, 4), probs(g, 4, dim=0)),
    ),
    Case(
        "ce-prob-huge-logits",
        nn.CrossEntropyLoss,
        lambda g: (randn(g, 4, 5, scale=1e3), probs(g, 4, 5)),
    ),
    # nll
    Case("nll-mean", nn.NLLLoss, lambda g: (randn(g, 6, 4), classes(g, 4, 6))),
    Case(
        "nll-weight-ignore",
        lambda: nn.NLLLoss(weight=w64(0.2, 1.0, 3.0, 0.5)),
        _ce_targets,
    ),
    Case(
        "nll-weight-ignore-sum",
        lambda: nn.NLLLoss(weight=w64(0.2, 1.0, 3.0, 0.5), reduction="sum"),
        _ce_targets,
    ),
    Case("nll-kdim", lambda: nn.NLLLoss(weight=w64(1.0, 2.0, 0.5)), _ce_kdim),
    Case("nll-unbatched", nn.NLLLoss, lambda g: (randn(g, 5), torch.tensor(4))),
    Case(
        "nll-log-zero-elsewhere",
        nn.NLLLoss,
        lambda g: (
            torch.log(w64(1.0, 0.0, 0.0, 0.5, 0.5, 0.0).reshape(2, 3)),
            torch.tensor([0, 1]),
        ),
    ),
    # bce
    Case("bce-mean", nn.BCELoss, lambda g: (rand(g, 5, 4), rand(g, 5, 4))),
    Case(
        "bce-sum-weight-(4,)",
        lambda: nn.BCELoss(weight=w64(0.5, 1.0, 2.0, 0.0), reduction="sum"),
        lambda g: (rand(g, 5, 4), rand(g, 5, 4)),
    ),
    Case(
        "bce-weight-(5,1)",
        lambda: nn.BCELoss(weight=rand(_g(9), 5, 1)),
        lambda g: (rand(g, 5, 4), rand(g, 5, 4).round()),
    ),
    Case("bce-clamp-at-0-and-1", nn.BCELoss, _bce_edges),
    Case("bce-clamp-sum", lambda: nn.BCELoss(reduction="sum"), _bce_edges),
    # bce with logits
    Case("bcel-mean", nn.BCEWithLogitsLoss, lambda g: (randn(g, 5, 4), rand(g, 5, 4))),
    Case(
        "bcel-pos_weight-(4,)",
        lambda: nn.BCEWithLogitsLoss(pos_weight=w64(0.5, 1.0, 2.0, 3.0)),
        lambda g: (randn(g, 5, 4), rand(g, 5, 4).round()),
    ),
    Case(
        "bcel-pos_weight-(5,1)-weight-(4,)-sum",
        lambda: nn.BCEWithLogitsLoss(
            weight=w64(0.5, 1.0, 2.0, 3.0), pos_weight=rand(_g(9), 5, 1) * 3, reduction="sum"
        ),
        lambda g: (randn(g, 5, 4), rand(g, 5, 4)),
    ),
    Case(
        "bcel-kdim-pos_weight-last-dim",
        lambda: nn.BCEWithLogitsLoss(pos_weight=w64(2.0, 0.5)),
        lambda g: (randn(g, 2, 3, 2), rand(g, 2, 3, 2)),
    ),
    Case("bcel-huge-logits", nn.BCEWithLogitsLoss, _huge_binary_logits),
    Case(
        "bcel-huge-logits-pos_weight",
        lambda: nn.BCEWithLogitsLoss(pos_weight=w64(1.0, 2.0, 3.0, 4.0, 5.0)),
        _huge_binary_logits,
    ),
    Case(
        "bcel-soft-targets-outside", nn.BCEWithLogitsLoss, lambda g: (randn(g, 3), w64(-1, 2, 0.5))
    ),
    # functional forms, plain and in partial
    Case("F.mse_loss", lambda: F.mse_loss, _regression),
    Case("F.l1_loss-sum", lambda: functools.partial(F.l1_loss, reduction="sum"), _with_ties),
    Case(
        "F.smooth_l1_loss-beta", lambda: functools.partial(F.smooth_l1_loss, beta=0.5), _with_ties
    ),
    Case("F.huber_loss-delta", lambda: functools.partial(F.huber_loss, delta=0.5), _with_ties),
    Case(
        "F.cross_entropy-smoothing-weight",
        lambda: functools.partial(
            F.cross_entropy, weight=w64(0.2, 1.0, 3.0, 0.5), label_smoothing=0.1
        ),
        _ce_targets,
    ),
    Case(
        "F.nll_loss-ignore",
        lambda: functools.partial(F.nll_loss, ignore_index=3, reduction="sum"),
        lambda g: (randn(g, 6, 4), torch.tensor([0, 3, 3, 1, 2, 3])),
    ),
    Case("F.binary_cross_entropy", lambda: F.binary_cross_entropy, _bce_edges),
    Case(
        "F.bce_with_logits-pos_weight",
        lambda: functools.partial(
            F.binary_cross_entropy_with_logits, pos_weight=w64(0.5, 1.0, 2.0, 3.0)
        ),
        lambda g: (randn(g, 5, 4), rand(g, 5, 4)),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_value_and_gradient_match_autograd(case: Case) -> None:
    loss_fn = case.loss()
    x, t = case.data(_g())
    value_ref, grad_ref = _autograd(loss_fn, x, t)
    value, grad = _manual(loss_fn, x, t)
    assert isinstance(value, float), f"value of {case.id}: expected a float, got {type(value)}"
    assert grad.dtype == np.float64, f"grad of {case.id}: expected float64, got {grad.dtype}"
    _assert_close("value", case.id, value, value_ref)
    _assert_close("grad", case.id, grad, grad_ref)


def test_half_squared_error_reproduces_seed_003() -> None:
    """E_total = ½(0.01 − out_o1)² + ½(0.99 − out_o2)² = 0.298371109; ∂E/∂out_o1 = 0.74136507."""
    out, target = np.array([0.75136507, 0.772928465]), np.array([0.01, 0.99])
    value, grad = L.HalfSquaredError()(out, target)
    assert round(value, 9) == 0.298371109, f"E_total: got {value!r}, notes 0.298371109"
    assert np.round(grad, 9).tolist() == [0.74136507, -0.217071535], f"∂E/∂out: got {grad!r}"


def test_half_squared_error_is_half_the_summed_mse() -> None:
    x, t = randn(_g(), 3, 4), randn(_g(1), 3, 4)
    value_ref, grad_ref = _autograd(lambda a, b: 0.5 * F.mse_loss(a, b, reduction="sum"), x, t)
    value, grad = L.HalfSquaredError()(x.numpy(), t.numpy())
    _assert_close("value", "half_squared_error", value, value_ref)
    _assert_close("grad", "half_squared_error", grad, grad_ref)


# --- properties ----------------------------------------------------------------------

_ELEMENTWISE = ("mse", "l1", "smooth_l1", "huber", "bce", "bcel")


@dataclass(frozen=True)
class ElementwiseSpec:
    loss: str
    shape: tuple[int, ...]
    reduction: str
    param: float  # beta for smooth_l1, delta for huber
    weight_shape: tuple[int, ...] | None  # bce / bcel
    pos_weight_shape: tuple[int, ...] | None  # bcel
    scale: float
    seed: int


@st.composite
def elementwise_specs(draw: st.DrawFn, *, max_dims: int = 3, max_size: int = 4) -> ElementwiseSpec:
    loss = draw(st.sampled_from(_ELEMENTWISE))
    shape = tuple(draw(st.lists(st.integers(1, max_size), min_size=0, max_size=max_dims)))

    def broadcastable() -> tuple[int, ...] | None:
        if not shape or not draw(st.booleans()):
            return None
        k = draw(st.integers(1, len(shape)))
        return tuple(n if draw(st.booleans()) else 1 for n in shape[-k:])

    return ElementwiseSpec(
        loss=loss,
        shape=shape,
        reduction=draw(st.sampled_from(("mean", "sum"))),
        param=draw(st.sampled_from((0.0, 0.5, 1.0, 2.0)))
        if loss == "smooth_l1"
        else draw(st.sampled_from((0.25, 1.0, 3.0))),
        weight_shape=broadcastable() if loss in ("bce", "bcel") else None,
        pos_weight_shape=broadcastable() if loss == "bcel" else None,
        scale=draw(st.sampled_from((1.0, 10.0, 1e3))),
        seed=draw(st.integers(0, 2**16)),
    )


def _build_elementwise(spec: ElementwiseSpec) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    g = _g(spec.seed)
    weight = None if spec.weight_shape is None else rand(g, *spec.weight_shape) * 2
    pos_weight = None if spec.pos_weight_shape is None else rand(g, *spec.pos_weight_shape) * 3
    r = spec.reduction
    module = {
        "mse": lambda: nn.MSELoss(reduction=r),
        "l1": lambda: nn.L1Loss(reduction=r),
        "smooth_l1": lambda: nn.SmoothL1Loss(reduction=r, beta=spec.param),
        "huber": lambda: nn.HuberLoss(reduction=r, delta=spec.param),
        "bce": lambda: nn.BCELoss(weight=weight, reduction=r),
        "bcel": lambda: nn.BCEWithLogitsLoss(weight=weight, reduction=r, pos_weight=pos_weight),
    }[spec.loss]()
    if spec.loss == "bce":
        return module, rand(g, *spec.shape), rand(g, *spec.shape)
    return module, randn(g, *spec.shape, scale=spec.scale), rand(g, *spec.shape)


@settings(max_examples=60, deadline=None)
@given(elementwise_specs())
def test_property_elementwise_losses_match_autograd(spec: ElementwiseSpec) -> None:
    module, x, t = _build_elementwise(spec)
    value_ref, grad_ref = _autograd(module, x, t)
    value, grad = _manual(module, x, t)
    _assert_close("value", repr(spec), value, value_ref)
    _assert_close("grad", repr(spec), grad, grad_ref)


@dataclass(frozen=True)
class ClassSpec:
    loss: str  # "ce" | "nll"
    shape: tuple[int, ...]  # input shape: (C,), (N, C) or (N, C, d1, ...)
    reduction: str
    weighted: bool
    ignore_index: int
    ignore_fraction: float
    label_smoothing: float
    probabilities: bool
    scale: float
    seed: int


@st.composite
def class_specs(draw: st.DrawFn, *, max_classes: int = 5, max_batch: int = 4) -> ClassSpec:
    loss = draw(st.sampled_from(("ce", "nll")))
    C = draw(st.integers(1, max_classes))
    layout = draw(st.sampled_from(("unbatched", "batched", "kdim")))
    if layout == "unbatched":
        shape: tuple[int, ...] = (C,)
    else:
        extra = (
            draw(st.lists(st.integers(1, 3), min_size=1, max_size=2)) if layout == "kdim" else []
        )
        shape = (draw(st.integers(1, max_batch)), C, *extra)
    probabilities = loss == "ce" and draw(st.booleans())
    ignore_index = -100 if probabilities else draw(st.sampled_from((-100, -1, 0, C - 1)))
    return ClassSpec(
        loss=loss,
        shape=shape,
        reduction=draw(st.sampled_from(("mean", "sum"))),
        weighted=draw(st.booleans()),
        ignore_index=ignore_index,
        ignore_fraction=0.0 if probabilities else draw(st.sampled_from((0.0, 0.3, 1.0))),
        label_smoothing=draw(st.sampled_from((0.0, 0.1, 0.5, 1.0))) if loss == "ce" else 0.0,
        probabilities=probabilities,
        scale=draw(st.sampled_from((1.0, 10.0, 1e3))),
        seed=draw(st.integers(0, 2**16)),
    )


def _build_class(spec: ClassSpec) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    g = _g(spec.seed)
    axis = 0 if len(spec.shape) == 1 else 1
    C = spec.shape[axis]
    weight = rand(g, C) * 2 if spec.weighted else None
    x = randn(g, *spec.shape, scale=spec.scale)
    if spec.probabilities:
        t = probs(g, *spec.shape, dim=axis)
    else:
        index_shape = () if axis == 0 else (spec.shape[0], *spec.shape[2:])
        t = torch.randint(0, C, index_shape, generator=g)
        ignored = torch.rand(index_shape, generator=g, dtype=torch.float64) < spec.ignore_fraction
        t = torch.where(ignored, torch.tensor(spec.ignore_index), t)
    if spec.loss == "nll":
        x = torch.log_softmax(x, dim=axis)
        return nn.NLLLoss(weight, ignore_index=spec.ignore_index, reduction=spec.reduction), x, t
    module = nn.CrossEntropyLoss(
        weight,
        ignore_index=spec.ignore_index,
        reduction=spec.reduction,
        label_smoothing=spec.label_smoothing,
    )
    return module, x, t


@settings(max_examples=80, deadline=None)
@given(class_specs())
def test_property_class_losses_match_autograd_or_refuse_nan(spec: ClassSpec) -> None:
    """Equal to autograd; where torch's value is NaN (mean over nothing) we refuse instead."""
    module, x, t = _build_class(spec)
    value_ref, grad_ref = _autograd(module, x, t)
    if np.isnan(value_ref):
        with pytest.raises(ValueError, match="reduction='mean'"):
            _manual(module, x, t)
        return
    value, grad = _manual(module, x, t)
    _assert_close("value", repr(spec), value, value_ref)
    _assert_close("grad", repr(spec), grad, grad_ref)


# --- errors: declared as data --------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    id: str
    loss: Callable[[], L.Loss]
    y: Any
    target: Any
    match: str
    call_only: bool = False  # the check needs y's values, not just its shape


def _y(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(shape)


def _p(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(size=shape)


_I = np.array  # class-index targets, int64 by default

ERRORS = [
    Refusal("mse-broadcast-target", L.MSELoss, _y(3, 4), _y(1, 4), r"input's shape \(3, 4\)"),
    Refusal("mse-nan-target", L.MSELoss, _y(2), np.array([0.0, np.nan]), "finite target"),
    Refusal("l1-inf-target", L.L1Loss, _y(2), np.array([np.inf, 0.0]), "finite target"),
    Refusal("mse-string-target", L.MSELoss, _y(2), np.array(["a", "b"]), "real numbers"),
    Refusal("huber-empty-mean", L.HuberLoss, _y(0, 3), _y(0, 3), "empty input"),
    Refusal("half-shape", L.HalfSquaredError, _y(2), _y(3), r"input's shape \(2,\)"),
    Refusal("ce-0d-input", L.CrossEntropyLoss, np.float64(1.0), _I(0), r"got shape \(\)"),
    Refusal("ce-no-classes", L.CrossEntropyLoss, _y(3, 0), _I([0, 0, 0]), "at least one class"),
    Refusal("ce-batch", L.CrossEntropyLoss, _y(3, 4), _I([0, 1]), "target batch size 3"),
    Refusal(
        "ce-kdim-shape",
        L.CrossEntropyLoss,
        _y(2, 3, 4),
        _I([[0, 1, 2]] * 2),
        r"class indices of shape \(2, 4\)",
    ),
    Refusal("ce-unbatched-shape", L.CrossEntropyLoss, _y(4), _I([0, 1]), r"shape \(\)"),
    Refusal(
        "ce-unbatched-target-(1,)",
        L.CrossEntropyLoss,
        _y(4),
        _I([1]),
        r"indices of shape \(\).*got target shape \(1,\)",
    ),
    Refusal("ce-float-indices", L.CrossEntropyLoss, _y(3, 4), np.array([0.0, 1.0, 2.0]), "integer"),
    Refusal("ce-bool-indices", L.CrossEntropyLoss, _y(2, 4), np.array([True, False]), "dtype bool"),
    Refusal("ce-index-too-big", L.CrossEntropyLoss, _y(3, 4), _I([0, 4, 1]), r"\[0, 4\).*got 4"),
    Refusal("ce-index-negative", L.CrossEntropyLoss, _y(3, 4), _I([0, -1, 1]), "got -1 at"),
    Refusal(
        "ce-all-ignored-mean",
        L.CrossEntropyLoss,
        _y(2, 4),
        _I([-100, -100]),
        "ignore_index=-100.*NaN",
    ),
    Refusal(
        "ce-smoothing-all-ignored-mean",
        lambda: L.CrossEntropyLoss(label_smoothing=0.1),
        _y(2, 4),
        _I([-100, -100]),
        "2 of 2 targets ignored",
    ),
    Refusal(
        "nll-zero-weight-mean",
        lambda: L.NLLLoss(weight=np.array([0.0, 1.0])),
        _y(2, 2),
        _I([0, 0]),
        "total weight",
    ),
    Refusal(
        "ce-weight-length",
        lambda: L.CrossEntropyLoss(weight=np.ones(3)),
        _y(2, 4),
        _I([0, 1]),
        r"weight of shape \(4,\).*\(3,\)",
    ),
    Refusal("ce-prob-int", L.CrossEntropyLoss, _y(2, 3), np.ones((2, 3), int), "must be float"),
    Refusal(
        "ce-prob-ignore_index",
        lambda: L.CrossEntropyLoss(ignore_index=0),
        _y(2, 3),
        _p(2, 3),
        "ignore_index is not supported",
    ),
    Refusal(
        "ce-prob-nan",
        L.CrossEntropyLoss,
        _y(1, 2),
        np.array([[0.5, np.nan]]),
        "finite probability target",
    ),
    Refusal("ce-prob-empty-mean", L.CrossEntropyLoss, _y(0, 3), _p(0, 3), "empty input"),
    Refusal("nll-prob-shape", L.NLLLoss, _y(2, 3), _p(2, 3), r"class indices of shape \(2,\)"),
    Refusal("bce-input-above-1", L.BCELoss, _p(2) + 1, _p(2), r"inputs in \[0, 1\]", True),
    Refusal("bce-input-nan", L.BCELoss, np.array([np.nan]), _p(1), r"inputs in \[0, 1\]", True),
    Refusal("bce-target-above-1", L.BCELoss, _p(2), np.array([0.5, 1.5]), r"targets in \[0, 1\]"),
    Refusal(
        "bce-weight-grows-shape",
        lambda: L.BCELoss(weight=np.ones((2, 3, 4))),
        _p(3, 4),
        _p(3, 4),
        r"weight broadcastable to the input's shape \(3, 4\)",
    ),
    Refusal(
        "bcel-pos_weight-length",
        lambda: L.BCEWithLogitsLoss(pos_weight=np.ones(5)),
        _y(3, 4),
        _p(3, 4),
        r"pos_weight broadcastable.*\(5,\)",
    ),
    Refusal("bcel-nan-target", L.BCEWithLogitsLoss, _y(2), np.array([np.nan, 0]), "finite"),
]


@pytest.mark.parametrize("case", ERRORS, ids=[c.id for c in ERRORS])
def test_refusals_raise_value_error_before_arithmetic(case: Refusal) -> None:
    loss = case.loss()
    if not case.call_only:
        with pytest.raises(ValueError, match=case.match):
            loss.check(np.shape(case.y), case.target)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=case.match):
            loss(case.y, case.target)


CONSTRUCTOR_ERRORS = [
    ("reduction-none", lambda: L.CrossEntropyLoss(reduction="none"), "no scalar"),
    ("reduction-typo", lambda: L.CrossEntropyLoss(reduction="avg"), "'mean' or 'sum'"),
    ("smooth_l1-negative-beta", lambda: L.SmoothL1Loss(beta=-1.0), "beta >= 0"),
    ("huber-zero-delta", lambda: L.HuberLoss(delta=0.0), "delta > 0"),
    ("ce-smoothing-negative", lambda: L.CrossEntropyLoss(label_smoothing=-0.1), r"\[0, 1\]"),
    ("ce-smoothing-above-1", lambda: L.CrossEntropyLoss(label_smoothing=1.5), r"\[0, 1\]"),
    ("ce-weight-2d", lambda: L.CrossEntropyLoss(weight=np.ones((1, 4))), "1 dimension"),
    ("nll-weight-nan", lambda: L.NLLLoss(weight=np.array([1.0, np.nan])), "finite weight"),
    ("ce-ignore-float", lambda: L.CrossEntropyLoss(ignore_index=1.5), "integer ignore_index"),
    ("bcel-pos_weight-str", lambda: L.BCEWithLogitsLoss(pos_weight="a"), "real numbers"),
    ("unknown-name", lambda: L.get_loss("kl_div"), "known losses: binary_cross_entropy"),
]


@pytest.mark.parametrize(
    ("make", "match"), [c[1:] for c in CONSTRUCTOR_ERRORS], ids=[c[0] for c in CONSTRUCTOR_ERRORS]
)
def test_constructor_refusals(make: Callable[[], Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


class _MyMSE(nn.MSELoss):
    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().forward(input, target) * 2


UNSUPPORTED = [
    ("module-reduction-none", lambda: nn.NLLLoss(reduction="none"), "NLLLoss.*reduction='none'"),
    (
        "ce-reduction-none",
        lambda: nn.CrossEntropyLoss(reduction="none"),
        "CrossEntropyLoss.*reduction='none'",
    ),
    (
        "partial-reduction-none",
        lambda: functools.partial(F.cross_entropy, reduction="none"),
        "F.cross_entropy.*reduction='none'",
    ),
    (
        "partial-size_average",
        lambda: functools.partial(F.mse_loss, size_average=False),
        "F.mse_loss.*deprecated option size_average",
    ),
    (
        "partial-reduce",
        lambda: functools.partial(F.nll_loss, reduce=False),
        "deprecated option reduce=False",
    ),
    (
        "partial-mse-weight",
        lambda: functools.partial(F.mse_loss, weight=torch.ones(3)),
        "F.mse_loss: option weight=.*supported options: reduction",
    ),
    ("partial-unknown-keyword", lambda: functools.partial(F.cross_entropy, foo=1), "cannot bind"),
    (
        "partial-fixes-input",
        lambda: functools.partial(F.cross_entropy, torch.zeros(3)),
        "fixes 'input'",
    ),
    ("other-module", nn.KLDivLoss, "KLDivLoss.*supported: nn.MSELoss"),
    ("subclass", _MyMSE, "_MyMSE: this loss is not supported"),
    ("other-function", lambda: F.kl_div, "kl_div.*F.cross_entropy"),
    ("lambda", lambda: lambda y, t: (y - t).sum(), "<lambda>"),
    (
        "partial-of-other",
        lambda: functools.partial(F.kl_div, reduction="sum"),
        r"functools.partial\(kl_div\)",
    ),
]


@pytest.mark.parametrize(
    ("make", "match"), [c[1:] for c in UNSUPPORTED], ids=[c[0] for c in UNSUPPORTED]
)
def test_unsupported_losses_and_options(make: Callable[[], Any], match: str) -> None:
    with pytest.raises(UnsupportedModuleError, match=match) as info:
        convert_loss(make())
    assert isinstance(info.value, NotImplementedError), (
        "UnsupportedModuleError is not a NotImplementedError"
    )


# --- conversion: functional = module, weights copied ---------------------------------

FUNCTIONAL_EQUALS_MODULE = [
    ("mse", F.mse_loss, nn.MSELoss()),
    ("l1-sum", functools.partial(F.l1_loss, reduction="sum"), nn.L1Loss(reduction="sum")),
    ("smooth_l1", functools.partial(F.smooth_l1_loss, beta=0.3), nn.SmoothL1Loss(beta=0.3)),
    ("huber", functools.partial(F.huber_loss, delta=2.0), nn.HuberLoss(delta=2.0)),
    (
        "ce-all-options",
        functools.partial(
            F.cross_entropy,
            weight=w64(1, 2, 3),
            ignore_index=2,
            reduction="sum",
            label_smoothing=0.1,
        ),
        nn.CrossEntropyLoss(w64(1, 2, 3), ignore_index=2, reduction="sum", label_smoothing=0.1),
    ),
    (
        "ce-explicit-defaults",
        functools.partial(F.cross_entropy, size_average=None, reduce=None, weight=None),
        nn.CrossEntropyLoss(),
    ),
    ("nll", functools.partial(F.nll_loss, weight=w64(1, 2, 3)), nn.NLLLoss(w64(1, 2, 3))),
    (
        "bce",
        functools.partial(F.binary_cross_entropy, weight=w64(1, 2, 3)),
        nn.BCELoss(w64(1, 2, 3)),
    ),
    (
        "bcel",
        functools.partial(
            F.binary_cross_entropy_with_logits, weight=w64(1, 2, 3), pos_weight=w64(3, 2, 1)
        ),
        nn.BCEWithLogitsLoss(w64(1, 2, 3), pos_weight=w64(3, 2, 1)),
    ),
]


@pytest.mark.parametrize(
    ("functional", "module"),
    [c[1:] for c in FUNCTIONAL_EQUALS_MODULE],
    ids=[c[0] for c in FUNCTIONAL_EQUALS_MODULE],
)
def test_functional_conversion_equals_module_conversion(functional: Any, module: Any) -> None:
    a, b = convert_loss(functional), convert_loss(module)
    assert type(a) is type(b), f"classes differ: {type(a).__name__} vs {type(b).__name__}"
    assert repr(a) == repr(b), f"options differ: {a!r} vs {b!r}"
    g = _g(3)
    x = rand(g, 4, 3)  # probabilities, so that every loss here accepts it
    t = classes(g, 3, 4) if isinstance(a, L.CrossEntropyLoss | L.NLLLoss) else rand(g, 4, 3)
    va, ga = a(x.numpy(), target_to_numpy(a, t))
    vb, gb = b(x.numpy(), target_to_numpy(b, t))
    assert va == vb, f"values differ: functional {va!r} vs module {vb!r}"
    assert np.array_equal(ga, gb), f"gradients differ: functional {ga!r} vs module {gb!r}"


def test_conversion_copies_weights_and_leaves_them_alone() -> None:
    weight = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float32)
    module = nn.CrossEntropyLoss(weight=weight)
    manual = convert_loss(module)
    assert manual.weight.dtype == np.float64, f"weight dtype {manual.weight.dtype}"
    weight.mul_(10)  # a later change to torch's tensor does not reach the copy
    assert manual.weight.tolist() == [1.0, 2.0, 3.0], f"copy changed: {manual.weight}"
    manual(_y(2, 3), _I([0, 2]))
    assert weight.tolist() == [10.0, 20.0, 30.0], f"torch's weight changed: {weight}"


def test_manual_loss_passes_through_conversion() -> None:
    loss = L.CrossEntropyLoss(label_smoothing=0.2)
    assert convert_loss(loss) is loss, "a manual_bp loss should convert to itself"


@pytest.mark.parametrize(
    ("loss", "target", "dtype"),
    [
        (L.CrossEntropyLoss(), torch.tensor([1, 2], dtype=torch.int32), np.int64),
        (L.CrossEntropyLoss(), torch.rand(2, 3), np.float64),
        (L.NLLLoss(), torch.tensor([1, 2], dtype=torch.uint8), np.int64),
        (L.MSELoss(), torch.tensor([1, 2]), np.float64),
        (L.BCELoss(), torch.rand(2, dtype=torch.float16), np.float64),
    ],
    ids=["ce-int32", "ce-probabilities", "nll-uint8", "mse-int", "bce-half"],
)
def test_target_to_numpy_dtypes(loss: L.Loss, target: torch.Tensor, dtype: type) -> None:
    got = target_to_numpy(loss, target)
    assert got.dtype == dtype, f"target_to_numpy({loss!r}): dtype {got.dtype}, expected {dtype}"
    assert got.tolist() == target.to(torch.float64).tolist(), f"values changed: {got}"


def test_losses_table_lists_every_loss() -> None:
    expected = {
        "mse_loss",
        "l1_loss",
        "smooth_l1_loss",
        "huber_loss",
        "cross_entropy",
        "nll_loss",
        "binary_cross_entropy",
        "binary_cross_entropy_with_logits",
        "half_squared_error",
        "multilabel_margin_loss",
        "ctc_loss",
    }
    assert set(L.LOSSES) == expected, f"LOSSES keys {sorted(L.LOSSES)} vs {sorted(expected)}"
    assert repr(L.get_loss("huber_loss", delta=2.0)) == "HuberLoss(reduction='mean', delta=2.0)"
