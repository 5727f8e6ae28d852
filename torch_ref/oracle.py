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
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from manual_bp import parallel
from manual_bp.network import Network, Result
from torch_ref import custom, ties
from torch_ref.errors import UnsupportedModuleError
from torch_ref.problem import Problem, prepare, unwrap
from torch_ref.recording import autograd_grads
from torch_ref.report import GradientReport, Row, as_tie, compare, magnitude
from torch_ref.tolerances import ATOL, RTOL

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


def _prepare(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Any,
    target: Any,
    l2: Any,
    *,
    input_grads: bool = False,
    reference: bool = True,
) -> Problem:
    return prepare(
        model, loss_fn, inputs, target, _check_l2(l2), input_grads=input_grads,
        reference=reference,
    )  # fmt: skip


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
    # (threadpoolctl's limit() does this too, after an info() of every library: ~12 µs a call)
    libs = pools.lib_controllers
    counts = [lib.num_threads for lib in libs]
    for lib, n in zip(libs, counts, strict=True):
        if n != 1:
            lib.set_num_threads(1)
    try:
        with parallel.threads(max(counts)):  # the caller's count, our own threads
            yield
    finally:
        for lib, n in zip(libs, counts, strict=True):
            if n != 1:
                lib.set_num_threads(n)


def _run(problem: Problem, result: Result | None = None, *, trace: bool = True) -> _Pass:
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
    broken = [
        n for n, g in grads.items() if not math.isfinite(g.sum()) and not np.isfinite(g).all()
    ]
    if not np.isfinite(result.loss + penalty) or broken:
        raise ValueError(
            f"the loss ({result.loss}) or the gradients of {broken or 'no parameter'} are not "
            "finite in float64: the inputs or parameters are too large for a meaningful gradient"
        )
    return _Pass(result.loss + penalty, grads, result)


def _param_grads(problem: Problem, result: Result) -> dict[str, np.ndarray]:
    """∂L/∂θ keyed like named_parameters(); a parameter used in several places gets the sum."""
    grads: dict[str, np.ndarray] = {}
    by_node, params = result.gradients.grads, problem.params
    for (node, p), name in problem.captured.params.items():
        g = by_node[node].get(p) if node in by_node else None
        if name in params and g is not None:
            grads[name] = grads[name] + g if name in grads else g
    return {
        name: grads[name] if name in grads else np.zeros(tuple(p.shape))
        for name, p in params.items()
    }


def _l2_penalty(problem: Problem, grads: dict[str, np.ndarray]) -> float:
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


def _deltas(problem: Problem, result: Result) -> dict[str, np.ndarray]:
    """δ of every weighted layer; zero for a layer the loss does not depend on. A recurrent
    layer's δ is that of every time step (see `_steps`)."""
    shapes = problem.captured.shapes
    out = {}
    for n in problem.captured.delta_nodes:
        steps = _steps(result.gradients.traces.get(n), "delta")
        if steps is not None:
            out[n] = steps
        elif n in result.deltas and isinstance(result.deltas[n], np.ndarray):
            out[n] = result.deltas[n]
        elif not _is_multi(shapes[n]):
            out[n] = np.zeros(shapes[n])
    return out


def _is_multi(shape: Any) -> bool:
    return bool(shape) and all(isinstance(s, tuple) for s in shape)


def _steps(record: Any, what: str) -> np.ndarray | None:
    """A recurrent layer's record of backprop through time (its declared inner trace, kept in
    Gradients.traces), stacked like torch's h_n: (layers × directions, T, N, ·) for
    RNN/LSTM/GRU, (N, ·) for a cell. `what`: "delta" (∂L/∂ of the gate pre-activations),
    "dL_dh" (∂L/∂h_t) or "dL_dc" (LSTM's ∂L/∂c_t)."""
    if record is None:
        return None
    by_key = getattr(record, what)
    if not by_key:
        return None
    arrays = list(by_key.values())
    return arrays[0] if list(by_key) == [""] else np.stack(arrays)


def _hidden_grads(problem: Problem, result: Result) -> dict[str, np.ndarray]:
    """∂L/∂h_t of every recurrent layer (and ∂L/∂c_t of an LSTM, as "<name>.c")."""
    out = {}
    for n in problem.captured.delta_nodes:
        record = result.gradients.traces.get(n)
        for what, key in (("dL_dh", n), ("dL_dc", f"{n}.c")):
            steps = _steps(record, what)
            if steps is not None:
                out[key] = steps
    return out


def _input_grads(problem: Problem, result: Result) -> list[np.ndarray | None]:
    """∂L/∂x of each input (None for integer ones; zeros where the loss does not reach)."""
    by_name = result.gradients.dL_dinputs
    out: list[np.ndarray | None] = []
    for name, x in zip(problem.captured.network.inputs, problem.xs, strict=True):
        if not np.issubdtype(x.dtype, np.floating):
            out.append(None)
        else:
            out.append(by_name[name] if name in by_name else np.zeros(x.shape))
    return out


def _like_inputs(problem: Problem, grads: list[torch.Tensor | None]) -> Any:
    """∂L/∂x arranged like the inputs: a tensor, a tuple (None for an entry that is not a
    floating tensor), or a dict by keyword."""
    by_name = dict(zip(problem.rec.network.inputs, grads, strict=True))
    if problem.form == "tensor":
        return grads[0]
    if problem.form == "dict":
        return {k: by_name.get(f"input.{k}") for k in problem.inputs}
    if len(problem.inputs) == 1:
        return (by_name.get("input"),)
    return tuple(by_name.get(f"input.{k}") for k in range(len(problem.inputs)))


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def _like(a: np.ndarray, p: torch.Tensor) -> torch.Tensor:
    """The gradient `a` as a tensor in `p`'s dtype and on its device (a view of `a` where
    they are float64 on the CPU already, as .to() gives)."""
    g = torch.from_numpy(a)
    return g if g.dtype == p.dtype and g.device == p.device else g.to(p.device, p.dtype)


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
    problem = _prepare(model, loss_fn, inputs, target, l2, reference=False)
    problem.release()  # (no reference here: torch's activations and graph go first)
    grads = _run(problem, trace=False).grads
    return {name: _like(grads[name], p) for name, p in problem.params.items()}


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
    problem = _prepare(model, loss_fn, inputs, target, l2, input_grads=input_grads, reference=False)
    problem.release()
    manual = _run(problem)
    result = manual.result
    outputs = {m: result.tape.a[node] for m, node in problem.captured.module_outputs.items()}
    dx = None
    if input_grads:
        arrays = _input_grads(problem, result)
        dx = _like_inputs(problem, [None if a is None else _tensor(a) for a in arrays])
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


@dataclass
class _Reference:
    loss: float
    grads: dict[str, np.ndarray]
    deltas: dict[str, np.ndarray]
    input_grads: list[np.ndarray | None]


def _numpy(g: torch.Tensor | None, like: torch.Tensor) -> np.ndarray:
    if g is None or g._is_zerotensor():  # (torch's zero gradient of sgn, ...: no values)
        return np.zeros(tuple(like.shape))
    return (g.to_dense() if g.is_sparse else g).detach().cpu().double().numpy()


def _autograd(problem: Problem) -> _Reference:
    """Loss, ∂L/∂θ, δ and ∂L/∂x by torch.autograd on the recorded run of the twin: the
    user's model run as they run it (custom backwards and all), in float64."""
    rec = problem.rec
    loss = rec.result
    twin_params = problem.twin_params
    if problem.l2:
        loss = loss + 0.5 * problem.l2 * sum(
            (twin_params[n] ** 2).sum() for n in problem.decayed if n in twin_params
        )
    names = [n for n in problem.params if n in twin_params]
    deltas = [n for n in rec.delta_nodes if n in rec.z_tensors and rec.z_tensors[n].requires_grad]
    floats = (
        [t for t in problem.twin_inputs.values() if t.is_floating_point()]
        if problem.input_grads
        else []
    )
    # a loss that closes over the model reads the caller's own parameters: autograd's
    # gradient for them (torch.autograd.grad writes no .grad) adds to the twin's
    caller = dict(unwrap(problem.model).named_parameters())
    read = [n for n in names if n in caller and caller[n].requires_grad]
    wrt = [twin_params[n] for n in names] + [rec.z_tensors[n] for n in deltas] + floats
    try:
        grads = autograd_grads(loss, wrt + [caller[n] for n in read], rec) if wrt else ()
    except RuntimeError as err:  # torch's own autograd refuses this program
        raise ValueError(
            f"torch.autograd cannot differentiate this forward, so there is no reference "
            f"to compare with ({err}); manual_gradients still gives the oracle's gradients"
        ) from None
    extra = dict(zip(read, grads[len(wrt) :], strict=True))
    grads = grads[: len(wrt)]
    as_np = [_numpy(g, t) for t, g in zip(wrt, grads, strict=True)]
    for k, n in enumerate(names):
        if extra.get(n) is not None:
            as_np[k] = as_np[k] + _numpy(extra[n], twin_params[n])
    k, d = len(names), len(deltas)
    float_grads = iter(as_np[k + d :])
    input_grads = [
        (next(float_grads) if problem.input_grads else None) if t.is_floating_point() else None
        for t in problem.twin_inputs.values()
    ]
    return _Reference(
        float(loss.detach()),
        dict(zip(names, as_np[:k], strict=True)),
        dict(zip(deltas, as_np[k : k + d], strict=True)),
        input_grads,
    )


def _layer_groups(problem: Problem) -> dict[str, tuple[str, ...]]:
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


def _rows(problem: Problem, manual: _Pass, ref: _Reference, rtol: float, atol: float) -> list[Row]:
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
    rtol: float = RTOL,
    atol: float = ATOL,
    input_grads: bool = False,
) -> GradientReport:
    """Manual ∂L/∂θ and δ (and ∂L/∂x with `input_grads=True`) against torch.autograd on a
    float64 copy of the user's own model, tensor by tensor.

    A tensor that differs is replayed with torch's branch decisions at the entries the manual
    forward found within rounding distance of a kink or tie (torch_ref.ties); if the replay
    matches, its row says "tie" (ok), else "fail"."""
    rtol, atol = _check_tolerance("rtol", rtol), _check_tolerance("atol", atol)
    if torch.is_inference_mode_enabled():
        raise ValueError(
            "compare_gradients is called inside torch.inference_mode(), where autograd cannot "
            "run the reference; call it outside (manual_gradients and manual_trace work inside)"
        )
    problem = _prepare(model, loss_fn, inputs, target, l2, input_grads=input_grads)
    manual = _run(problem)
    ref = _autograd(problem)
    changed = list(dict.fromkeys(w.where for w in problem.rec.hooks if w.changed))
    if changed:  # (as a parameter's gradient hook is: see problem.refuse_backward_hooks)
        raise UnsupportedModuleError(
            f"a gradient hook registered in the forward ({'; '.join(changed)}) changed the "
            "gradient autograd returns (it returned a tensor), so the oracle would answer for "
            "another function: remove it for the check (a hook that only reads the gradient "
            "and returns None is fine)"
        )
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
    if problem.rec.casts:  # what the float64 twin computed in float64 that you cast down
        casts = list(dict.fromkeys(c.split(" at ", 1)[0] for c in problem.rec.casts))
        notes.append(
            f"{len(problem.rec.casts)} floating cast(s) made float64 in the twin "
            f"({', '.join(casts)}): the reference is float64 end to end"
        )
    if problem.rec.lowered:  # calls without a row of their own (or beyond what it covers)
        calls = list(dict.fromkeys(c.split(" at ", 1)[0] for c in problem.rec.lowered))
        notes.append(
            f"{len(problem.rec.lowered)} call(s) without a registry row (or in a form their "
            f"row does not cover) differentiated through the ATen ops torch runs for them "
            f"({', '.join(calls)})"
        )
    if not all(r.ok for r in rows):  # name any custom autograd.Function that is responsible
        fn_rows, fn_notes = custom.explain(problem, rtol, atol)
        rows.extend(fn_rows)
        notes.extend(fn_notes)
        if any(f.cls == "CheckpointFunction" for f in problem.rec.functions):
            notes.append(
                "torch.utils.checkpoint(use_reentrant=True) ran: where none of its inputs "
                "requires grad, torch's reentrant checkpoint gives the parameters inside it "
                "no gradient (torch warns 'None of the inputs have requires_grad=True'); "
                "use_reentrant=False differentiates them"
            )
    return GradientReport(manual.loss, ref.loss, rows, rtol=rtol, atol=atol, notes=notes)


def assert_gradients_close(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Inputs,
    target: torch.Tensor,
    *,
    l2: float = 0.0,
    rtol: float = RTOL,
    atol: float = ATOL,
    input_grads: bool = False,
) -> GradientReport:
    """compare_gradients, raising AssertionError with the report table on any mismatch."""
    report = compare_gradients(
        model, loss_fn, inputs, target, l2=l2, rtol=rtol, atol=atol, input_grads=input_grads
    )
    if not report.ok:
        raise AssertionError(report.failure_message())
    return report
