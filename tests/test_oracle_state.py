"""The oracle touches nothing the caller owns, and returns grads keyed like the model.

- MODELS: a table of named models (dropout in eval, mixed training flags, BatchNorm in
  train and in eval mode, a frozen parameter, a tied weight, float32, nested names), each
  with a loss holding a weight tensor and inputs that require grad.
- every row × every public function: parameters, `.grad` (None, or an existing tensor's
  identity and values), requires_grad, training flags, buffers, torch's and NumPy's
  global random state, the inputs, the target and the loss's weight, all bit-identical.
- the returned grads: exactly the parameters that require grad, each in its shape, dtype
  and device; a frozen parameter still feeds the forward; a tied weight appears once,
  its gradient the sum over both uses, as autograd's.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn

import torch_ref
from torch_ref import UnsupportedModuleError
from torch_ref.capture import capture

FUNCTIONS: dict[str, Callable[..., Any]] = {
    "manual_gradients": torch_ref.manual_gradients,
    "manual_trace": torch_ref.manual_trace,
    "compare_gradients": torch_ref.compare_gradients,
    "assert_gradients_close": torch_ref.assert_gradients_close,
}

N, F_IN, C = 5, 4, 3
CLASS_WEIGHT = torch.tensor([0.5, 1.0, 2.0])


# --- the table -----------------------------------------------------------------------


def _seeded(build: Callable[[], nn.Module]) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build()


def _mlp_dropout_eval() -> nn.Module:
    return nn.Sequential(nn.Linear(F_IN, 6), nn.ReLU(), nn.Dropout(0.3), nn.Linear(6, C)).eval()


def _mixed_training_flags() -> nn.Module:
    """model.train() with Dropout(p=0) and one submodule switched to eval."""
    model = nn.Sequential(nn.Linear(F_IN, 6), nn.Tanh(), nn.Dropout(0.0), nn.Linear(6, C))
    model.train()
    model[1].eval()
    return model


def _batchnorm(training: bool) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        model = nn.Sequential(nn.Linear(F_IN, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, C))
        bn = model[1]
        with torch.no_grad():  # non-default buffers, so that a reset would show
            bn.running_mean.copy_(torch.linspace(-0.5, 0.5, 6))
            bn.running_var.copy_(torch.linspace(0.5, 2.0, 6))
            bn.num_batches_tracked.fill_(7)
            bn.weight.copy_(torch.linspace(0.8, 1.2, 6))
        return model.train(training)

    return build


def _frozen() -> nn.Module:
    model = nn.Sequential(nn.Linear(F_IN, 6), nn.Sigmoid(), nn.Linear(6, C))
    model[0].bias.requires_grad_(False)
    with torch.no_grad():
        model[0].bias.copy_(torch.linspace(-2.0, 2.0, 6))  # large, so that it matters
    return model


def _tied() -> nn.Module:
    model = nn.Sequential(
        nn.Linear(F_IN, F_IN), nn.Tanh(), nn.Linear(F_IN, F_IN), nn.Tanh(), nn.Linear(F_IN, C)
    )
    model[2].weight = model[0].weight
    return model


class _Nested(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(F_IN, 6), nn.GELU(), nn.Dropout(0.5))
        self.head = nn.Linear(6, C, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.body(x)))


@dataclass(frozen=True)
class Row:
    name: str
    build: Callable[[], nn.Module]
    dtype: torch.dtype = torch.float64


MODELS = [
    Row("mlp_dropout_eval", _mlp_dropout_eval),
    Row("mixed_training_flags", _mixed_training_flags),
    Row("batchnorm_train_mode", _batchnorm(True)),
    Row("batchnorm_eval_mode", _batchnorm(False)),
    Row("frozen_bias", _frozen),
    Row("tied_weight", _tied),
    Row("nested_eval_float32", lambda: _Nested().eval(), torch.float32),
]


@dataclass
class Problem:
    model: nn.Module
    loss_fn: nn.Module
    inputs: torch.Tensor
    target: torch.Tensor


def _problem(row: Row) -> Problem:
    model = _seeded(row.build).to(row.dtype)
    g = torch.Generator().manual_seed(1)
    # an existing .grad on every other parameter, None on the rest
    for i, p in enumerate(model.parameters()):
        if i % 2 == 0 and p.requires_grad:
            p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)
    inputs = torch.randn(N, F_IN, generator=g, dtype=row.dtype).requires_grad_(True)
    target = torch.tensor([0, 2, 1, 1, 0])
    loss_fn = nn.CrossEntropyLoss(weight=CLASS_WEIGHT.clone().to(row.dtype), label_smoothing=0.1)
    return Problem(model, loss_fn, inputs, target)


# --- what the caller owns, snapshotted -----------------------------------------------


def _bits(t: torch.Tensor) -> bytes:
    return t.detach().cpu().contiguous().numpy().tobytes()


def _tensor(t: torch.Tensor | None) -> Any:
    """Identity, dtype, shape and exact bytes of a tensor (None stays None)."""
    if t is None:
        return None
    return (id(t), t.dtype, tuple(t.shape), t.requires_grad, _bits(t))


def _snapshot(problem: Problem) -> dict[str, Any]:
    model = problem.model
    state: dict[str, Any] = {}
    for name, p in model.named_parameters():
        state[f"parameter {name}"] = _tensor(p)
        state[f"parameter {name} .grad"] = _tensor(p.grad)
        state[f"parameter {name} requires_grad"] = p.requires_grad
    for name, b in model.named_buffers():
        state[f"buffer {name}"] = _tensor(b)
    for name, m in model.named_modules():
        state[f"module {name or '<root>'} training"] = m.training
    state["torch global RNG"] = _bits(torch.get_rng_state())
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state["NumPy global RNG"] = (kind, keys.tobytes(), pos, has_gauss, gauss)
    state["inputs"] = _tensor(problem.inputs)
    state["inputs .grad"] = _tensor(problem.inputs.grad)
    state["target"] = _tensor(problem.target)
    state["loss weight"] = _tensor(problem.loss_fn.weight)
    return state


def _assert_unchanged(where: str, before: dict[str, Any], after: dict[str, Any]) -> None:
    assert before.keys() == after.keys(), (
        f"{where}: the set of state entries changed: {sorted(before.keys() ^ after.keys())}"
    )
    changed = [k for k in before if before[k] != after[k]]
    assert not changed, (
        f"{where}: changed {changed}; first: before {before[changed[0]]!r:.200} vs after "
        f"{after[changed[0]]!r:.200}"
    )


def _converts(problem: Problem) -> bool:
    """Whether the oracle supports every module of the model (BatchNorm rows may not be)."""
    try:
        capture(problem.model, [(tuple(problem.inputs.shape), "float")])
    except UnsupportedModuleError:
        return False
    return True


@pytest.mark.parametrize("fn", FUNCTIONS)
@pytest.mark.parametrize("row", MODELS, ids=lambda r: r.name)
def test_nothing_the_caller_owns_changes(row: Row, fn: str):
    problem = _problem(row)
    np.random.seed(1234)  # a known legacy state, which the call must leave as it is
    before = _snapshot(problem)
    supported = _converts(problem)
    _assert_unchanged(f"{row.name}: torch_ref.capture.capture", before, _snapshot(problem))
    args = (problem.model, problem.loss_fn, problem.inputs, problem.target)
    if supported:
        try:
            FUNCTIONS[fn](*args, l2=0.1)
        except AssertionError:  # a gradient mismatch is other tests' business; state is ours
            assert fn == "assert_gradients_close", f"{row.name}: {fn} raised AssertionError"
    else:
        with pytest.raises(UnsupportedModuleError, match=r"BatchNorm1d"):
            FUNCTIONS[fn](*args, l2=0.1)
    _assert_unchanged(f"{row.name}: {fn}", before, _snapshot(problem))


def test_snapshot_sees_each_kind_of_change():
    """The comparison bites: each promise, broken on purpose, is reported by name."""
    breakers: dict[str, Callable[[Problem], None]] = {
        "parameter 0.weight": lambda p: (
            p.model[0]
            .weight.data.view(-1)[:1]
            .copy_(torch.nextafter(p.model[0].weight.data.view(-1)[:1], torch.tensor(9.0).double()))
        ),
        "parameter 0.bias .grad": lambda p: setattr(
            p.model[0].bias, "grad", torch.zeros(6).double()
        ),
        "parameter 0.weight .grad": lambda p: p.model[0].weight.grad.mul_(1.0 + 2**-40),
        "parameter 3.bias requires_grad": lambda p: p.model[3].bias.requires_grad_(False),
        "buffer 1.running_mean": lambda p: p.model[1].running_mean.add_(1.0),
        "buffer 1.num_batches_tracked": lambda p: p.model[1].num_batches_tracked.add_(1),
        "module 1 training": lambda p: p.model[1].eval(),
        "torch global RNG": lambda p: torch.rand(1),
        "NumPy global RNG": lambda p: np.random.rand(),
        "inputs": lambda p: p.inputs.data.mul_(-1.0),
        "inputs .grad": lambda p: (p.inputs * 1.0).sum().backward(),
        "loss weight": lambda p: setattr(p.loss_fn, "weight", p.loss_fn.weight.clone()),
    }
    for what, breaks in breakers.items():
        problem = _problem(MODELS[2])
        before = _snapshot(problem)
        breaks(problem)
        with pytest.raises(AssertionError, match=rf"changed \[.*{re.escape(repr(what))}"):
            _assert_unchanged("planted", before, _snapshot(problem))


# --- the returned grads ----------------------------------------------------------------


def _autograd(model: nn.Module, problem: Problem, l2: float) -> dict[str, torch.Tensor]:
    """∂L/∂θ by torch.autograd on a float64 deep copy (ties survive deepcopy)."""
    twin = copy.deepcopy(model).to(torch.float64)
    loss_fn = copy.deepcopy(problem.loss_fn).to(torch.float64)
    loss = loss_fn(twin(problem.inputs.detach().double()), problem.target)
    weights = {id(m.weight): m.weight for m in twin.modules() if isinstance(m, nn.Linear)}
    loss = loss + 0.5 * l2 * sum((w**2).sum() for w in weights.values())
    named = {n: p for n, p in twin.named_parameters() if p.requires_grad}
    grads = torch.autograd.grad(loss, list(named.values()))
    return dict(zip(named, grads, strict=True))


def _assert_close(where: str, got: torch.Tensor, want: torch.Tensor) -> None:
    got, want = got.detach().double(), want.detach().double()
    err = (got - want).abs()
    bound = 1e-12 + 1e-10 * want.abs().max()
    if not bool(err.max() <= bound):
        i = tuple(int(k) for k in np.unravel_index(int(err.argmax()), tuple(err.shape)))
        raise AssertionError(
            f"{where} at index {i}: manual {got[i].item()!r} vs autograd {want[i].item()!r} "
            f"(|diff| {err[i].item():.3e} > {bound.item():.3e})"
        )


@pytest.mark.parametrize(
    "row",
    [pytest.param(r, id=r.name) for r in MODELS],
)
def test_grads_have_the_keys_shapes_dtypes_devices_of_the_parameters(row: Row):
    problem = _problem(row)
    if not _converts(problem):
        pytest.skip(f"{row.name}: the oracle does not support this model yet")
    grads = torch_ref.manual_gradients(
        problem.model, problem.loss_fn, problem.inputs, problem.target, l2=0.1
    )
    trace = torch_ref.manual_trace(
        problem.model, problem.loss_fn, problem.inputs, problem.target, l2=0.1
    )
    params = {n: p for n, p in problem.model.named_parameters() if p.requires_grad}
    assert list(grads) == list(params), f"{row.name}: keys {list(grads)} vs {list(params)}"
    assert list(trace.grads) == list(params), f"{row.name}: trace keys {list(trace.grads)}"
    for name, p in params.items():
        g = grads[name]
        assert (g.shape, g.dtype, g.device) == (p.shape, p.dtype, p.device), (
            f"{row.name}: grad of {name} is {tuple(g.shape)} {g.dtype} {g.device}, parameter "
            f"{tuple(p.shape)} {p.dtype} {p.device}"
        )
        assert trace.grads[name].dtype == torch.float64, f"{row.name}: trace grad {name}"
        assert g is not p.grad and g.data_ptr() != p.data_ptr(), f"{row.name}: {name} aliased"
    want = _autograd(problem.model, problem, l2=0.1)
    for name in params:
        _assert_close(f"{row.name}: grad of {name}", trace.grads[name], want[name])


def test_frozen_parameter_is_not_returned_but_feeds_the_forward():
    problem = _problem(Row("frozen", _frozen))
    model = problem.model
    grads = torch_ref.manual_gradients(model, problem.loss_fn, problem.inputs, problem.target)
    assert "0.bias" not in grads and set(grads) == {"0.weight", "2.weight", "2.bias"}, list(grads)
    trace = torch_ref.manual_trace(model, problem.loss_fn, problem.inputs, problem.target)
    with torch.no_grad():
        want_loss = problem.loss_fn(model(problem.inputs), problem.target).item()
        zeroed = copy.deepcopy(model)
        zeroed[0].bias.zero_()
        loss_without = problem.loss_fn(zeroed(problem.inputs), problem.target).item()
    assert abs(want_loss - loss_without) > 1e-3, "precondition: the frozen bias matters"
    assert trace.loss == pytest.approx(want_loss, rel=1e-12, abs=1e-15), (
        f"loss: manual {trace.loss!r} vs torch {want_loss!r} (without the frozen bias: "
        f"{loss_without!r})"
    )
    want = _autograd(model, problem, l2=0.0)
    for name, g in grads.items():
        _assert_close(f"frozen_bias: grad of {name}", g, want[name])


def _tied_grads(l2: float) -> tuple[Problem, dict[str, torch.Tensor]]:
    problem = _problem(Row("tied", _tied))
    args = (problem.model, problem.loss_fn, problem.inputs, problem.target)
    return problem, torch_ref.manual_gradients(*args, l2=l2)


def test_tied_weight_appears_once_with_the_sum_over_both_uses():
    problem, grads = _tied_grads(l2=0.0)
    assert list(grads) == ["0.weight", "0.bias", "2.bias", "4.weight", "4.bias"], list(grads)
    want = _autograd(problem.model, problem, l2=0.0)
    _assert_close("tied_weight: grad of 0.weight vs autograd", grads["0.weight"], want["0.weight"])
    # the same sum, use by use: untie, and add the two gradients
    untied = copy.deepcopy(problem.model)
    untied[2].weight = nn.Parameter(untied[0].weight.detach().clone())
    per_use = torch_ref.manual_gradients(untied, problem.loss_fn, problem.inputs, problem.target)
    for use in ("0.weight", "2.weight"):
        assert per_use[use].abs().max() > 1e-3, f"precondition: use {use} has a gradient"
    both = per_use["0.weight"] + per_use["2.weight"]
    _assert_close("tied_weight: grad of 0.weight vs the sum over uses", grads["0.weight"], both)


def test_tied_weight_is_decayed_once():
    """L2 runs over parameters, as named_parameters() lists them: a tied W counts once."""
    l2 = 0.3
    problem, grads = _tied_grads(l2=l2)
    _, undecayed = _tied_grads(l2=0.0)
    W = problem.model[0].weight.detach()
    decayed_once = undecayed["0.weight"] + l2 * W
    _assert_close("tied_weight: grad of 0.weight", grads["0.weight"], decayed_once)
    trace = torch_ref.manual_trace(
        problem.model, problem.loss_fn, problem.inputs, problem.target, l2=l2
    )
    plain = torch_ref.manual_trace(problem.model, problem.loss_fn, problem.inputs, problem.target)
    penalty = 0.5 * l2 * float((W.double() ** 2).sum()) + 0.5 * l2 * float(
        (problem.model[4].weight.detach().double() ** 2).sum()
    )
    assert trace.loss == pytest.approx(plain.loss + penalty, rel=1e-12), (
        f"loss with l2: manual {trace.loss!r} vs {plain.loss + penalty!r} (W counted once)"
    )
    want = _autograd(problem.model, problem, l2=l2)
    _assert_close("tied_weight: grad of 0.weight vs autograd", grads["0.weight"], want["0.weight"])


def test_a_module_recorded_whole_that_raises_leaves_torch_dispatch_as_it_was(monkeypatch):
    """Inside a module recorded whole the record's mode steps off torch's stack; when that
    module's forward raises, the mode is back and gone, and dispatch is on, as before."""

    def broken(*args: Any, **kwargs: Any) -> torch.Tensor:
        raise RuntimeError("a failure inside nn.Linear's forward")

    model = nn.Sequential(nn.Linear(F_IN, C))
    x, t = torch.randn(N, F_IN), torch.randint(0, C, (N,))
    monkeypatch.setattr(torch.nn.modules.linear.F, "linear", broken)
    with pytest.raises(ValueError, match="a failure inside nn.Linear's forward"):
        torch_ref.manual_gradients(model, nn.CrossEntropyLoss(), x, t)
    assert torch._C._len_torch_function_stack() == 0
    assert torch._C._is_torch_function_enabled()


def test_a_model_that_lists_its_tensors_its_own_way_gets_the_same_gradients():
    """A class that overrides named_modules / named_parameters / parameters (as wrappers
    do) is listed through its own methods, not the module tables: its gradients are the
    plain model's, under the same names."""

    class Listed(nn.Sequential):
        def named_modules(self, *args: Any, **kwargs: Any):  # type: ignore[override]
            yield from super().named_modules(*args, **kwargs)

        def named_parameters(self, *args: Any, **kwargs: Any):  # type: ignore[override]
            yield from super().named_parameters(*args, **kwargs)

        def parameters(self, recurse: bool = True):  # type: ignore[override]
            yield from super().parameters(recurse)

    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(F_IN, 6), nn.Tanh(), nn.Linear(6, C))
    listed = Listed(*copy.deepcopy(list(plain)))
    x, t = torch.randn(N, F_IN), torch.randint(0, C, (N,))
    want = torch_ref.manual_gradients(plain, nn.CrossEntropyLoss(), x, t)
    got = torch_ref.manual_gradients(listed, nn.CrossEntropyLoss(), x, t)
    assert list(got) == list(want)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=0)
    assert torch_ref.compare_gradients(listed, nn.CrossEntropyLoss(), x, t).ok


class _KeepsFloat32(nn.Linear):
    """A module whose own __deepcopy__ copies its tensors as they are (float32)."""

    def __deepcopy__(self, memo: dict) -> nn.Module:
        new = nn.Linear(self.in_features, self.out_features)
        new.load_state_dict(self.state_dict())
        new.__class__ = _KeepsFloat32
        return new


def _twin_tensors(model: nn.Module) -> list[torch.Tensor]:
    from torch_ref.twin import modules_of, tensors_of, twin_of

    return tensors_of(twin_of(model, modules_of(model)[1]))


def test_the_twin_is_float64_where_a_module_copies_itself():
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), _KeepsFloat32(3, 2))
    assert {t.dtype for t in _twin_tensors(model)} == {torch.float64}


def test_the_twin_holds_no_inference_tensor():
    with torch.inference_mode():
        made = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    assert not any(t.is_inference() for t in _twin_tensors(made))
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    with torch.inference_mode():  # (inside it, the copies are inference tensors: as they were)
        tensors = _twin_tensors(model)
    assert all(t.is_inference() for t in tensors)
    assert {t.dtype for t in tensors} == {torch.float64}


def _tagged() -> nn.Module:
    """A model holding a Parameter of a subclass (deepcopy copies it as it is: float32)."""

    class Tagged(nn.Parameter):
        pass

    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    model[2].scale = Tagged(torch.ones(3))
    return model


def test_the_twin_is_float64_where_a_parameter_is_of_a_subclass():
    model = _tagged()
    model[0].__dict__["alias"] = model[2].scale  # (a plain attribute, copied first)
    tensors = _twin_tensors(model)
    assert {t.dtype for t in tensors} == {torch.float64} and len(tensors) == 5


class _OwnListing(nn.Sequential):
    def named_modules(self, *args: Any, **kwargs: Any):  # type: ignore[override]
        yield from super().named_modules(*args, **kwargs)


def _shared() -> nn.Module:
    inner = nn.Linear(3, 3)
    model = nn.Sequential(nn.Linear(4, 3), inner, nn.Sequential(nn.Tanh(), inner))
    model.add_module("empty", None)  # (an empty slot: no module to walk)
    return model


@pytest.mark.parametrize(
    "build",
    [
        _shared,
        _tagged,
        lambda: nn.Sequential(nn.Linear(4, 3), nn.Tanh(), _KeepsFloat32(3, 2)),
        lambda: _OwnListing(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)),
    ],
    ids=["shared-module", "parameter-subclass", "own-deepcopy", "own-listing"],
)
@pytest.mark.parametrize("inference", [False, True])
def test_the_twins_walk_read_off_the_models_is_the_twins_own(build, inference: bool):
    """twin_and_walk reads the twin's modules off the model's walk through the copy's memo
    where it may: the walk it gives is module_walk(twin), path for path, module for module
    (shared modules under each path; a module that copies itself, a Parameter subclass, a
    class with its own listing, inference mode: the twin walked)."""
    from torch_ref.twin import lists_as_nn_module, module_walk, modules_of, twin_and_walk

    model = build()
    walk = module_walk(model) if lists_as_nn_module(model) else None
    with torch.inference_mode(inference):
        twin, twin_walk = twin_and_walk(model, modules_of(model, walk)[1], walk)
    assert (twin_walk is not None) == (build is _shared and not inference)  # (read off)
    want = module_walk(twin)
    if twin_walk is None:  # (the twin to be walked, where its run is: record() walks it)
        twin_walk = want
    assert [p for p, _ in twin_walk] == [p for p, _ in want]
    assert all(got is m for (_, got), (_, m) in zip(twin_walk, want, strict=True))
    assert not any(m is t for (_, m), (_, t) in zip(module_walk(model), twin_walk, strict=True))
