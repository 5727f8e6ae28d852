"""The gradient oracle: manual backprop on a torch model, and its comparison with autograd.

    L = loss_fn(model(inputs), target) + (l2/2) Σ ‖W‖²   (W: weights of Linear and Conv)

`manual_gradients` and `manual_trace` run the explicit-δ backprop of manual_bp in float64
NumPy; `compare_gradients` runs torch.autograd on a float64 copy of the model and sets the
two side by side. None of them changes anything the caller owns: parameters, `.grad`,
`requires_grad`, `training`, buffers, or torch's and NumPy's random state.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn

import manual_bp.losses as L
from manual_bp.network import Network, Result
from torch_ref.convert import Converted, convert
from torch_ref.losses import convert_loss, target_to_numpy
from torch_ref.report import GradientReport, compare

LossFn = Callable[..., torch.Tensor]


@dataclass
class Trace:
    """Everything the manual pass computed, as float64 CPU tensors.

    `deltas`: δ = ∂L/∂z of every Linear and Conv layer by qualified name; `outputs`: each
    leaf module's forward output; `grads`: ∂L/∂θ keyed like named_parameters().
    """

    loss: float
    grads: dict[str, torch.Tensor]
    deltas: dict[str, torch.Tensor]
    outputs: dict[str, torch.Tensor]
    network: Network = field(repr=False)
    result: Result = field(repr=False)


# --- input checks ------------------------------------------------------------------


def _check_finite(name: str, t: torch.Tensor, what: str) -> None:
    if not t.is_floating_point():
        return
    t = t.detach()
    if bool(torch.isfinite(t.sum())):  # a NaN or Inf anywhere makes the sum NaN or Inf
        return
    if not bool(torch.isfinite(t).all()):  # (a finite sum can also overflow: look closer)
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{what} {name!r} holds {bad} NaN/Inf value(s); expected finite values")


def _inputs_to_numpy(inputs: Any) -> np.ndarray:
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"inputs must be a torch.Tensor, got {type(inputs).__name__}")
    if not inputs.is_floating_point():
        raise ValueError(f"inputs must be a floating-point tensor, got dtype {inputs.dtype}")
    if inputs.ndim == 0 or inputs.shape[0] == 0 or inputs.numel() == 0:
        raise ValueError(f"inputs must hold a non-empty batch, got shape {tuple(inputs.shape)}")
    _check_finite("inputs", inputs, "the input tensor")
    return inputs.detach().to(device="cpu", dtype=torch.float64).numpy().copy()


def _check_target(loss: Any, target: Any) -> None:
    """The target's type and dtype as torch's loss takes it: class indices int64 or uint8,
    probabilities and regression targets floating (we refuse the integer targets torch
    would promote for MSE and friends, as we refuse the shapes it would broadcast)."""
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    name = type(loss).__name__
    if target.is_complex():
        raise ValueError(f"{name}: expected a real target, got dtype {target.dtype}")
    indices = "a target of class indices (int64 or uint8)"
    if isinstance(loss, L.NLLLoss):
        wanted = indices
    elif isinstance(loss, L.CrossEntropyLoss):
        wanted = f"{indices} or of probabilities (floating)"
    else:
        wanted = "a floating-point target"
    integer_ok = isinstance(loss, (L.CrossEntropyLoss, L.NLLLoss))
    if target.dtype in (torch.int64, torch.uint8) if integer_ok else target.is_floating_point():
        return
    if isinstance(loss, L.CrossEntropyLoss) and target.is_floating_point():
        return
    raise ValueError(f"{name}: expected {wanted}, got dtype {target.dtype}")


@dataclass
class _Problem:
    """A model, loss and batch, converted and checked, ready for the manual pass."""

    converted: Converted
    loss: Any
    x: np.ndarray
    target: np.ndarray
    l2: float
    params: dict[str, nn.Parameter]  # named_parameters() that require grad


def _prepare(model: nn.Module, loss_fn: LossFn, inputs: Any, target: Any, l2: float) -> _Problem:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(l2, bool) or not isinstance(l2, (int, float, np.integer, np.floating)):
        raise TypeError(f"l2 must be a finite number ≥ 0, got {l2!r}")
    if not np.isfinite(l2) or l2 < 0:
        raise ValueError(f"l2 must be a finite number ≥ 0, got {l2!r}")
    for name, p in model.named_parameters():
        _check_finite(name, p, "parameter")
    for name, buf in model.named_buffers():
        _check_finite(name, buf, "buffer")
    x = _inputs_to_numpy(inputs)
    loss = convert_loss(loss_fn)
    _check_target(loss, target)
    y = target_to_numpy(loss, target)
    if y.ndim > 0 and x.ndim > 1 and y.shape[0] != x.shape[0]:
        raise ValueError(
            f"inputs hold a batch of {x.shape[0]} but target a batch of {y.shape[0]} "
            f"(inputs {tuple(x.shape)}, target {tuple(y.shape)})"
        )
    converted = convert(model, x.shape)
    out_shape = converted.shapes[converted.network.output]
    loss.check(out_shape, y)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    return _Problem(converted, loss, x, y, float(l2), params)


@dataclass
class _Pass:
    """One manual pass: the loss with its L2 term, ∂L/∂θ by parameter name, the raw result."""

    loss: float
    grads: dict[str, np.ndarray]
    result: Result


def _run(problem: _Problem) -> _Pass:
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        result = problem.converted.network.loss_and_gradients(
            problem.x, problem.target, problem.loss, input_grad=False
        )
    grads = _param_grads(problem, result)
    penalty = _l2_penalty(problem, grads)
    # NaN/Inf make the sum non-finite; only then look at every entry (the sum may overflow)
    broken = [n for n, g in grads.items() if not np.isfinite(g.sum()) and not np.isfinite(g).all()]
    if not np.isfinite(result.loss + penalty) or broken:
        raise ValueError(
            f"the loss ({result.loss}) or the gradients of {broken or 'no parameter'} are not "
            "finite in float64: the inputs or parameters are too large for a meaningful gradient"
        )
    return _Pass(result.loss + penalty, grads, result)


def _l2_penalty(problem: _Problem, grads: dict[str, np.ndarray]) -> float:
    """(l2/2) Σ‖W‖² over the weights of Linear and Conv layers, adding l2·W to their grads.

    Counted once per parameter tensor: a weight shared by two layers is one term, as it is
    one parameter (the network's own `l2_penalty` would count each layer)."""
    if not problem.l2:
        return 0.0
    by_tensor = {id(p): name for name, p in problem.params.items()}
    value, seen = 0.0, set()
    for node in problem.converted.network.nodes:
        for p in node.layer.decayed:
            tensor = problem.converted.origins[(node.name, p)]
            if id(tensor) in seen:
                continue
            seen.add(id(tensor))
            W = node.layer.params[p]
            value += 0.5 * problem.l2 * float(np.sum(W * W))
            if id(tensor) in by_tensor:
                name = by_tensor[id(tensor)]
                grads[name] = grads[name] + problem.l2 * W
    return value


def _deltas(problem: _Problem, result: Result) -> dict[str, np.ndarray]:
    """δ of every Linear/Conv layer; zero for a layer the loss does not depend on."""
    shapes = problem.converted.shapes
    return {
        n: result.deltas[n] if n in result.deltas else np.zeros(shapes[n])
        for n in problem.converted.delta_nodes
    }


def _param_grads(problem: _Problem, result: Result) -> dict[str, np.ndarray]:
    """∂L/∂θ keyed like named_parameters(); a parameter used twice gets the sum."""
    by_tensor = {id(p): name for name, p in problem.params.items()}
    grads: dict[str, np.ndarray] = {}
    for (node, p), tensor in problem.converted.origins.items():
        name = by_tensor.get(id(tensor))
        g = result.gradients.grads.get(node, {}).get(p)
        if name is not None and g is not None:
            grads[name] = grads[name] + g if name in grads else g
    return {
        name: grads[name] if name in grads else np.zeros(tuple(p.shape))
        for name, p in problem.params.items()
    }


def _as_tensors(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {
        k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64)) for k, v in arrays.items()
    }


# --- the public functions ------------------------------------------------------------


def manual_gradients(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    target: torch.Tensor,
    *,
    l2: float = 0.0,
) -> dict[str, torch.Tensor]:
    """∂L/∂θ by explicit backprop, keyed like named_parameters(), each in its parameter's
    shape, dtype and device (arithmetic in float64 NumPy)."""
    problem = _prepare(model, loss_fn, inputs, target, l2)
    grads = _run(problem).grads
    return {
        name: torch.from_numpy(grads[name]).to(device=p.device, dtype=p.dtype)
        for name, p in problem.params.items()
    }


def manual_trace(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    target: torch.Tensor,
    *,
    l2: float = 0.0,
) -> Trace:
    """The whole manual pass: loss, ∂L/∂θ, δ of every Linear/Conv layer, every output."""
    problem = _prepare(model, loss_fn, inputs, target, l2)
    manual = _run(problem)
    result = manual.result
    tape = result.tape
    outputs = {
        m: (tape.z if which == "z" else tape.a)[node]
        for m, (which, node) in problem.converted.module_outputs.items()
    }
    return Trace(
        loss=manual.loss,
        grads=_as_tensors(manual.grads),
        deltas=_as_tensors(_deltas(problem, result)),
        outputs=_as_tensors(outputs),
        network=problem.converted.network,
        result=result,
    )


class _Capture(fx.Interpreter):
    """Runs the traced graph on the float64 twin and keeps the values δ is taken of."""

    def __init__(self, gm: fx.GraphModule, names: set[str]) -> None:
        super().__init__(gm)
        self.names, self.values = names, {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if n.name in self.names:
            self.values[n.name] = out
        return out


def _float64(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor) and obj.is_floating_point():
        return obj.detach().to(torch.float64)
    return obj


def _float64_loss(loss_fn: LossFn) -> LossFn:
    """The loss with its weight tensors in float64 (a copy: the caller's loss is untouched)."""
    if isinstance(loss_fn, nn.Module):
        return copy.deepcopy(loss_fn).to(torch.float64)
    if isinstance(loss_fn, functools.partial):
        return functools.partial(
            loss_fn.func,
            *map(_float64, loss_fn.args),
            **{k: _float64(v) for k, v in loss_fn.keywords.items()},
        )
    return loss_fn


def _autograd(
    problem: _Problem, model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor, target: torch.Tensor
) -> tuple[float, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Loss, ∂L/∂θ and δ by torch.autograd on a float64 deep copy of the model."""
    twin = copy.deepcopy(model).to(torch.float64)
    for m in twin.modules():
        if getattr(m, "inplace", False):
            m.inplace = False  # an in-place op would overwrite the z we take δ of
    graph = copy.deepcopy(problem.converted.graph)
    for n in graph.nodes:
        if n.kwargs.get("inplace"):
            n.kwargs = {**n.kwargs, "inplace": False}
    gm = fx.GraphModule(twin, graph)
    fx_of = problem.converted.fx_names
    delta_fx = {fx_of[n] for n in problem.converted.delta_nodes}
    device = inputs.device
    with torch.enable_grad():
        capture = _Capture(gm, delta_fx)
        out = capture.run(inputs.detach().to(device=device, dtype=torch.float64))
        loss = _float64_loss(loss_fn)(out, _float64(target.detach().to(device)))
        twin_params = dict(twin.named_parameters())
        if problem.l2:
            decayed = {
                id(problem.converted.origins[(node.name, p)])
                for node in problem.converted.network.nodes
                for p in node.layer.decayed
            }
            names = [n for n, p in model.named_parameters() if id(p) in decayed]
            loss = loss + 0.5 * problem.l2 * sum((twin_params[n] ** 2).sum() for n in names)
        wrt_names = [n for n in problem.params]
        wrt = [twin_params[n] for n in wrt_names] + [
            capture.values[fx_of[n]] for n in problem.converted.delta_nodes
        ]
        grads = torch.autograd.grad(loss, wrt, allow_unused=True) if wrt else ()
    as_np = [
        np.zeros(tuple(t.shape)) if g is None else g.detach().cpu().numpy()
        for t, g in zip(wrt, grads, strict=True)
    ]
    k = len(wrt_names)
    return (
        float(loss.detach()),
        dict(zip(wrt_names, as_np[:k], strict=True)),
        dict(zip(problem.converted.delta_nodes, as_np[k:], strict=True)),
    )


def compare_gradients(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    target: torch.Tensor,
    *,
    l2: float = 0.0,
    rtol: float = 1e-7,
    atol: float = 1e-10,
) -> GradientReport:
    """Manual ∂L/∂θ and δ against torch.autograd on a float64 copy, tensor by tensor."""
    problem = _prepare(model, loss_fn, inputs, target, l2)
    manual = _run(problem)
    loss_ag, ag_grads, ag_deltas = _autograd(problem, model, loss_fn, inputs, target)
    report = GradientReport(manual.loss, loss_ag, rtol=rtol, atol=atol)
    for name in problem.params:
        report.rows.append(compare("param", name, manual.grads[name], ag_grads[name], rtol, atol))
    for name, delta in _deltas(problem, manual.result).items():
        report.rows.append(compare("delta", name, delta, ag_deltas[name], rtol, atol))
    return report


def assert_gradients_close(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    target: torch.Tensor,
    *,
    l2: float = 0.0,
    rtol: float = 1e-7,
    atol: float = 1e-10,
) -> GradientReport:
    """compare_gradients, raising AssertionError with the report table on any mismatch."""
    report = compare_gradients(model, loss_fn, inputs, target, l2=l2, rtol=rtol, atol=atol)
    if not report.ok:
        raise AssertionError("manual gradients differ from torch.autograd\n" + str(report))
    return report
