"""What running kornia's own gradcheck tests with torch_ref.gradcheck beside torch's found
(experiments/gradcheck_suite.py, docs/gradcheck_suite.md), each reproduced small: the verdict
must be torch's where torch's finite differences are right, and each test shows the check can
fail (a planted bug, or the fix undone)."""

from __future__ import annotations

import copy
import sys
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import torch_ref
from torch_ref.gradchecks import GradcheckError, cuts

_torch_gradcheck = sys.modules["torch.autograd.gradcheck"].gradcheck


def _x(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=torch.float64).requires_grad_()


def _both(fn: Any, inputs: tuple, **kw: Any) -> tuple[bool, bool]:
    """torch's verdict and ours (False for a GradcheckError)."""
    theirs = _torch_gradcheck(fn, inputs, raise_exception=False, **kw)
    return theirs, torch_ref.gradcheck(fn, inputs, raise_exception=False, **kw)


# --- a float64 run is recorded as it is ------------------------------------------------


def _float32_table(x: torch.Tensor) -> torch.Tensor:
    """A float64 function whose constants are made in float32 inside it (kornia's MKD
    descriptors build their kernel tables in the default dtype, then cast)."""
    table = torch.linspace(0, 1, x.shape[-1]).mul(1000).sin()  # float32: the default dtype
    return x * table.to(x.dtype)


def test_float32_constants_made_inside_a_float64_function_are_the_functions_own() -> None:
    """The recorded run is your run: the record no longer makes the default dtype float64
    (that computed the table in float64, another function, 1e-8 away)."""
    assert _both(_float32_table, (_x(3, 7),)) == (True, True)


def test_a_float64_record_on_a_float64_default_would_be_another_function() -> None:
    """(the fix undone: the table in float64 differs from yours by float32's rounding)"""
    x = _x(3, 7)
    other = lambda x: x * torch.linspace(0, 1, 7, dtype=torch.float64).mul(1000).sin()  # noqa: E731
    with pytest.raises(GradcheckError, match="output 0, input 0"):
        torch_ref.gradcheck(_float32_table, (x,), reference=other)


class _Jitter(nn.Module):
    """Draws a random parameter it does not use (p = 0), as kornia's augmentations do, and
    keeps a non-leaf tensor in a dict (deepcopy refuses it)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.0, dtype=torch.float64))
        self._params: dict[str, Any] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._params["angle"] = torch.rand(x.shape[0], dtype=x.dtype) * 0.0 + x.sum()
        apply = torch.rand(()) < 0.0  # p = 0: never applied
        return torch.where(apply, x.flip(-1), x) * self.scale


def test_a_module_that_draws_and_cannot_be_copied_is_checked_on_its_own_run() -> None:
    m = _Jitter()
    m(_x(2, 3))  # (its dict now holds a non-leaf tensor: copy.deepcopy refuses the module)
    with pytest.raises(RuntimeError):
        copy.deepcopy(m)
    assert torch_ref.gradcheck(m, (_x(2, 3),))


def test_a_wrong_backward_in_a_module_that_draws_still_fails() -> None:
    class Wrong(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            return x * 2

        @staticmethod
        def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
            return g * 2.02

    class M(_Jitter):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return Wrong.apply(super().forward(x))

    with pytest.raises(GradcheckError, match="Wrong"):
        torch_ref.gradcheck(M(), (_x(2, 3),))


# --- outputs that carry no gradient ----------------------------------------------------


@pytest.mark.parametrize(
    "fn",
    [lambda x: (x > 0.5).double(), lambda x: (x * 4).floor(), lambda x: (x * 4).long()],
    ids=["mask as float", "floor", "integer"],
)
def test_outputs_constant_in_the_inputs_pass_as_in_torch(fn: Any) -> None:
    """torch's gradcheck passes a piecewise-constant function (its numerical Jacobian is
    zero); ours used to refuse it ("returned no tensor that carries gradient")."""
    assert _both(fn, (_x(5),)) == (True, True)


def test_a_straight_through_function_with_a_constant_forward_fails_as_in_torch() -> None:
    class Step(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            return (x > 0.5).double()

        @staticmethod
        def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
            return g

    assert _both(Step.apply, (_x(5),)) == (False, False)


# --- singular vectors' signs are torch's -------------------------------------------------


def _null_vector(A: torch.Tensor) -> torch.Tensor:
    """solve_pnp_dlt's pattern: a singular vector, its sign fixed by a constant of the run."""
    _, _, Vh = torch.linalg.svd(A, full_matrices=False)
    v = Vh[:, -1]
    one = torch.ones_like(v[:, :1])
    sign = torch.where(v[:, :1] < 0, -one, one)  # (not differentiable: torch's values)
    return v * sign


def _flipped_svd(svd: Any) -> Any:
    def flipped(a: Any, *args: Any, **kwargs: Any) -> Any:
        U, s, Vh = svd(a, *args, **kwargs)
        return -U, s, -Vh  # (another valid SVD: another LAPACK's choice)

    return flipped


def test_the_manual_svd_takes_torchs_signs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(np.linalg, "svd", _flipped_svd(np.linalg.svd))
    assert torch_ref.gradcheck(_null_vector, (_x(2, 4, 5),))


def test_without_torchs_signs_the_other_lapacks_choice_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(np.linalg, "svd", _flipped_svd(np.linalg.svd))
    monkeypatch.setattr(torch_ref.ties, "torch_signs", lambda nodes, values: nodes)
    with pytest.raises(GradcheckError, match="output 0, input 0"):
        torch_ref.gradcheck(_null_vector, (_x(2, 4, 5),))


def test_an_svd_layer_takes_the_reference_signs_pair_by_pair() -> None:
    from manual_bp.ops.matrix.factorizations import SVD, Eigh

    a = np.random.default_rng(0).standard_normal((2, 4, 3))
    U, s, Vh = np.linalg.svd(a, full_matrices=False)
    d = np.array([[1.0, -1.0, 1.0], [-1.0, -1.0, 1.0]])
    (U2, s2, Vh2), _ = SVD(False, signs=(U * d[:, None, :], Vh * d[:, :, None])).forward(a)
    np.testing.assert_allclose(U2, U * d[:, None, :], atol=1e-12)
    np.testing.assert_allclose(Vh2, Vh * d[:, :, None], atol=1e-12)
    np.testing.assert_allclose((U2 * s2[:, None, :]) @ Vh2, a, atol=1e-12)
    sym = a[0].T @ a[0]
    lam, V = np.linalg.eigh(sym)
    (_, V2), _ = Eigh(signs=-V).forward(sym)
    np.testing.assert_allclose(V2, -V, atol=1e-12)


# --- ±inf as a fill, a padding value, a comparison's constant ---------------------------


_K = torch.ones(3, 3, dtype=torch.float64)
INF_CASES = {
    "isfinite mask": lambda x: x * torch.isfinite(x),
    "where with inf, then amin": lambda x: torch.where(x > 0.5, x, float("inf")).amin(dim=-1),
    "pad with -inf, then max pool": lambda x: F.max_pool2d(
        F.pad(x, (1, 1, 1, 1), value=float("-inf")), 3, 1
    ),
    "masked softmax": lambda x: torch.where(x > 0.3, x, float("-inf")).softmax(-1),
}


@pytest.mark.parametrize("name", list(INF_CASES))
def test_infinities_in_the_forward_pass_as_in_torch(name: str) -> None:
    assert _both(INF_CASES[name], (_x(1, 1, 5, 5),)) == (True, True)


def test_a_wrong_backward_behind_an_infinite_padding_fails() -> None:
    class Scale(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            return x * 3

        @staticmethod
        def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
            return g * 3.03  # (1 % off: torch's rtol 1e-3 lets 0.1 % through)

    f = lambda x: INF_CASES["pad with -inf, then max pool"](Scale.apply(x))  # noqa: E731
    assert _both(f, (_x(1, 1, 5, 5),)) == (False, False)


def test_a_comparison_with_infinity_marks_no_tie() -> None:
    from manual_bp.ops.base import near

    x = np.array([1.0, -np.inf, 3.0, np.inf])
    assert near(x, (np.inf,)).tolist() == [False, False, False, True]
    assert near(x, (1.0,)).tolist() == [True, False, False, False]


# --- a write to one entry ----------------------------------------------------------------


@pytest.mark.parametrize(
    "index, value",
    [((Ellipsis, 0), "x"), (0, "x"), ((Ellipsis, 0), 5.0), (0, 5.0)],
    ids=["[..., 0] = tensor", "[0] = tensor", "[..., 0] = number", "[0] = number"],
)
def test_writing_one_entry_of_a_vector(index: Any, value: Any) -> None:
    """x[0] = v on a 1-d tensor: the manual write went to a NumPy scalar (a TypeError,
    kornia's quaternion_to_axis_angle)."""

    def f(x: torch.Tensor) -> torch.Tensor:
        y = x * 1
        y[index] = x[1] * 2 if value == "x" else value
        return y

    assert _both(f, (_x(3),)) == (True, True)


# --- gradient cuts: the function's derivative, as torch's finite differences take it ----


def _no_grad_sum(x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        s = x.sum()
    return x * s


CUT_CASES = {  # name: (function, torch's verdict and ours)
    "x / |x| detached": (lambda x: x / x.norm().detach(), False),
    "straight-through x + (round(x) − x).detach()": (lambda x: x + (x.round() - x).detach(), False),
    "a detached output": (lambda x: x.detach() * 2, False),
    "a no_grad block": (_no_grad_sum, False),
    "a detached mask": (lambda x: x * (x.detach() > 0.5), True),
    "a detached step": (lambda x: x * (x.detach() * 3).round(), True),
    "a detached scale the output is invariant to": (
        lambda x: (x / x.abs().max().detach()) / (x / x.abs().max().detach()).norm(),
        True,
    ),
}


@pytest.mark.parametrize("name", list(CUT_CASES))
def test_a_gradient_cut_is_followed_as_torch_follows_it(name: str) -> None:
    fn, verdict = CUT_CASES[name]
    assert _both(fn, (_x(6),)) == (verdict, verdict)


def test_the_failure_names_the_cut() -> None:
    with pytest.raises(GradcheckError, match=r"cut from autograd at detach at File"):
        torch_ref.gradcheck(CUT_CASES["x / |x| detached"][0], (_x(6),))


def test_without_following_cuts_a_straight_through_estimator_would_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """(the fix undone: the oracle agrees with autograd by construction)"""
    fn = CUT_CASES["straight-through x + (round(x) − x).detach()"][0]
    monkeypatch.setattr(cuts._Cuts, "returned", lambda self, outputs: None)
    monkeypatch.setattr(cuts, "_cuts", lambda func, ins: False)
    assert torch_ref.gradcheck(fn, (_x(6),))


def test_a_nudged_detached_boundary_fails_as_torchs_gradcheck_fails_it() -> None:
    """kornia's otsu_threshold nudges a detached boundary with nextafter: torch's gradcheck
    fails it (its finite differences move the boundary); the oracle follows the cut through
    nextafter's row (derivative 1 in its input, as torch's) and fails it too, naming the
    detach."""

    def f(x: torch.Tensor) -> torch.Tensor:
        b = x.amin().detach()
        return x - torch.nextafter(b, torch.full_like(b, -float("inf")))

    x = _x(6)
    assert not torch.autograd.gradcheck(f, (x,), raise_exception=False)
    with pytest.raises(GradcheckError, match=r"(?s)yours 0, oracle -1.*detach at"):
        torch_ref.gradcheck(f, (x,))


# --- where torch's finite differences are wrong ------------------------------------------


def _sample_on_the_grid(img: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return F.grid_sample(img, grid, mode="bilinear", align_corners=True)


def _grid(offset: float) -> torch.Tensor:
    """Sampling points on pixel centres of a 4×4 image (align_corners: −1, −1/3, 1/3, 1)."""
    c = torch.tensor([-1.0, -1.0 / 3.0, 1.0 / 3.0], dtype=torch.float64) + offset
    gy, gx = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([gx, gy], -1)[None].requires_grad_()


def test_bilinear_sampling_on_the_pixel_grid_torch_fails_at_its_kinks() -> None:
    """kornia's LAF tests (LAFAffineShapeEstimator, LAFDescriptor, get_laf_descriptors) put
    their sampling points on pixel centres, where bilinear interpolation has a kink in the
    point's coordinates: torch's central differences average the two sides and fail at every
    eps; autograd takes one side, as the oracle does. Moved off the grid, both pass."""
    img = _x(1, 1, 4, 4)
    assert _both(_sample_on_the_grid, (img, _grid(0.0))) == (False, True)
    assert _both(_sample_on_the_grid, (img, _grid(1e-3))) == (True, True)


# --- a module's parameter that is not an input is a constant of the check --------------


class _PositionEmbedding(nn.Module):
    """kornia's siglip2 vision embeddings: a learned table added to the input; gradcheck
    differentiates with respect to the input only, so the table (which requires grad) is a
    constant of the check, for torch's finite differences and for autograd alike."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.table = nn.Parameter(torch.randn(4, 3, generator=g, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.table.unsqueeze(0).tanh()


def test_a_parameter_that_is_not_an_input_is_a_constant_of_the_check():
    assert _both(_PositionEmbedding(), (_x(2, 4, 3),)) == (True, True)


def test_a_tensor_kept_from_the_input_before_the_call_is_still_refused():
    """One that reaches an input of the check is not a constant for autograd: torch's finite
    differences see a constant and fail; ours refuses, naming the line."""
    x = _x(2, 3)
    kept = x * 2

    def f(x: torch.Tensor) -> torch.Tensor:
        return x.sin() + kept

    assert not _torch_gradcheck(f, (x,), raise_exception=False)
    with pytest.raises(torch_ref.UnsupportedModuleError, match="computed where the record"):
        torch_ref.gradcheck(f, (x,))


# --- a slice written into a row of a buffer made in the function --------------------------


def _crop_by_rows(x: torch.Tensor) -> torch.Tensor:
    """kornia's crop_by_indices: `out = torch.empty(...)`, then `out[i] = x[i:i+1, ...]`, a
    (1, C, h, w) value into a (C, h, w) row: torch drops the value's leading 1s."""
    out = torch.empty(x.shape[0], x.shape[1], 4, 2, dtype=x.dtype)
    for i in range(x.shape[0]):
        out[i] = x[i : i + 1, :, 0:4, 1:3]
    return out


def test_a_value_with_leading_ones_written_into_a_row_passes_as_in_torch():
    assert _both(_crop_by_rows, (_x(2, 2, 5, 4),)) == (True, True)


def test_a_write_whose_row_refuses_is_never_dropped_silently(monkeypatch):
    """Planted: the setitem row refuses every value. torch makes the write, and the written
    tensor now carries gradient: the refusal stands (before, the write was taken for a call
    that carries no gradient, setitem returning None, and its gradient was lost)."""
    from manual_bp.ops import scatter

    def refuse(self, *shapes):
        raise ValueError("planted: no value fits")

    monkeypatch.setattr(scatter.IndexPut, "shape", refuse)
    with pytest.raises(ValueError, match=r"Tensor\.__setitem__ .*planted: no value fits"):
        torch_ref.gradcheck(_crop_by_rows, (_x(2, 2, 5, 4),))


# --- a real difference torch's fast mode misses -------------------------------------------


_W = torch.randn(256, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) / 16


def _normalised_detached(x: torch.Tensor) -> torch.Tensor:
    """kornia's HardNet: each sample normalised by its own mean and std, detached, then a
    layer; autograd's gradient misses the statistics' share (a few % of each entry)."""
    mean, std = torch.std_mean(x, dim=1, keepdim=True)
    return (((x - mean.detach()) / (std.detach() + 1e-7)) @ _W).tanh()


def test_a_detached_normalisation_is_caught_where_torchs_fast_mode_misses_it():
    x = torch.rand(2, 256, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x.requires_grad_()
    kw = {"eps": 1e-4, "atol": 1e-4, "raise_exception": False}
    assert not _torch_gradcheck(_normalised_detached, (x,), **kw)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # (torch's fast mode draws its u and v from the global generator)
        assert _torch_gradcheck(_normalised_detached, (x,), fast_mode=True, **kw)
    for fast in (False, True):
        assert not torch_ref.gradcheck(_normalised_detached, (x,), fast_mode=fast, **kw)
