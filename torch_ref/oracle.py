"""The gradient oracle: manual backprop on a torch model, and its comparison with autograd.

    L = loss_fn(model(*inputs), target) + (l2/2) Σ ‖W‖²   (W: weights of Linear and Conv)

`manual_gradients` and `manual_trace` run the explicit-δ backprop of manual_bp in float64
NumPy on the model captured by torch_ref.capture. `compare_gradients` runs torch.autograd on
the user's own model (a float64 deep copy, its real forward: custom autograd Functions and
all) and sets the two side by side; δ is taken on the real modules by forward hooks (and
on functional layers by a torch-function mode), which change nothing that runs.

Where a tensor differs, the comparison looks for kinks and ties that rounding decided
(torch_ref.ties) before calling it a failure. None of these functions changes anything the
caller owns: parameters, `.grad`, `requires_grad`, `training`, buffers, or torch's and
NumPy's random state.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

import manual_bp.losses as L
from manual_bp import parallel
from manual_bp.network import Network, Result
from torch_ref import custom, ties
from torch_ref.capture import Captured, capture
from torch_ref.losses import convert_loss, target_to_numpy
from torch_ref.registry import lookup_module
from torch_ref.report import GradientReport, Row, as_tie, compare, magnitude

LossFn = Callable[..., torch.Tensor]
Inputs = torch.Tensor | Sequence[torch.Tensor]


@dataclass
class Trace:
    """Everything the manual pass computed, as float64 CPU tensors.

    `deltas`: δ = ∂L/∂z of every weighted layer (Linear, Conv, ...) by qualified name; for a
    recurrent layer, δ of every time step, (layers × directions, T, N, gates · H), time-major
    whatever batch_first says (a cell: (N, gates · H));
    `outputs`: each leaf module's forward output; `grads`: ∂L/∂θ keyed like
    named_parameters(); `input_grads`: ∂L/∂x for each floating input (a tensor, or a tuple
    matching `inputs`) when asked for with `input_grads=True`, else None.
    """

    loss: float
    grads: dict[str, torch.Tensor]
    deltas: dict[str, torch.Tensor]
    outputs: dict[str, torch.Tensor]
    input_grads: torch.Tensor | tuple[torch.Tensor | None, ...] | None = None
    #: recurrent layers: ∂L/∂h_t of every step, (layers × directions, T, N, H) by layer name
    #: (an LSTM's ∂L/∂c_t under "<name>.c"); their δ of every step is in `deltas`
    hidden_grads: dict[str, torch.Tensor] = field(default_factory=dict)
    #: parameter name → the parameters that share a layer with it (for the report's scale)
    layers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    network: Network = field(default=None, repr=False)  # type: ignore[assignment]
    result: Result = field(default=None, repr=False)  # type: ignore[assignment]


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


def _check_layout(name: str, t: torch.Tensor) -> None:
    """Sparse, meta and quantised tensors hold no plain values to read."""
    what = f"{name} of shape {tuple(t.shape)}"
    if t.layout != torch.strided:
        raise ValueError(f"expected a dense (strided) tensor, got {what} as {t.layout}")
    if t.is_meta:
        raise ValueError(f"expected real values, got {what} on the meta device (no values)")
    if t.is_quantized:
        raise ValueError(f"expected a float or integer tensor, got {what} quantized ({t.dtype})")


def _as_inputs(inputs: Any) -> tuple[torch.Tensor, ...]:
    """The model's inputs as a tuple, each checked: dense, floating (or integer/bool token ids
    and indices), a non-empty batch, finite values."""
    xs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    if not xs:
        raise ValueError("inputs is an empty tuple; expected a tensor or a tuple of tensors")
    for k, x in enumerate(xs):
        name = "inputs" if len(xs) == 1 else f"inputs[{k}]"
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"{name} must be a torch.Tensor (or a tuple of them), got {type(x).__name__}"
            )
        _check_layout(name, x)
        if x.is_complex():
            raise ValueError(
                f"{name} of shape {tuple(x.shape)} is complex ({x.dtype}); expected real values"
            )
        if x.ndim == 0 or x.numel() == 0:
            raise ValueError(f"{name} must hold a non-empty batch, got shape {tuple(x.shape)}")
        _check_finite(name, x, "the input tensor")
    return xs


def _kind(t: torch.Tensor) -> str:
    if t.is_floating_point():
        return "float"
    return "bool" if t.dtype == torch.bool else "int"


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    """A float64 (or int64/bool) NumPy array on the CPU that cannot write into the caller's
    tensor: a read-only view of a float64 CPU tensor (no copy), else a copy."""
    t = t.detach()
    if t.device.type == "cpu" and t.dtype == torch.float64 and not t.is_conj():
        view = t.numpy().view()
        view.flags.writeable = False
        return view
    t = t.to("cpu")
    t = t.to(torch.float64) if t.is_floating_point() else t if t.dtype == torch.bool else t.long()
    return t.numpy().copy()


def _check_target(loss: Any, target: Any) -> None:
    """The target's type and dtype as torch's loss takes it: class indices int64 or uint8,
    probabilities and regression targets floating (we refuse the integer targets torch
    would promote for MSE and friends, as we refuse the shapes it would broadcast)."""
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    _check_layout("target", target)
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


def _loss_tensors(loss_fn: Any) -> dict[str, torch.Tensor]:
    """The tensors a loss carries (a class weight, pos_weight), module or partial."""
    if isinstance(loss_fn, nn.Module):
        return {n: t for n, t in vars(loss_fn).get("_buffers", {}).items() if t is not None} | {
            n: t for n, t in vars(loss_fn).items() if isinstance(t, torch.Tensor)
        }
    if isinstance(loss_fn, functools.partial):
        named = {f"argument {k}": a for k, a in enumerate(loss_fn.args)}
        return {n: t for n, t in (named | loss_fn.keywords).items() if isinstance(t, torch.Tensor)}
    return {}


def _check_l2(l2: Any) -> float:
    if isinstance(l2, bool) or not isinstance(l2, (int, float, np.integer, np.floating)):
        raise TypeError(f"l2 must be a finite number ≥ 0, got {l2!r}")
    if not np.isfinite(l2) or l2 < 0:
        raise ValueError(f"l2 must be a finite number ≥ 0, got {l2!r}")
    return float(l2)


def _check_tolerance(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a finite number ≥ 0, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number ≥ 0, got {value!r}")
    return float(value)


@dataclass
class _Problem:
    """A model, loss and batch, captured and checked, ready for the manual pass."""

    model: nn.Module
    loss_fn: LossFn
    inputs: tuple[torch.Tensor, ...]
    target: torch.Tensor
    captured: Captured
    loss: Any
    xs: tuple[np.ndarray, ...]
    y: np.ndarray
    l2: float
    params: dict[str, nn.Parameter]  # named_parameters() that require grad
    input_grads: bool

    @property
    def decayed(self) -> list[str]:
        """Qualified names of the weights in the L2 penalty, each once (a tied weight is one
        parameter, one term)."""
        names = (
            self.captured.params.get((node.name, p))
            for node in self.captured.network.nodes
            for p in node.layer.decayed
        )
        return list(dict.fromkeys(n for n in names if n is not None))


def _prepare(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Any,
    target: Any,
    l2: Any,
    *,
    input_grads: bool = False,
) -> _Problem:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    l2 = _check_l2(l2)
    for name, p in model.named_parameters():
        _check_layout(f"parameter {name!r}", p)
        _check_finite(name, p, "parameter")
    for name, buf in model.named_buffers():
        _check_layout(f"buffer {name!r}", buf)
        _check_finite(name, buf, "buffer")
    xs = _as_inputs(inputs)
    loss = convert_loss(loss_fn)
    for name, t in _loss_tensors(loss_fn).items():
        if t.requires_grad:
            raise ValueError(
                f"the loss's {name} requires grad; the oracle differentiates the model's "
                "parameters only: pass a tensor that does not require grad (weight.detach())"
            )
    _check_target(loss, target)
    y = target_to_numpy(loss, target)
    captured = capture(model, [(tuple(x.shape), _kind(x)) for x in xs])
    loss.check(captured.shapes[captured.network.output], y)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    arrays = tuple(_to_numpy(x) for x in xs)
    return _Problem(
        model, loss_fn, xs, target, captured, loss, arrays, y, l2, params, bool(input_grads)
    )


# --- the manual pass ----------------------------------------------------------------


@dataclass
class _Pass:
    """One manual pass: the loss with its L2 term, ∂L/∂θ by parameter name, the raw result."""

    loss: float
    grads: dict[str, np.ndarray]
    result: Result


@functools.cache
def _blas_pools() -> Any:
    """NumPy's BLAS thread pools (threadpoolctl's controller, found once), or None."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # (an optional dependency: then the pass runs as NumPy is set)
        return None
    return ThreadpoolController().select(user_api="blas")


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """NumPy's BLAS at one thread per call for the pass, the caller's setting back
    afterwards; the pass's large products split over as many threads of manual_bp.parallel
    (which sleep when idle) as the caller gave BLAS.

    NOTE: OpenBLAS's idle threads spin for ~0.1 s after each threaded call; next to torch's
    OpenMP pool in one process they fight for the cores, and the many small products of a
    convolutional pass each wait for a thread the machine may not give (measured in
    reports/benchmark: the NumPy pass of the ResNet took 15× longer at two BLAS threads)."""
    pools = _blas_pools()
    if pools is None or not pools.lib_controllers:
        yield
        return
    n = max(lib.num_threads for lib in pools.lib_controllers)
    with pools.limit(limits=1), parallel.threads(n):  # the caller's count, our own threads
        yield


def _run(problem: _Problem, result: Result | None = None, *, trace: bool = True) -> _Pass:
    """The manual pass (or, given a result replayed from an earlier one, its gradients).
    trace=False: the tape keeps what backward needs only (no δ, no outputs afterwards)."""
    if result is None:
        with _one_blas_thread(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            result = problem.captured.network.loss_and_gradients(
                problem.xs, problem.y, problem.loss, input_grad=problem.input_grads, trace=trace
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


def _param_grads(problem: _Problem, result: Result) -> dict[str, np.ndarray]:
    """∂L/∂θ keyed like named_parameters(); a parameter used in several places gets the sum."""
    grads: dict[str, np.ndarray] = {}
    for (node, p), name in problem.captured.params.items():
        g = result.gradients.grads.get(node, {}).get(p)
        if name in problem.params and g is not None:
            grads[name] = grads[name] + g if name in grads else g
    return {
        name: grads[name] if name in grads else np.zeros(tuple(p.shape))
        for name, p in problem.params.items()
    }


def _l2_penalty(problem: _Problem, grads: dict[str, np.ndarray]) -> float:
    """(l2/2) Σ‖W‖² over the weights of Linear and Conv layers, adding l2·W to their grads."""
    if not problem.l2:
        return 0.0
    value = 0.0
    for name in problem.decayed:
        W = _to_numpy(_named_tensor(problem.model, name))
        value += 0.5 * problem.l2 * float(np.sum(W * W))
        if name in grads:
            grads[name] = grads[name] + problem.l2 * W
    return value


def _named_tensor(model: nn.Module, name: str) -> torch.Tensor:
    params = dict(model.named_parameters())
    return params[name] if name in params else dict(model.named_buffers())[name]


def _deltas(problem: _Problem, result: Result) -> dict[str, np.ndarray]:
    """δ of every weighted layer; zero for a layer the loss does not depend on. A recurrent
    layer's δ is that of every time step (see `_steps`)."""
    shapes, nodes = problem.captured.shapes, _nodes(problem)
    out = {}
    for n in problem.captured.delta_nodes:
        steps = _steps(nodes[n].layer, result.tape.cache.get(n), "delta")
        if steps is not None:
            out[n] = steps
        elif n in result.deltas and isinstance(result.deltas[n], np.ndarray):
            out[n] = result.deltas[n]
        elif not _is_multi(shapes[n]):
            out[n] = np.zeros(shapes[n])
    return out


def _nodes(problem: _Problem) -> dict[str, Any]:
    return {node.name: node for node in problem.captured.network.nodes}


def _is_multi(shape: Any) -> bool:
    return bool(shape) and all(isinstance(s, tuple) for s in shape)


def _steps(layer: Any, cache: Any, what: str) -> np.ndarray | None:
    """A recurrent layer's record of backprop through time, stacked like torch's h_n: (layers ×
    directions, T, N, ·) for RNN/LSTM/GRU, (N, ·) for a cell. `what`: "delta" (∂L/∂ of the
    gate pre-activations), "dL_dh" (∂L/∂h_t) or "dL_dc" (LSTM's ∂L/∂c_t)."""
    record = getattr(cache, "bptt", None)
    if record is None:
        return None
    by_key = getattr(record, what)
    if not by_key:
        return None
    arrays = list(by_key.values())
    return arrays[0] if list(by_key) == [""] else np.stack(arrays)


def _hidden_grads(problem: _Problem, result: Result) -> dict[str, np.ndarray]:
    """∂L/∂h_t of every recurrent layer (and ∂L/∂c_t of an LSTM, as "<name>.c")."""
    nodes, out = _nodes(problem), {}
    for n in problem.captured.delta_nodes:
        cache = result.tape.cache.get(n)
        for what, key in (("dL_dh", n), ("dL_dc", f"{n}.c")):
            steps = _steps(nodes[n].layer, cache, what)
            if steps is not None:
                out[key] = steps
    return out


def _input_grads(problem: _Problem, result: Result) -> list[np.ndarray | None]:
    """∂L/∂x of each input (None for integer ones; zeros where the loss does not reach)."""
    by_name = result.gradients.dL_dinputs
    out: list[np.ndarray | None] = []
    for name, x in zip(problem.captured.network.inputs, problem.xs, strict=True):
        if not np.issubdtype(x.dtype, np.floating):
            out.append(None)
        else:
            out.append(by_name[name] if name in by_name else np.zeros(x.shape))
    return out


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def _as_tensors(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: _tensor(v) for k, v in arrays.items()}


# --- the public functions ------------------------------------------------------------


def manual_gradients(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Inputs,
    target: torch.Tensor,
    *,
    l2: float = 0.0,
) -> dict[str, torch.Tensor]:
    """∂L/∂θ by explicit backprop, keyed like named_parameters(), each in its parameter's
    shape, dtype and device (arithmetic in float64 NumPy)."""
    problem = _prepare(model, loss_fn, inputs, target, l2)
    grads = _run(problem, trace=False).grads
    return {
        name: torch.from_numpy(grads[name]).to(device=p.device, dtype=p.dtype)
        for name, p in problem.params.items()
    }


def manual_trace(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Inputs,
    target: torch.Tensor,
    *,
    l2: float = 0.0,
    input_grads: bool = False,
) -> Trace:
    """The whole manual pass: loss, ∂L/∂θ, δ of every weighted layer, every module output,
    and ∂L/∂x of the floating inputs with `input_grads=True`."""
    problem = _prepare(model, loss_fn, inputs, target, l2, input_grads=input_grads)
    manual = _run(problem)
    result = manual.result
    outputs = {m: result.tape.a[node] for m, node in problem.captured.module_outputs.items()}
    dx = None
    if input_grads:
        arrays = _input_grads(problem, result)
        as_t = tuple(None if a is None else _tensor(a) for a in arrays)
        dx = as_t if isinstance(inputs, (tuple, list)) else as_t[0]
    return Trace(
        loss=manual.loss,
        grads=_as_tensors(manual.grads),
        deltas=_as_tensors(_deltas(problem, result)),
        outputs={m: _tensor(np.asarray(v)) for m, v in outputs.items()},
        input_grads=dx,
        hidden_grads=_as_tensors(_hidden_grads(problem, result)),
        layers=_layer_groups(problem),
        network=problem.captured.network,
        result=result,
    )


# --- the reference: torch.autograd on the user's own model -----------------------------


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


class _FunctionProbes(TorchFunctionMode):
    """Keeps the outputs of chosen calls of torch functions (F.linear, F.conv2d, ...) in the
    user's forward: call k of function f. Returns a copy to the forward, so that an in-place
    op after it cannot overwrite the value δ is taken of."""

    def __init__(self, wanted: dict[tuple[Any, int], list[str]]) -> None:
        super().__init__()
        self.wanted = wanted
        self.counts: dict[Any, int] = {}
        self.values: dict[tuple[Any, int], Any] = {}
        #: > 0 inside a module the capture keeps whole (its inner calls are not the user's)
        self.depth = 0

    def enter(self, *args: Any) -> None:
        self.depth += 1

    def leave(self, *args: Any) -> None:
        self.depth -= 1

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if self.depth == 0 and any(f is func for f, _ in self.wanted):
            k = self.counts.get(func, 0)
            self.counts[func] = k + 1
            if (func, k) in self.wanted:
                self.values[(func, k)] = out
                return _handed_on(out)
        return out


def _handed_on(out: Any) -> Any:
    """What a probe hands on to the forward: a copy, in the autograd graph."""
    if isinstance(out, torch.Tensor):
        return out.clone()
    if isinstance(out, tuple):
        return tuple(_handed_on(o) for o in out)
    return out


def _pick(value: Any, index: int | None) -> Any:
    return value if index is None else value[index]


@dataclass
class _Reference:
    loss: float
    grads: dict[str, np.ndarray]
    deltas: dict[str, np.ndarray]
    input_grads: list[np.ndarray | None]
    output: torch.Tensor


def _autograd(problem: _Problem) -> _Reference:
    """Loss, ∂L/∂θ, δ and ∂L/∂x by torch.autograd on a float64 deep copy of the user's model,
    run as they run it."""
    if torch.is_inference_mode_enabled():
        raise ValueError(
            "compare_gradients is called inside torch.inference_mode(), where autograd cannot "
            "run; call it outside (manual_gradients and manual_trace work inside)"
        )
    captured = problem.captured
    twin = copy.deepcopy(problem.model).to(torch.float64)
    modules = dict(twin.named_modules())
    by_module: dict[str, list[tuple[int, int | None, str]]] = {}
    by_function: dict[tuple[Any, int], list[str]] = {}
    for node in captured.delta_nodes:
        probe = captured.probes.get(node)
        if probe is None:
            continue
        if probe.kind == "module":
            by_module.setdefault(probe.target, []).append((probe.call, probe.index, node))
        else:
            by_function.setdefault((probe.target, probe.call), []).append(node)
    seen: dict[str, Any] = {}
    handles = []
    for target, wanted in by_module.items():
        handles.append(modules[target].register_forward_hook(_module_probe(target, wanted, seen)))
    device = next((p.device for p in problem.model.parameters()), problem.inputs[0].device)
    inputs = tuple(
        x.detach().to(device=device, dtype=torch.float64).clone().requires_grad_(True)
        if x.is_floating_point()
        else x.detach().to(device)
        for x in problem.inputs
    )
    mode = _FunctionProbes(by_function)
    if by_function:  # calls inside modules kept whole are not counted (the trace sees none)
        for m in twin.modules():
            if lookup_module(type(m)) is not None:
                handles.append(m.register_forward_pre_hook(mode.enter))
                handles.append(m.register_forward_hook(mode.leave))
    try:
        with torch.enable_grad():
            if by_function:
                with mode:
                    out = twin(*inputs)
            else:
                out = twin(*inputs)
            loss = _float64_loss(problem.loss_fn)(out, _float64(problem.target.detach().to(device)))
            twin_params = dict(twin.named_parameters())
            if problem.l2:
                loss = loss + 0.5 * problem.l2 * sum(
                    (twin_params[n] ** 2).sum() for n in problem.decayed if n in twin_params
                )
    finally:
        for h in handles:
            h.remove()
    for (fn, k), nodes in by_function.items():
        for node in nodes:
            if (fn, k) in mode.values:
                seen[node] = _pick(mode.values[(fn, k)], captured.probes[node].index)
    names = list(problem.params)
    deltas = [
        n
        for n in captured.delta_nodes
        if isinstance(seen.get(n), torch.Tensor) and seen[n].requires_grad
    ]
    floats = [x for x in inputs if x.is_floating_point()] if problem.input_grads else []
    wrt = [twin_params[n] for n in names] + [seen[n] for n in deltas] + floats
    with torch.enable_grad():
        grads = torch.autograd.grad(loss, wrt, allow_unused=True) if wrt else ()
    as_np = [
        np.zeros(tuple(t.shape))
        if g is None
        else (g.to_dense() if g.is_sparse else g).detach().cpu().double().numpy()
        for t, g in zip(wrt, grads, strict=True)
    ]
    k, d = len(names), len(deltas)
    delta_grads = dict(zip(deltas, as_np[k : k + d], strict=True))
    float_grads = iter(as_np[k + d :])
    input_grads = [
        (next(float_grads) if problem.input_grads else None) if x.is_floating_point() else None
        for x in inputs
    ]
    return _Reference(
        float(loss.detach()),
        dict(zip(names, as_np[:k], strict=True)),
        {n: delta_grads.get(n, np.zeros(captured.shapes[n])) for n in seen if n in delta_grads},
        input_grads,
        out.detach(),
    )


def _module_probe(
    target: str, wanted: list[tuple[int, int | None, str]], seen: dict[str, Any]
) -> Callable[..., Any]:
    """A forward hook keeping output `index` of call k of the module for node `name`; hands a
    copy on (an in-place op after the module must not overwrite the value δ is taken of)."""
    calls = [0]

    def hook(module: nn.Module, args: Any, output: Any) -> Any:
        k = calls[0]
        calls[0] += 1
        hit = [(index, name) for call, index, name in wanted if call == k]
        if not hit:
            return None
        for index, name in hit:
            seen[name] = _pick(output, index)
        return _handed_on(output)

    return hook


def _layer_groups(problem: _Problem) -> dict[str, tuple[str, ...]]:
    """Parameter name → the parameters that share a layer with it (itself included)."""
    by_node: dict[str, list[str]] = {}
    for (node, _), name in problem.captured.params.items():
        if name in problem.params:
            by_node.setdefault(node, []).append(name)
    groups: dict[str, set[str]] = {name: {name} for name in problem.params}
    for names in by_node.values():
        for n in names:
            groups[n].update(names)
    return {name: tuple(sorted(g)) for name, g in groups.items()}


def layer_scales(
    groups: dict[str, tuple[str, ...]], grads: dict[str, np.ndarray]
) -> dict[str, float]:
    """Parameter name → the largest |gradient| among the parameters of its layer(s): what a
    mathematically zero gradient's rounding noise is measured against (torch_ref.report)."""
    return {
        name: max(magnitude(grads[n]) for n in group if n in grads)
        for name, group in groups.items()
        if name in grads
    }


def _rows(problem: _Problem, manual: _Pass, ref: _Reference, rtol: float, atol: float) -> list[Row]:
    """One row per parameter, per δ the reference could take, per floating input (if asked)."""
    scales = layer_scales(_layer_groups(problem), ref.grads)
    rows = [
        compare("param", n, manual.grads[n], ref.grads[n], rtol, atol, scale=scales[n])
        for n in problem.params
    ]
    recurrent = _hidden_grads(problem, manual.result)  # their δ is inside torch's kernel
    for name, delta in _deltas(problem, manual.result).items():
        theirs = ref.deltas.get(name)
        if name in recurrent or theirs is None or np.size(theirs) != np.size(delta):
            continue
        rows.append(compare("delta", name, delta, theirs.reshape(delta.shape), rtol, atol))
    if problem.input_grads:
        names = problem.captured.network.inputs
        pairs = zip(names, _input_grads(problem, manual.result), ref.input_grads, strict=True)
        rows.extend(
            compare("input", n, m, a, rtol, atol)
            for n, m, a in pairs
            if m is not None and a is not None
        )
    return rows


def compare_gradients(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Inputs,
    target: torch.Tensor,
    *,
    l2: float = 0.0,
    rtol: float = 1e-7,
    atol: float = 1e-10,
    input_grads: bool = False,
) -> GradientReport:
    """Manual ∂L/∂θ and δ (and ∂L/∂x with `input_grads=True`) against torch.autograd on a
    float64 copy of the user's own model, tensor by tensor.

    A tensor that differs is replayed with torch's branch decisions at the entries the manual
    forward found within rounding distance of a kink or tie (torch_ref.ties); if the replay
    matches, its row says "tie" (ok), else "fail"."""
    rtol, atol = _check_tolerance("rtol", rtol), _check_tolerance("atol", atol)
    problem = _prepare(model, loss_fn, inputs, target, l2, input_grads=input_grads)
    manual = _run(problem)
    ref = _autograd(problem)
    rows = _rows(problem, manual, ref, rtol, atol)
    if not all(r.ok for r in rows):
        replayed = ties.replay(problem, manual.result)
        if replayed is not None and replayed.changed:
            again = _rows(problem, _run(problem, replayed.result), ref, rtol, atol)
            layers = sorted(replayed.changed)
            rows = [
                as_tie(r, replayed.entries, layers) if not r.ok and r2.ok else r
                for r, r2 in zip(rows, again, strict=True)
            ]
    notes: list[str] = []
    if not all(r.ok for r in rows):  # name any custom autograd.Function that is responsible
        fn_rows, notes = custom.explain(problem, rtol, atol)
        rows.extend(fn_rows)
    return GradientReport(manual.loss, ref.loss, rows, rtol=rtol, atol=atol, notes=notes)


def assert_gradients_close(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Inputs,
    target: torch.Tensor,
    *,
    l2: float = 0.0,
    rtol: float = 1e-7,
    atol: float = 1e-10,
    input_grads: bool = False,
) -> GradientReport:
    """compare_gradients, raising AssertionError with the report table on any mismatch."""
    report = compare_gradients(
        model, loss_fn, inputs, target, l2=l2, rtol=rtol, atol=atol, input_grads=input_grads
    )
    if not report.ok:
        raise AssertionError("manual gradients differ from torch.autograd\n" + str(report))
    return report
