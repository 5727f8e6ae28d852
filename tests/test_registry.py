"""Generic tests over every row of the op registry, in the spirit of torch's OpInfo tests.

For every row's samples: the oracle against the user's own autograd at rtol 1e-9 (every
parameter, δ and input gradient); for linear rows, the adjoint identity ⟨J v, u⟩ = ⟨v, Jᵀ u⟩
of the manual backward alone (no torch); nothing the caller owns changes. For every row's
refusals: the declared error and message. And the table itself: every name reaches its row,
and every row that computes on tensors has samples.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn
from _tolerances import TOLERANCES

import torch_ref
from torch_ref.capture import capture
from torch_ref.registry import (
    lookup_function,
    lookup_method,
    lookup_module,
    registry,
    with_supported_table,
)
from torch_ref.registry.core import OpEntry, Refusal, Sample

TOL = TOLERANCES["model"]
#: rows whose values are plain sizes (no tensor to differentiate)
NO_SAMPLES = {
    "getitem", "floordiv", "size", "dim", "numel", "getattr", "is_floating_point",
    "_none_or_dtype", "_canonical_mask", "_nested_tensor_from_mask_left_aligned",
}  # fmt: skip

ROWS = registry()


class SampleModel(nn.Module):
    """`sample.fn(*inputs, **params)` with the params as nn.Parameters (model tensors, as a
    user writes them), or `sample.module(*inputs)`."""

    def __init__(self, fn: Any, params: dict[str, torch.Tensor], module: nn.Module | None):
        super().__init__()
        self.fn = fn
        self.names = tuple(params)
        for k, v in params.items():
            self.register_parameter(k, nn.Parameter(v.detach().clone()))
        self.module = module

    def forward(self, a: Any, b: Any = None, c: Any = None, d: Any = None) -> torch.Tensor:
        inputs = tuple(x for x in (a, b, c, d) if x is not None)
        if self.module is not None:
            return self.module(*inputs)
        return self.fn(*inputs, **{k: getattr(self, k) for k in self.names})


def _model(case: Sample | Refusal) -> SampleModel:
    module = copy.deepcopy(case.module) if case.module is not None else None
    return SampleModel(case.fn, dict(case.params), module)


def _cases(kind: str) -> list[Any]:
    out = []
    for row in ROWS:
        cases = row.samples() if kind == "samples" else row.refusals()
        for case in cases:
            out.append(pytest.param(row, case, id=f"{row.name}: {case.name}"))
    return out


SAMPLES = _cases("samples")
REFUSALS = _cases("refusals")


def _target(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    with torch.no_grad():
        out = copy.deepcopy(model)(*inputs)
    g = torch.Generator().manual_seed(7)
    return torch.randn(out.shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize(("row", "sample"), SAMPLES)
def test_sample_matches_autograd(row: OpEntry, sample: Sample) -> None:
    for training in (False, True) if sample.train else (False,):
        model = _model(sample).train(training)
        target = _target(model, sample.inputs)
        loss = nn.MSELoss(reduction="sum")
        report = torch_ref.compare_gradients(
            model, loss, sample.inputs, target, input_grads=True, **TOL
        )
        assert report.ok, f"{row.name}: {sample.name} (training={training})\n{report}"
        floats = sum(x.is_floating_point() for x in sample.inputs)
        inputs = [r for r in report.rows if r.kind == "input"]
        assert len(inputs) == floats, f"{row.name}: input rows {inputs}"


def _adjoint(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[float, float]:
    """⟨J v, u⟩ and ⟨v, Jᵀ u⟩ for the manual network of `model` at its inputs, J v formed as
    f(x + v) − f(x) (exact for an affine f), Jᵀ u by the manual backward."""
    captured = capture(model, [(tuple(x.shape), "float") for x in inputs])
    net = captured.network
    rng = np.random.default_rng(0)
    xs = tuple(x.detach().double().numpy() for x in inputs)
    vs = tuple(rng.normal(size=x.shape) for x in xs)
    y0, tape = net.forward(*xs)
    y1, _ = net.forward(*(x + v for x, v in zip(xs, vs, strict=True)))
    u = rng.normal(size=np.shape(y0))
    grads = net.backward(tape, u).dL_dinputs
    jv_u = float(np.sum((np.asarray(y1) - np.asarray(y0)) * u))
    v_jtu = sum(float(np.sum(v * grads[n])) for n, v in zip(net.inputs, vs, strict=True)
                if n in grads)  # fmt: skip
    return jv_u, v_jtu


@pytest.mark.parametrize(("row", "sample"), [p for p in SAMPLES if p.values[0].linear])
def test_linear_rows_satisfy_the_adjoint_identity(row: OpEntry, sample: Sample) -> None:
    if not all(x.is_floating_point() for x in sample.inputs):
        pytest.skip("integer inputs: no direction to move them in")
    jv_u, v_jtu = _adjoint(_model(sample).eval(), sample.inputs)
    scale = max(abs(jv_u), abs(v_jtu), 1.0)
    assert abs(jv_u - v_jtu) <= 1e-10 * scale, f"{row.name}: {sample.name}: {jv_u} vs {v_jtu}"


def test_the_adjoint_check_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """A transpose that is off (δ_prev scaled by 1.01) breaks the identity."""
    from manual_bp.ops.arithmetic import Scale

    def wrong(self: Scale, delta: np.ndarray, cache: Any) -> tuple[np.ndarray, dict]:
        return 1.01 * self.c * delta, {}

    monkeypatch.setattr(Scale, "backward", wrong)
    x = torch.randn(3, 4, dtype=torch.float64)
    jv_u, v_jtu = _adjoint(SampleModel(lambda x: 3 * x, {}, None), (x,))
    assert abs(jv_u - v_jtu) > 1e-3 * abs(jv_u)


@pytest.mark.parametrize(("row", "sample"), SAMPLES[::3])
def test_sample_changes_nothing_the_caller_owns(row: OpEntry, sample: Sample) -> None:
    model = _model(sample).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inputs = tuple(x.clone() for x in sample.inputs)
    target = _target(model, inputs)
    torch_ref.compare_gradients(model, nn.MSELoss(), inputs, target, input_grads=True)
    for k, v in model.state_dict().items():
        assert torch.equal(before[k], v), f"{row.name}: {k} changed"
    assert all(p.grad is None for p in model.parameters()), f"{row.name}: .grad set"
    for x, x0 in zip(inputs, sample.inputs, strict=True):
        assert torch.equal(x, x0) and x.grad is None and not x.requires_grad, row.name


@pytest.mark.parametrize(("row", "refusal"), REFUSALS)
def test_refusal(row: OpEntry, refusal: Refusal) -> None:
    model = _model(refusal)
    with pytest.raises(refusal.error, match=refusal.match):  # (∂L/∂x: parameterless too)
        torch_ref.manual_trace(
            model, lambda out, t: out.sum(), refusal.inputs, None, input_grads=True
        )


def test_every_name_reaches_its_row() -> None:
    for row in ROWS:
        for fn in row.functions:
            assert lookup_function(fn) is row, f"{fn} does not reach {row.name}"
        for m in row.methods:
            assert lookup_method(m) is row, f"Tensor.{m} does not reach {row.name}"
        for cls in row.modules:
            assert lookup_module(cls) is row, f"{cls.__name__} does not reach {row.name}"


def test_every_row_that_computes_on_tensors_has_samples() -> None:
    missing = [r.name for r in ROWS if r.name not in NO_SAMPLES and not list(r.samples())]
    assert not missing, f"rows without samples: {missing}"


def test_row_names_are_unique() -> None:
    names = [r.name for r in ROWS]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_the_readme_table_of_what_is_supported_is_generated_from_the_registry() -> None:
    """docs/ops.md's table of what is supported is supported_markdown() (`make readme`)."""
    readme = (Path(__file__).resolve().parents[1] / "docs" / "ops.md").read_text()
    assert with_supported_table(readme) == readme, "run `make readme` and review the diff"


def test_a_drifted_table_is_caught() -> None:
    readme = (Path(__file__).resolve().parents[1] / "docs" / "ops.md").read_text()
    drifted = readme.replace("| affine | linear |", "| affine | linear (edited by hand) |")
    assert drifted != readme and with_supported_table(drifted) != drifted
