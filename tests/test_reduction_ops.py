"""Reductions (amax/amin, max/min over a dim, logsumexp, var/std, vector norms) and the
along-a-dim ops softmin and GLU against torch.autograd in float64: a table of named cases
(dims, keepdim, corrections, every p, exact ties and zeros with integer-valued inputs), the
tie masks, refusals as data, a property over random shapes and dims, and planted bugs."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _layer_check import check_layer
from hypothesis import given
from hypothesis import strategies as st

from manual_bp.network import INPUT, Network, Node
from manual_bp.ops.activations import PReLU, get_activation
from manual_bp.ops.arithmetic import Mul, Where
from manual_bp.ops.base import Layer
from manual_bp.ops.graph import Constant, Select
from manual_bp.ops.reductions import Amax, Amin, LogSumExp, MaxDim, MinDim, Norm, Std, Var
from manual_bp.ops.softmax import GLU, Softmin

Gen = torch.Generator


def _np(tensors: list[torch.Tensor]) -> list[np.ndarray]:
    """The shared layer check (tests/_layer_check.py) takes NumPy inputs."""
    return [t.numpy().copy() for t in tensors]


INF = math.inf


def randn(*shape: int) -> Callable[[Gen], torch.Tensor]:
    return lambda g: torch.randn(shape, generator=g, dtype=torch.float64)


def integers(lo: int, hi: int, *shape: int) -> Callable[[Gen], torch.Tensor]:
    """Integer-valued floats: exact ties, zeros and constant slices."""
    return lambda g: torch.randint(lo, hi + 1, shape, generator=g).double()


def const(values: Any) -> Callable[[Gen], torch.Tensor]:
    return lambda g: torch.tensor(values, dtype=torch.float64)


@dataclass(frozen=True)
class Case:
    id: str
    layer: Callable[[], Layer]
    fn: Callable[[torch.Tensor], Any]
    input: Callable[[Gen], torch.Tensor]
    seed: int = 0


def amax(dims, keepdim=False):
    return lambda: Amax(dims, keepdim), lambda x: torch.amax(x, dims, keepdim)


def amin(dims, keepdim=False):
    return lambda: Amin(dims, keepdim), lambda x: torch.amin(x, dims, keepdim)


def norm(p, dims=None, keepdim=False):
    return lambda: Norm(p, dims, keepdim), lambda x: torch.linalg.vector_norm(x, p, dims, keepdim)


def var(dims=None, correction=1, keepdim=False, cls=Var, fn=torch.var):
    return (
        lambda: cls(dims, correction, keepdim),
        lambda x: fn(x, dims, correction=correction, keepdim=keepdim),
    )


def std(dims=None, correction=1, keepdim=False):
    return var(dims, correction, keepdim, Std, torch.std)


def case(id: str, pair: tuple[Callable[[], Layer], Callable[..., Any]], x, seed: int = 0):
    return Case(id, pair[0], pair[1], x, seed)


CASES = [
    # amax / amin: tied extrema share δ evenly
    case("amax_dim1", amax(1), randn(3, 5)),
    case("amax_dims_keepdim", amax((0, 2), True), randn(2, 3, 4)),
    case("amax_negative_dim", amax(-1), randn(2, 3, 4)),
    case("amax_all_empty_tuple", amax(()), randn(3, 4)),
    case("amax_exact_ties", amax(1), integers(0, 2, 4, 6)),
    case("amax_all_ties", amax((0, 1)), integers(0, 1, 3, 3)),
    case("amax_0d", amax(()), randn()),
    case("amin_dim0", amin(0), randn(4, 3)),
    case("amin_exact_ties_keepdim", amin(-1, True), integers(-1, 1, 2, 3, 5)),
    case("max_full_as_amax", (lambda: Amax(None), torch.max), integers(0, 3, 3, 4)),
    case("min_full_as_amin", (lambda: Amin(None), torch.min), integers(0, 3, 3, 4)),
    # max / min over a dim: (values, indices), δ to the index torch returns
    case("max_dim1", (lambda: MaxDim(1), lambda x: torch.max(x, 1)), randn(3, 5)),
    case(
        "max_dim_keepdim",
        (lambda: MaxDim(-1, True), lambda x: x.max(-1, keepdim=True)),
        randn(2, 3, 4),
    ),
    case(
        "max_dim0_exact_ties", (lambda: MaxDim(0), lambda x: torch.max(x, 0)), integers(0, 1, 5, 4)
    ),
    case(
        "min_dim_exact_ties",
        (lambda: MinDim(1), lambda x: torch.min(x, dim=1)),
        integers(0, 2, 3, 6),
    ),
    case("min_dim_keepdim", (lambda: MinDim(0, True), lambda x: x.min(0, True)), randn(4, 2)),
    case("max_dim_0d", (lambda: MaxDim(0), lambda x: torch.max(x, 0)), randn()),
    case("max_dim_single_entry", (lambda: MaxDim(1), lambda x: torch.max(x, 1)), randn(3, 1)),
    # logsumexp
    case("logsumexp_dim1", (lambda: LogSumExp(1), lambda x: torch.logsumexp(x, 1)), randn(3, 5)),
    case(
        "logsumexp_dims_keepdim",
        (lambda: LogSumExp((0, 2), True), lambda x: torch.logsumexp(x, (0, 2), True)),
        randn(2, 3, 4),
    ),
    case(
        "logsumexp_large",
        (lambda: LogSumExp(-1), lambda x: torch.logsumexp(x, -1)),
        const([[1000.0, 999.0, -1000.0], [-1e3, -1e3, -1e3]]),
    ),
    case("logsumexp_ties", (lambda: LogSumExp(0), lambda x: x.logsumexp(0)), integers(0, 1, 4, 3)),
    # var / std
    case("var_all", var(), randn(3, 4)),
    case("var_dim1", var(1), randn(3, 5)),
    case("var_dims_keepdim_c0", var((0, 2), 0, True), randn(2, 3, 4)),
    case("var_correction_2", var(-1, 2), randn(3, 5)),
    case("var_correction_fraction", var(-1, 0.5), randn(3, 2)),
    case("var_correction_negative", var(0, -1), randn(3, 2)),
    case("var_constant_slice", var(1), const([[2.0, 2.0, 2.0], [1.0, 2.0, 4.0]])),
    case("std_all", std(), randn(3, 4)),
    case("std_dim1_keepdim", std(1, 1, True), randn(3, 5)),
    case("std_c0_dims", std((1, 2), 0), randn(2, 3, 4)),
    case("std_constant_slice", std(1), const([[2.0, 2.0, 2.0], [1.0, 2.0, 4.0]])),
    case("std_single_entry_c0", std(1, 0), randn(3, 1)),
    case("std_integer_valued", std(0), integers(0, 1, 3, 6)),
    # vector norms: torch's subgradient 0 at zero slices and zero entries
    case("norm2_all", norm(2), randn(3, 4)),
    case("norm2_dim", norm(2, 1), randn(3, 4)),
    case("norm2_zero_slice", norm(2, 1), const([[0.0, 0.0], [3.0, 4.0]])),
    case("norm1_dims_keepdim", norm(1, (0, 2), True), randn(2, 3, 4)),
    case("norm1_zeros", norm(1, -1), integers(-1, 1, 3, 4)),
    case("norm_inf", norm(INF, 1), randn(3, 5)),
    case(
        "norm_inf_ties", norm(INF, 1), const([[-4.0, 4.0, 1.0], [0.0, 0.0, 0.0], [2.0, -2.0, 2.0]])
    ),
    case("norm_minus_inf", norm(-INF, 1), randn(3, 5)),
    case("norm_minus_inf_ties_zero", norm(-INF, 1), const([[-1.0, 1.0, 3.0], [0.0, 2.0, 0.0]])),
    case("norm_half", norm(0.5, 1), randn(3, 4)),
    case("norm_half_zeros", norm(0.5, 1), const([[0.0, 4.0], [1.0, 2.0], [0.0, 0.0]])),
    case("norm_1_5", norm(1.5, -1), randn(3, 4)),
    case("norm_1_5_zeros", norm(1.5, 1), const([[0.0, 4.0], [0.0, 0.0]])),
    case("norm_3", norm(3, 1), randn(3, 4)),
    case("norm_3_zeros", norm(3.0, 1), const([[0.0, -4.0], [0.0, 0.0]])),
    case("norm_minus_1", norm(-1, 1), randn(3, 4)),
    case(
        "norm_fro_matrix",
        (lambda: Norm(2, (0, 1)), lambda x: torch.norm(x, "fro", dim=(0, 1))),
        randn(3, 4),
    ),
    case("norm_method_p3", (lambda: Norm(3, 1, True), lambda x: x.norm(3, 1, True)), randn(3, 4)),
    case("norm_empty_slices", norm(2, 0), randn(0, 3)),
    # along a dim
    case("softmin_dim1", (lambda: Softmin(1), lambda x: F.softmin(x, 1)), randn(3, 5)),
    case("softmin_last", (lambda: Softmin(-1), lambda x: torch.nn.Softmin(-1)(x)), randn(2, 3, 4)),
    case("glu_last", (lambda: GLU(), F.glu), randn(3, 6)),
    case("glu_channels", (lambda: GLU(1), lambda x: torch.nn.GLU(1)(x)), randn(2, 4, 3, 3)),
    case("glu_dim0", (lambda: GLU(0), lambda x: F.glu(x, 0)), randn(2, 5)),
]


def _input(c: Case) -> torch.Tensor:
    return c.input(torch.Generator().manual_seed(c.seed))


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_op_matches_torch(c: Case) -> None:
    check_layer(c.id, c.layer(), _np([_input(c)]), c.fn, seed=c.seed)


def test_max_dim_unused_values_send_no_gradient():
    """Only the indices used downstream: δ of the values is None, δ_prev is 0."""
    layer = MaxDim(1)
    (z, i), cache = layer.forward(np.array([[1.0, 3.0], [2.0, 2.0]]))
    np.testing.assert_array_equal(i, [1, 0])  # the first of tied maxima, as torch's
    d, grads = layer.backward((None, None), cache)
    np.testing.assert_array_equal(d, np.zeros((2, 2)))
    assert grads == {}


# --- ties ---------------------------------------------------------------------------------


def test_amax_ties_mask_slices_with_two_near_maxima():
    x = np.array([[1.0, 3.0, 3.0 - 1e-12, 0.0], [5.0, 4.0, 5.0 - 1e-6, 1.0], [2.0, 2.0, 2.0, 2.0]])
    (mask,) = Amax(1).ties(x)
    np.testing.assert_array_equal(
        mask, [[False, True, True, False], [False, False, False, False], [True] * 4]
    )
    (mask_dim,) = MaxDim(1).ties(x)
    np.testing.assert_array_equal(mask_dim, mask)
    assert not Amin(0).ties(x)[0].any(), "every column of x has a clear minimum"
    (mask_min,) = Amin(0).ties(np.array([[1.0, 0.0], [1.0 + 1e-12, 3.0]]))
    np.testing.assert_array_equal(mask_min, [[True, False], [True, False]])


def test_std_ties_mask_constant_slices():
    x = np.array([[2.0, 2.0, 2.0], [2.0, 2.0 + 1e-14, 2.0], [1.0, 2.0, 4.0]])
    (mask,) = Std(1).ties(x)
    np.testing.assert_array_equal(mask, [[True] * 3, [True] * 3, [False] * 3])
    assert Var(1).ties(x) is None


def test_norm_ties():
    x = np.array([[0.0, 0.0], [1e-13, 0.0], [3.0, 4.0], [4.0, -4.0]])
    np.testing.assert_array_equal(Norm(2, 1).ties(x)[0], [[1, 1], [1, 1], [0, 0], [0, 0]])
    np.testing.assert_array_equal(Norm(1, 1).ties(x)[0], [[1, 1], [1, 1], [0, 0], [0, 0]])
    np.testing.assert_array_equal(Norm(INF, 1).ties(x)[0], [[1, 1], [1, 1], [0, 0], [1, 1]])
    np.testing.assert_array_equal(Norm(0.5, 1).ties(x)[0], Norm(1, 1).ties(x)[0])


# --- refusals as data ---------------------------------------------------------------------

REFUSALS = [
    ("amax_empty_slice", lambda: Amax(0), (0, 3), r"amax: expected nonempty slices.*torch refuses"),
    ("amin_dim_out_of_range", lambda: Amin(2), (3, 4), r"expected dims in \[-2, 1\]"),
    ("amax_duplicate_dims", lambda: Amax((1, -1)), (3, 4), r"expected distinct dims"),
    ("max_dim_empty", lambda: MaxDim(0), (0, 3), r"max: expected a nonempty dim 0"),
    ("min_dim_out_of_range", lambda: MinDim(-3), (3, 4), r"expected dim in \[-2, 1\]"),
    ("logsumexp_no_dims", lambda: LogSumExp(()), (3, 4), r"logsumexp: expected at least one dim"),
    ("logsumexp_empty", lambda: LogSumExp(0), (0, 2), r"torch would return -inf"),
    (
        "var_correction_eq_count",
        lambda: Var(1),
        (3, 1),
        r"var: expected more entries per slice than the correction, got 1 entries and "
        r"correction 1.0",
    ),
    (
        "std_correction_over_count",
        lambda: Std(None, 7),
        (2, 3),
        r"std: .*got 6 entries and correction 7.0 \(torch would return nan or inf\)",
    ),
    ("var_empty", lambda: Var(0, 0), (0, 3), r"got 0 entries"),
    (
        "var_correction_nan",
        lambda: Var(0, float("nan")),
        (3,),
        r"var: expected a finite correction",
    ),
    ("var_correction_string", lambda: Var(0, "1"), (3,), r"var: expected a number as correction"),
    ("norm_p0", lambda: Norm(0), (3,), r"norm: p = 0 is not supported \(p = 0 counts nonzeros"),
    ("norm_p_string", lambda: Norm("nuc"), (3,), r"norm: expected a number as ord/p, got 'nuc'"),
    (
        "norm_inf_empty",
        lambda: Norm(INF, 0),
        (0, 3),
        r"norm: expected nonempty slices for the inf norm",
    ),
    ("glu_odd", lambda: GLU(-1), (2, 5), r"glu: expected an even size along dim -1"),
    ("glu_0d", lambda: GLU(), (), r"glu: expected an input with at least one dim"),
    ("softmin_dim", lambda: Softmin(3), (2, 3), r"dim 3 is out of range"),
]


@pytest.mark.parametrize(("id", "make", "shape", "match"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals(id, make, shape, match):
    with pytest.raises(ValueError, match=match):
        make().shape(shape)


# --- a property over random shapes and dims -----------------------------------------------


@st.composite
def reduction_cases(draw: st.DrawFn) -> tuple[str, Layer, Callable[..., Any], tuple[int, ...]]:
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    ndim = len(shape)
    dims = tuple(
        draw(
            st.lists(
                st.integers(-ndim, ndim - 1),
                min_size=1,
                max_size=ndim,
                unique_by=lambda d: d % ndim,
            )
        )
    )
    keepdim = draw(st.booleans())
    kind = draw(st.sampled_from(["amax", "amin", "max", "min", "logsumexp", "var", "std", "norm"]))
    n = int(np.prod([shape[d] for d in dims]))
    if kind == "amax":
        return kind, Amax(dims, keepdim), lambda x: torch.amax(x, dims, keepdim), shape
    if kind == "amin":
        return kind, Amin(dims, keepdim), lambda x: torch.amin(x, dims, keepdim), shape
    if kind in ("max", "min"):
        cls = MaxDim if kind == "max" else MinDim
        return (
            kind,
            cls(dims[0], keepdim),
            lambda x: getattr(torch, kind)(x, dims[0], keepdim),
            shape,
        )
    if kind == "logsumexp":
        return kind, LogSumExp(dims, keepdim), lambda x: torch.logsumexp(x, dims, keepdim), shape
    if kind in ("var", "std"):
        c = draw(st.sampled_from([c for c in (0, 1, 2, 0.5) if c < n] or [0]))
        cls, fn = (Var, torch.var) if kind == "var" else (Std, torch.std)
        return (
            kind,
            cls(dims, c, keepdim),
            lambda x: fn(x, dims, correction=c, keepdim=keepdim),
            shape,
        )
    p = draw(st.sampled_from([2.0, 1.0, INF, -INF, 0.5, 1.5, 3.0]))
    return (
        f"norm{p}",
        Norm(p, dims, keepdim),
        lambda x: torch.linalg.vector_norm(x, p, dims, keepdim),
        shape,
    )


@given(reduction_cases(), st.integers(0, 2**16), st.booleans())
def test_reductions_over_random_shapes(case, seed, integer_valued):
    """Integer-valued inputs put the max-like ones on exact ties, std on constant slices and
    the norms on zero entries and zero slices: the manual branch is torch's there."""
    name, layer, fn, shape = case
    g = torch.Generator().manual_seed(seed)
    x = integers(-1, 1, *shape)(g) if integer_valued else randn(*shape)(g)
    check_layer(f"{name} {layer!r} {tuple(shape)}", layer, _np([x]), fn)


# --- planted bugs: the checks above must catch them ----------------------------------------


def _amax_first_wins(self, delta, cache):
    """The whole δ to the first maximum (max(dim)'s rule, not amax's even split)."""
    a, z, axes = cache
    flat = np.moveaxis(a == z, axes[0], 0)
    first = np.cumsum(flat, axis=0) == 1
    return np.moveaxis(first & flat, 0, axes[0]) * self._back(delta, axes), {}


def _max_dim_next_index(self, delta, cache):
    """δ to the entry after torch's index (the second of two tied maxima)."""
    x_shape, in_shape, i, d = cache
    out = np.zeros(x_shape)
    np.put_along_axis(out, (i + 1) % x_shape[d], delta[0].reshape(i.shape), axis=d)
    return out.reshape(in_shape), {}


def _std_no_zero_rule(self, delta, cache):
    centred, dof, axes, std = cache
    with np.errstate(all="ignore"):
        return (2.0 / dof) * (self._back(delta, axes) / (2.0 * std)) * centred, {}


def _norm_inf_not_shared(self, delta, cache):
    x, z, axes = cache
    return np.sign(x) * (np.abs(x) == z) * self._back(delta, axes), {}


PLANTED = [
    ("amax_first_maximum_takes_all", Amax, _amax_first_wins, "amax_exact_ties"),
    ("max_dim_wrong_index", MaxDim, _max_dim_next_index, "max_dim0_exact_ties"),
    ("std_no_zero_subgradient", Std, _std_no_zero_rule, "std_constant_slice"),
    ("norm_inf_ties_not_shared", Norm, _norm_inf_not_shared, "norm_inf_ties"),
]


@pytest.mark.parametrize(("id", "cls", "bad", "case_id"), PLANTED, ids=[p[0] for p in PLANTED])
def test_planted_bug_fails(id, cls, bad, case_id, monkeypatch):
    c = next(c for c in CASES if c.id == case_id)
    monkeypatch.setattr(cls, "backward", bad)
    with pytest.raises(AssertionError, match="δ_prev of input"):
        check_layer(c.id, c.layer(), _np([_input(c)]), c.fn)


# --- wired into a Network: several outputs, a constant condition, a learned slope -------


def test_new_layers_in_a_network_match_autograd():
    """x → PReLU → max over dim 1 (values, indices) → values → where(mask, ·, 0) → hardswish
    → ‖·‖₂ · logsumexp: ∂L/∂x and ∂L/∂w against autograd."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.tensor([0.1, -0.3, 0.25], dtype=torch.float64, requires_grad=True)
    cond = torch.rand(4, 5, generator=g) < 0.6
    m = F.prelu(x, w).max(1).values
    h = F.hardswish(torch.where(cond, m, 0.0))
    loss = torch.linalg.vector_norm(h) * torch.logsumexp(h, (0, 1))
    loss.backward()

    net = Network(
        [
            Node("prelu", PReLU(w.detach().numpy()), (INPUT,)),
            Node("max", MaxDim(1), ("prelu",)),
            Node("values", Select(0), ("max",)),
            Node("cond", Constant(cond.numpy())),
            Node("where", Where(y=0.0), ("cond", "values"), get_activation("hardswish")),
            Node("norm", Norm(2), ("where",)),
            Node("lse", LogSumExp((0, 1)), ("where",)),
            Node("loss", Mul(), ("norm", "lse")),
        ]
    )
    out, tape = net.forward(x.detach().numpy())
    np.testing.assert_allclose(out, loss.item(), rtol=1e-13)
    grads = net.backward(tape, np.array(1.0), input_grad=True)
    np.testing.assert_allclose(grads.dL_dinput, x.grad.numpy(), rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(grads.grads["prelu"]["weight"], w.grad.numpy(), rtol=1e-11)
