"""torch_ref.gradcheck beyond the first reverse-mode check: kinks and ties decided by
rounding, forward mode (check_forward_ad), and gradgradcheck's exact second-order reference.
Every case that must pass has a planted bug beside it that must fail."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import torch_ref
from manual_bp.ops.arithmetic import Sub
from torch_ref import gradcheck, gradgradcheck
from torch_ref.gradchecks import first

GradcheckError = sys.modules["torch.autograd.gradcheck"].GradcheckError
torch_gradcheck = sys.modules["torch.autograd.gradcheck"].gradcheck
torch_gradgradcheck = sys.modules["torch.autograd.gradcheck"].gradgradcheck


def _x(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_()


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).requires_grad_()


def relu_function(factor: float = 1.0) -> type[torch.autograd.Function]:
    """relu as a custom Function whose backward is scaled by `factor`."""

    class MyReLU(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z):
            ctx.save_for_backward(z)
            return z.clamp(min=0)

        @staticmethod
        def backward(ctx, g):
            (z,) = ctx.saved_tensors
            return g * (z > 0) * factor

    return MyReLU


# --- kinks and ties decided by rounding -------------------------------------------------


def test_relu_at_zero_and_max_pool_ties_pass_where_torchs_finite_differences_fail():
    """pytorch#114234 (relu at 0) and #114219 (max_pool1d over tied values)."""
    x = _t(-1.0, 0.0, 2.0, 0.0)
    relu = lambda x: F.relu(x)  # noqa: E731
    assert torch_gradcheck(relu, (x,), raise_exception=False) is False
    assert gradcheck(relu, (x,)) is True
    tied = torch.tensor([[[1.0, 1.0, 0.5, 2.0, 2.0, 2.0]]], dtype=torch.float64).requires_grad_()
    pool = lambda x: F.max_pool1d(x, 2)  # noqa: E731
    assert torch_gradcheck(pool, (tied,), raise_exception=False) is False
    assert gradcheck(pool, (tied,)) is True


@pytest.fixture
def rounded_above_the_kink(monkeypatch: pytest.MonkeyPatch) -> None:
    """The manual y − x lands a rounding step above 0 where torch's is exactly 0: the case
    where NumPy and torch round a kink's input to opposite sides (planted, so the test does
    not depend on a CPU's rounding)."""
    forward = Sub.forward

    def nudged(self, a, b):
        z, cache = forward(self, a, b)
        return np.where(z == 0, 1e-300, z), cache

    monkeypatch.setattr(Sub, "forward", nudged)


def _kinked() -> tuple[torch.Tensor, torch.Tensor]:
    return _t(0.0, 1.0, -0.5, 0.25), _t(0.0, 0.3, 0.2, 0.25)


def test_a_kink_rounding_decided_is_a_tie_never_a_failure(rounded_above_the_kink, monkeypatch):
    x, y = _kinked()
    f = lambda x, y: F.relu(y - x)  # noqa: E731
    assert gradcheck(f, (x, y)) is True
    assert gradcheck(f, (x, y), fast_mode=True) is True
    monkeypatch.setattr(first, "_replay", lambda run: None)  # no replay: the kink fails
    assert gradcheck(f, (x, y), raise_exception=False) is False


@pytest.mark.parametrize("fast_mode", [False, True])
def test_a_real_bug_away_from_the_tie_still_fails(rounded_above_the_kink, fast_mode):
    x, y = _kinked()
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda x, y: relu_function(1.01).apply(y - x), (x, y), fast_mode=fast_mode)
    assert "output 0, input 0:" in str(info.value) and "MyReLU (call 0)" in str(info.value)


# --- forward mode ------------------------------------------------------------------------


def square_with_jvp(factor: float = 1.0, backward: float = 1.0) -> type[torch.autograd.Function]:
    """x² with a jvp scaled by `factor`, a backward by `backward`."""

    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            ctx.save_for_forward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2 * x * g * backward

        @staticmethod
        def jvp(ctx, t):
            (x,) = ctx.saved_tensors
            return 2 * x * t * factor

    return Square


@pytest.mark.parametrize("fast_mode", [False, True])
def test_forward_mode_correct_jvp_passes_and_a_wrong_one_is_named(fast_mode):
    x = _x(3, 2)
    ok = dict(check_forward_ad=True, fast_mode=fast_mode)
    assert gradcheck(square_with_jvp().apply, (x,), **ok) is True
    assert gradcheck(lambda x, w: torch.tanh(x @ w).sum(0), (x, _x(2, 4, seed=1)), **ok)
    with pytest.raises(GradcheckError, match="forward mode") as info:
        gradcheck(square_with_jvp(1.01).apply, (x,), **ok)
    assert "jvp of the custom autograd.Function(s): Square" in str(info.value)
    assert gradcheck(square_with_jvp(1.01).apply, (x,), raise_exception=False, **ok) is False


def test_forward_mode_alone_and_the_argument_rules_are_torchs():
    x = _x(4)
    wrong_backward = square_with_jvp(backward=2.0).apply
    assert gradcheck(wrong_backward, (x,), check_forward_ad=True, check_backward_ad=False)
    with pytest.raises(GradcheckError):
        gradcheck(wrong_backward, (x,), check_forward_ad=True)
    with pytest.raises(AssertionError, match="at least one of"):
        gradcheck(torch.sin, (x,), check_backward_ad=False)
    with pytest.raises(AssertionError, match="requires check_forward_ad"):
        gradcheck(torch.sin, (x,), check_batched_forward_grad=True)
    assert gradcheck(torch.sin, (x,), check_forward_ad=True, check_batched_forward_grad=True)


def test_a_function_without_jvp_raises_as_in_torch():
    x = _x(3)
    for check in (torch_gradcheck, gradcheck):
        with pytest.raises(NotImplementedError, match="jvp"):
            check(relu_function().apply, (x,), check_forward_ad=True)


# --- gradgradcheck -----------------------------------------------------------------------


class Cube(torch.autograd.Function):
    """x³ whose backward is built of differentiable ops on the saved input: correct twice."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x * x * g


class SinSquared(torch.autograd.Function):
    """sin(x)² whose backward uses intermediates saved from the forward: right once, wrong
    twice (they are constants to the double backward; pytorch#58509)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x.sin(), x.cos())
        return x.sin() ** 2

    @staticmethod
    def backward(ctx, g):
        s, c = ctx.saved_tensors
        return 2 * s * c * g


@pytest.mark.parametrize("fast_mode", [False, True])
def test_gradgradcheck_passes_a_correct_double_backward(fast_mode):
    x, w = _x(3, 2), _x(2, 2, seed=1)
    assert gradgradcheck(Cube.apply, (x,), fast_mode=fast_mode) is True
    assert gradgradcheck(lambda x, w: torch.tanh(x @ w), (x, w), fast_mode=fast_mode) is True
    go = torch.ones(3, 2, dtype=torch.float64, requires_grad=True)
    assert gradgradcheck(lambda x: Cube.apply(x).sin(), (x,), (go,), fast_mode=fast_mode)


@pytest.mark.parametrize("fast_mode", [False, True])
def test_a_backward_saving_intermediates_passes_gradcheck_fails_gradgradcheck(fast_mode):
    x = _x(4)
    assert gradcheck(SinSquared.apply, (x,), fast_mode=fast_mode)
    assert torch_gradgradcheck(SinSquared.apply, (x,), raise_exception=False) is False
    with pytest.raises(GradcheckError) as info:
        gradgradcheck(SinSquared.apply, (x,), fast_mode=fast_mode)
    message = str(info.value)
    assert "the gradient of input 0, by input 0" in message
    assert "custom autograd.Function SinSquared: its backward is wrong" in message
    assert gradgradcheck(SinSquared.apply, (x,), raise_exception=False) is False


def test_of_two_functions_the_wrong_double_backward_is_named():
    x = _x(3)
    with pytest.raises(GradcheckError) as info:
        gradgradcheck(lambda x: Cube.apply(SinSquared.apply(x)) + Cube.apply(x), (x,))
    notes = [line for line in str(info.value).splitlines() if "  custom autograd.Function" in line]
    assert len(notes) == 1 and "SinSquared" in notes[0] and "Cube" not in notes[0]


def test_gradgradcheck_refuses_an_opaque_forward_unless_given_a_reference():
    class ViaNumpy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.from_numpy(x.detach().numpy() ** 3)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 3 * x * x * g

    x = _x(3)
    with pytest.raises(torch_ref.UnsupportedModuleError, match="ViaNumpy"):
        gradgradcheck(ViaNumpy.apply, (x,))
    assert gradgradcheck(ViaNumpy.apply, (x,), reference=lambda x: x**3)
    with pytest.raises(GradcheckError):
        gradgradcheck(ViaNumpy.apply, (x,), reference=lambda x: x**3 + x**2)


def test_gradgradcheck_arguments():
    x = _x(3)
    assert gradgradcheck(torch.sin, (x,), gen_non_contig_grad_outputs=True, check_batched_grad=True)
    assert gradgradcheck(torch.sin, (x,), fallback="torch")
    assert gradgradcheck(torch.sin, (x,), check_fwd_over_rev=True, fallback="torch")
    with pytest.raises(AssertionError, match="at least one of"):
        gradgradcheck(torch.sin, (x,), check_rev_over_rev=False)
    with pytest.raises(AssertionError, match="requires check_rev_over_rev"):
        gradgradcheck(torch.sin, (x,), check_rev_over_rev=False, check_fwd_over_rev=True)


class SinSquaredWithJvp(SinSquared):
    """SinSquared with a correct jvp: forward over its (wrong twice) backward is wrong too."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x.sin(), x.cos())
        ctx.save_for_forward(x)
        return x.sin() ** 2

    @staticmethod
    def jvp(ctx, t):
        (x,) = ctx.saved_tensors
        return 2 * x.sin() * x.cos() * t


@pytest.mark.parametrize("fast_mode", [False, True])
def test_forward_over_reverse(fast_mode):
    x, w = _x(3, 2), _x(2, 2, seed=1)
    only = dict(
        check_fwd_over_rev=True, check_rev_over_rev=False, check_undefined_grad=False,
        fast_mode=fast_mode,
    )  # fmt: skip
    f = lambda x, w: torch.tanh(x @ w)  # noqa: E731
    assert torch_gradgradcheck(f, (x, w), **only) and gradgradcheck(f, (x, w), **only)
    assert gradgradcheck(f, (x, w), check_fwd_over_rev=True, fast_mode=fast_mode)
    bad = SinSquaredWithJvp.apply
    assert torch_gradgradcheck(bad, (_x(4),), raise_exception=False, **only) is False
    with pytest.raises(GradcheckError, match="forward-over-reverse mismatch"):
        gradgradcheck(bad, (_x(4),), **only)


# --- the batched VJPs are the row-by-row definition, faster -------------------------------

BATCHED = {
    "a chain of unary ops": (lambda x: torch.tanh(x).exp() * 2, ((3, 4),)),
    "image: conv over a batch of 2": (
        lambda x: F.conv2d(x, torch.ones(2, 3, 2, 2, dtype=x.dtype)).relu(),
        ((2, 3, 4, 4),),
    ),
    "points: a product of two batched inputs": (lambda a, b: (a * b).exp(), ((4, 3), (4, 3))),
}


@pytest.mark.parametrize("case", BATCHED)
def test_the_batched_vjps_equal_one_backward_per_row(case):
    fn, shapes = BATCHED[case]
    xs = tuple(_x(*s, seed=k) for k, s in enumerate(shapes))
    run = first._record(fn, xs, list(range(len(xs))), None)
    (out, name), net = run.pairs[0], run.rec.network
    V = np.random.default_rng(0).standard_normal((5, *out.shape))
    keep = [f"input.{j}" for j in range(len(xs))]
    exact = first._one_by_one(net, run.tape, name, V, keep)
    found = []
    for batched in (first._stacked, first._tiled):
        try:  # (as _ours calls them: a pass that does not apply raises or returns None)
            rows = batched(net, run.tape, name, V, keep)
        except ValueError:
            continue
        if rows is not None:
            found.append(rows)
    assert found, "neither batched pass applies"
    for rows in found:
        for a, b in zip(rows, exact, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_a_batched_pass_gone_wrong_never_decides_the_verdict(monkeypatch):
    """A batched pass is trusted only where it matches yours: a wrong one costs time."""
    monkeypatch.setattr(first, "_stacked", lambda net, tape, name, V, keep: [
        np.full((len(V), tape.a[n].size), 7.0) for n in keep
    ])  # fmt: skip
    x, w = _x(3, 4), _x(4, 2, seed=1)
    assert gradcheck(lambda x, w: torch.tanh(x @ w), (x, w))
    with pytest.raises(GradcheckError, match="Square"):
        gradcheck(lambda x, w: square_with_jvp(backward=1.01).apply(x @ w), (x, w))


def test_stride_0_inputs_are_checked_where_torch_refuses_them():
    """Finite differences cannot perturb one entry of an expanded input; we need not."""
    x = _x(1, 3).detach().expand(4, 3).requires_grad_()
    with pytest.raises(RuntimeError, match="stride 0"):
        torch_gradcheck(torch.exp, (x,))
    assert gradcheck(torch.exp, (x,)) and gradcheck(torch.exp, (x,), check_forward_ad=True)
    assert gradgradcheck(torch.exp, (x,))
    with pytest.raises(GradcheckError, match="Square"):
        gradcheck(square_with_jvp(backward=1.01).apply, (x,))


def test_forward_mode_takes_the_tie_replay_too(rounded_above_the_kink):
    x, y = _kinked()
    f = lambda x, y: F.relu(y - x)  # noqa: E731
    assert gradcheck(f, (x, y), check_forward_ad=True)
    assert gradcheck(f, (x, y), check_forward_ad=True, check_backward_ad=False)
    assert gradcheck(f, (x, y), check_forward_ad=True, fast_mode=True)


def test_a_lone_straight_through_estimator_fails_its_zero_derivative_is_the_oracle():
    class RoundSTE(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return torch.round(x)

        @staticmethod
        def backward(ctx, g):
            return g

    with pytest.raises(GradcheckError, match="output 0, input 0") as info:
        gradcheck(RoundSTE.apply, (_x(4),))
    assert "straight-through" in str(info.value)
