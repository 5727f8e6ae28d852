"""torch_ref.gradcheck: the shapes real gradcheck suites use, each able to fail."""

from __future__ import annotations

import inspect
import sys

import pytest
import torch
import torch.nn.functional as F

import torch_ref
from torch_ref import gradcheck, gradgradcheck

GradcheckError = sys.modules["torch.autograd.gradcheck"].GradcheckError


def _x(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).requires_grad_()


def scaled(factor: float, which: int = -1):
    """A custom Function x·w + b (three inputs) whose backward scales input `which`."""

    class Affine(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w, b):
            ctx.save_for_backward(x, w)
            return x @ w + b

        @staticmethod
        def backward(ctx, g):
            x, w = ctx.saved_tensors
            grads = [g @ w.T, x.T @ g, g.sum(0)]
            if which >= 0:
                grads[which] = grads[which] * factor
            return tuple(grads)

    return Affine


def _affine_inputs():
    return _x(4, 3), _x(3, 2, seed=1), _x(2, seed=2)


@pytest.mark.parametrize("ours", [gradcheck, gradgradcheck])
def test_the_signature_is_torchs(ours):
    theirs = inspect.signature(getattr(sys.modules["torch.autograd.gradcheck"], ours.__name__))
    params, theirs = inspect.signature(ours).parameters, theirs.parameters
    assert list(params)[: len(theirs)] == list(theirs)
    for name, p in theirs.items():
        assert params[name].default == p.default and params[name].kind == p.kind, name


def test_a_correct_function_passes_and_returns_true():
    assert gradcheck(scaled(1.0).apply, _affine_inputs()) is True
    assert gradcheck(scaled(1.0).apply, _affine_inputs(), fast_mode=True) is True


@pytest.mark.parametrize("which", [0, 1, 2])
@pytest.mark.parametrize("fast_mode", [False, True])
def test_a_backward_wrong_by_one_percent_for_one_of_three_inputs_is_named(which, fast_mode):
    with pytest.raises(GradcheckError) as info:
        gradcheck(scaled(1.01, which).apply, _affine_inputs(), fast_mode=fast_mode)
    message = str(info.value)
    assert isinstance(info.value, torch_ref.GradcheckError)
    assert f"output 0, input {which}:" in message
    assert sum(f"input {j}:" in message for j in range(3)) == 1
    assert "Affine (call 0)" in message and f"input {which}" in message
    assert gradcheck(scaled(1.01, which).apply, _affine_inputs(), raise_exception=False) is False


def test_a_backward_returning_none_for_an_input_that_needs_a_gradient_fails():
    class Drops(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w):
            ctx.save_for_backward(w)
            return x * w

        @staticmethod
        def backward(ctx, g):
            (w,) = ctx.saved_tensors
            return g * w, None

    with pytest.raises(GradcheckError, match="input 1:"):
        gradcheck(Drops.apply, (_x(3), _x(3, seed=1)))


def test_non_tensor_arguments_and_inputs_that_do_not_require_grad():
    x, w = _x(3, 4), _x(4, seed=1).detach()
    assert gradcheck(lambda x, p, w, flag: (x.pow(p) * w).sum(-1) if flag else x, (x, 2, w, True))


def test_three_functions_one_wrong_is_the_one_blamed():
    good, bad = scaled(1.0), scaled(1.02, 1)

    def f(x, w, b):
        h = good.apply(x, torch.eye(3, dtype=x.dtype) * 2, torch.zeros(3, dtype=x.dtype))
        h = bad.apply(h, w, b)
        return good.apply(h, torch.eye(2, dtype=x.dtype), b)

    with pytest.raises(GradcheckError) as info:
        gradcheck(f, (_x(4, 3), _x(3, 2, seed=1), _x(2, seed=2)))
    notes = [line for line in str(info.value).splitlines() if "custom autograd.Function" in line]
    assert len(notes) == 1 and "Affine (call 1)" in notes[0]


def test_a_straight_through_estimator_is_reported_with_its_reason():
    class RoundSTE(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return torch.round(x)

        @staticmethod
        def backward(ctx, g):
            return g

    with pytest.raises(GradcheckError, match="straight-through"):
        gradcheck(lambda x: RoundSTE.apply(x * 3) * x, (_x(5),))


def test_an_image_function_of_torch_ops():
    """Colour conversion, a Sobel filter, isinstance checks and finfo of the working dtype."""

    def edges(img):
        if not isinstance(img, torch.Tensor):
            raise TypeError("expected a tensor")
        w = torch.tensor([0.299, 0.587, 0.114], dtype=img.dtype).view(1, 3, 1, 1)
        gray = (img * w).sum(1, keepdim=True)
        k = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=img.dtype)
        gx = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), k.view(1, 1, 3, 3))
        gy = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), k.T.reshape(1, 1, 3, 3))
        return torch.sqrt(gx * gx + gy * gy + torch.finfo(img.dtype).eps)

    assert gradcheck(edges, (_x(2, 3, 5, 5),))
    assert gradcheck(edges, (_x(2, 3, 5, 5, dtype=torch.float32),))


def test_a_kink_at_the_sample_point():
    x = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda x: F.relu(x) + x.abs(), (x,))


def test_a_float32_function_with_a_planted_bug_still_fails():
    x = _x(6, 4, dtype=torch.float32)
    assert gradcheck(lambda x: torch.tanh(x) * x, (x,))
    with pytest.raises(GradcheckError, match="float32"):
        gradcheck(
            scaled(1.01, 0).apply,
            tuple(t.float().detach().requires_grad_() for t in _affine_inputs()),
        )


def test_atol_and_rtol_when_given_are_torchs_test():
    fn = scaled(1.0 + 1e-4, 0).apply
    assert gradcheck(fn, _affine_inputs(), atol=1e-2, rtol=1e-2)
    assert not gradcheck(fn, _affine_inputs(), raise_exception=False)  # dtype default: 1e-7


def test_check_grad_dtypes_and_backward_ad_off():
    assert gradcheck(scaled(1.0).apply, _affine_inputs(), check_grad_dtypes=True)
    with pytest.raises(AssertionError, match="at least one of"):  # torch's own rule
        gradcheck(scaled(2.0, 0).apply, _affine_inputs(), check_backward_ad=False)
    assert gradcheck(
        scaled(1.0).apply, _affine_inputs(), check_batched_grad=False, nondet_tol=1e-12
    )


def test_no_input_requires_grad_is_torchs_error():
    with pytest.raises(ValueError, match="at least one input tensor to require gradient"):
        gradcheck(torch.sin, (torch.randn(3, dtype=torch.float64),))


def test_refused_arguments_name_the_fallback():
    x = _x(3)
    with pytest.raises(torch_ref.UnsupportedModuleError, match="fallback='torch'"):
        gradcheck(torch.sin, (x,), masked=True)
    z = torch.randn(3, dtype=torch.complex128, requires_grad=True)
    with pytest.raises(torch_ref.UnsupportedModuleError, match="complex"):
        gradcheck(lambda z: (z * z).abs(), (z,))
    assert gradcheck(lambda z: (z * z).abs(), (z,), fallback="torch")


def test_from_torch_ref_import_gradcheck_is_the_function_after_any_import():
    import torch_ref.gradchecks  # noqa: F401 (the package is not named like the function)

    assert callable(torch_ref.gradcheck) and torch_ref.gradcheck.__name__ == "gradcheck"


def test_an_opaque_forward_is_checked_against_a_reference():
    class ViaNumpy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.from_numpy(x.detach().numpy() ** 3)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 3 * x * x * g

    x = _x(4)
    assert gradcheck(ViaNumpy.apply, (x,), reference=lambda x: x**3)
    with pytest.raises(GradcheckError):
        gradcheck(ViaNumpy.apply, (x,), reference=lambda x: x**3 + x)


def test_check_grads_is_a_library_function_and_the_fixture_calls_it(gradient_oracle):
    """torch_ref.check_grads needs no pytest; the fixture adds its configured tolerances and
    has gradcheck too."""
    import torch.nn as nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x, t = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    model.zero_grad()
    nn.MSELoss()(model(x), t).backward()
    mine = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert torch_ref.check_grads(model, nn.MSELoss(), x, t, mine).ok
    assert gradient_oracle.check_grads(model, nn.MSELoss(), x, t, mine).ok
    mine["2.bias"] = mine["2.bias"] * 1.001
    with pytest.raises(AssertionError, match=r"2\.bias"):
        torch_ref.check_grads(model, nn.MSELoss(), x, t, mine)
    assert gradient_oracle.gradcheck(scaled(1.0).apply, _affine_inputs())
    with pytest.raises(GradcheckError):
        gradient_oracle.gradcheck(scaled(1.01, 2).apply, _affine_inputs())
