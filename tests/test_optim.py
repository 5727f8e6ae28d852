"""SGD, Adam and gradient-norm clipping against torch.optim and torch.nn.utils, float64.

Both sides start from the same parameters and see the same gradient sequence; after every
step the parameters must agree to rtol 1e-12 (the same arithmetic, rounding apart)."""

from __future__ import annotations

import inspect
import math
import textwrap

import numpy as np
import pytest
import torch
from _tolerances import TOLERANCES

from manual_bp import optim
from manual_bp.optim import SGD, Adam, clip_grad_norm
from tests._compare import assert_close

TOL = TOLERANCES["optimizer"]
SHAPES = {"layer.weight": (4, 3), "layer.bias": (4,), "rnn.weight_hh_l0": (8, 2)}


class Params:
    """The smallest model an optimiser can step: named arrays."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays

    def named_parameters(self) -> dict[str, np.ndarray]:
        return self.arrays


def start(seed: int = 0) -> tuple[Params, list[torch.nn.Parameter]]:
    rng = np.random.default_rng(seed)
    arrays = {name: rng.normal(size=shape) for name, shape in SHAPES.items()}
    tensors = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in arrays.values()]
    return Params(arrays), tensors


def gradient_stream(steps: int, seed: int = 1) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        {name: rng.normal(scale=10.0 ** rng.uniform(-3, 1), size=shape)
         for name, shape in SHAPES.items()}
        for _ in range(steps)
    ]  # fmt: skip


def step_both(manual, make_torch, steps: int = 25) -> None:
    """Our optimiser and torch's, step by step on the same gradient stream: the parameters
    must agree after every step (an optimiser, not a layer: no tests/_layer_check here)."""
    model, tensors = start()
    torch_opt = make_torch(tensors)
    for k, grads in enumerate(gradient_stream(steps)):
        manual.step(model, grads)
        for p, g in zip(tensors, grads.values(), strict=True):
            p.grad = torch.from_numpy(g.copy())
        torch_opt.step()
        for (name, got), want in zip(model.named_parameters().items(), tensors, strict=True):
            assert_close(f"{type(manual).__name__} θ after step {k + 1}", name, got,
                         want.detach().numpy(), **TOL)  # fmt: skip


ADAM_CASES = {
    "defaults": {},
    "lr_1e-2": {"lr": 1e-2},
    "betas": {"lr": 3e-3, "betas": (0.5, 0.9)},
    "eps_large": {"eps": 1e-2},
    "weight_decay": {"lr": 1e-2, "weight_decay": 0.1},
    "amsgrad": {"lr": 1e-2, "amsgrad": True},
    "amsgrad_weight_decay": {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.05},
    "beta1_zero": {"betas": (0.0, 0.99)},
}


@pytest.mark.parametrize("name", list(ADAM_CASES))
def test_adam_matches_torch(name):
    kw = ADAM_CASES[name]
    step_both(Adam(**kw), lambda ps: torch.optim.Adam(ps, **kw))


@pytest.mark.parametrize("lr", [0.5, 1e-3])
def test_sgd_matches_torch(lr):
    step_both(SGD(lr), lambda ps: torch.optim.SGD(ps, lr=lr))


def test_adam_steps_only_the_parameters_given():
    """A parameter without a gradient keeps its value and its step count (as torch's None grad)."""
    model, _ = start()
    before = model.arrays["layer.bias"].copy()
    adam = Adam(lr=0.1)
    grads = gradient_stream(2)
    adam.step(model, {k: v for k, v in grads[0].items() if k != "layer.bias"})
    np.testing.assert_array_equal(model.arrays["layer.bias"], before)
    assert "layer.bias" not in adam.state and adam.state["layer.weight"]["step"] == 1


def test_first_adam_step_moves_every_entry_by_lr():
    """m̂ = g and v̂ = g² at t = 1, so the first step is −α·sign(g) (up to ε)."""
    model, _ = start()
    before = {k: v.copy() for k, v in model.arrays.items()}
    grads = gradient_stream(1)[0]
    Adam(lr=0.01, eps=0.0).step(model, grads)
    for name, g in grads.items():
        np.testing.assert_allclose(before[name] - model.arrays[name], 0.01 * np.sign(g), rtol=1e-12)


# --- planted bugs --------------------------------------------------------------------------


def _mutated_adam_step(old: str, new: str):
    source = textwrap.dedent(inspect.getsource(Adam.step))
    assert source.count(old) == 1, f"{old!r} is not (once) in Adam.step"
    namespace = dict(vars(optim))
    exec(compile(source.replace(old, new), "<mutated Adam.step>", "exec"), namespace)
    return namespace["step"]


PLANTED = {
    "no bias correction of m": ("self.lr / (1.0 - beta1**t)", "self.lr"),
    "no bias correction of v": ("math.sqrt(1.0 - beta2**t)", "1.0"),
    "ε inside the root": ("np.sqrt(v) / sqrt_bias2 + self.eps",
                          "np.sqrt(v / sqrt_bias2**2 + self.eps)"),
    "weight decay ignored": ("g = g + self.weight_decay * theta", "theta *= 1.0"),
}  # fmt: skip


@pytest.mark.parametrize("bug", list(PLANTED))
def test_planted_adam_bug_fails(bug, monkeypatch):
    monkeypatch.setattr(Adam, "step", _mutated_adam_step(*PLANTED[bug]))
    kw = {"lr": 1e-2, "weight_decay": 0.1, "eps": 1e-3}
    with pytest.raises(AssertionError):
        step_both(Adam(**kw), lambda ps: torch.optim.Adam(ps, **kw))


# --- clipping ------------------------------------------------------------------------------

CLIP_CASES = {
    "l2_clipped": (1.0, 2.0),
    "l2_not_clipped": (1e6, 2.0),
    "l1": (0.5, 1.0),
    "inf": (0.1, math.inf),
    "p3.5": (0.3, 3.5),
    "max_norm_zero": (0.0, 2.0),
}


@pytest.mark.parametrize("name", list(CLIP_CASES))
def test_clip_grad_norm_matches_torch(name):
    max_norm, p = CLIP_CASES[name]
    grads = gradient_stream(1, seed=7)[0]
    clipped, total = clip_grad_norm(grads, max_norm, p)
    tensors = [
        torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads.values()
    ]
    for t, g in zip(tensors, grads.values(), strict=True):
        t.grad = torch.from_numpy(g.copy())
    want_total = torch.nn.utils.clip_grad_norm_(tensors, max_norm, p)
    assert total == pytest.approx(float(want_total), rel=1e-13, abs=0.0)
    for (gname, got), t in zip(clipped.items(), tensors, strict=True):
        assert_close(f"clipped gradient ({name})", gname, got, t.grad.numpy(), **TOL)
    assert set(clipped) == set(grads)
    clipped_total = clip_grad_norm(clipped, math.inf, p)[1]
    if total > max_norm:  # clipped to just under max_norm (the 10⁻⁶ in the denominator)
        assert max_norm * (1 - 1e-6 / total) - 1e-15 <= clipped_total <= max_norm
    else:
        assert clipped_total == total


def test_clip_leaves_its_input_alone():
    grads = gradient_stream(1)[0]
    before = {k: v.copy() for k, v in grads.items()}
    clip_grad_norm(grads, 1e-3)
    for k in grads:
        np.testing.assert_array_equal(grads[k], before[k])


def test_clip_nonfinite():
    grads = {"a": np.array([1.0, np.nan]), "b": np.array([2.0])}
    clipped, total = clip_grad_norm(grads, 1.0)
    assert math.isnan(total) and np.isnan(clipped["b"]).all()  # torch scales by NaN too
    with pytest.raises(ValueError, match="error_if_nonfinite=False"):
        clip_grad_norm(grads, 1.0, error_if_nonfinite=True)


OPTIM_ERRORS = {
    "adam lr": (lambda: Adam(lr=0.0), "lr must be a number > 0"),
    "adam betas": (lambda: Adam(betas=(0.9, 1.0)), "betas must be two numbers in [0, 1)"),
    "adam eps": (lambda: Adam(eps=-1.0), "eps must be ≥ 0"),
    "adam weight decay": (lambda: Adam(weight_decay=-0.1), "weight_decay must be ≥ 0"),
    "sgd lr": (lambda: SGD(-1.0), "learning rate must be > 0"),
    "clip norm type": (lambda: clip_grad_norm({"a": np.ones(2)}, 1.0, 0.0), "norm_type must be"),
    "unknown parameter": (lambda: Adam().step(start()[0], {"nope": np.ones(1)}),
                          "unknown parameters ['nope']"),
    "wrong shape": (lambda: Adam().step(start()[0], {"layer.bias": np.ones(3)}),
                    "has shape (3,), expected (4,)"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(OPTIM_ERRORS))
def test_errors(name):
    import re

    make, message = OPTIM_ERRORS[name]
    with pytest.raises(ValueError, match=re.escape(message)):
        make()
