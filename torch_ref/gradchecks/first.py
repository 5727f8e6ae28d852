"""gradcheck: your first derivatives of `func` (reverse mode, and forward mode when asked)
against the exact Jacobian of the ops its forward executed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils import _pytree as pytree

from manual_bp.network import Network, Result, Tape
from manual_bp.ops.shape import Reshape
from torch_ref import custom, ties, tolerances
from torch_ref.errors import UnsupportedModuleError
from torch_ref.gradchecks import cuts, forward
from torch_ref.gradchecks.common import (
    ATOL,
    FAST_VECTORS,
    RTOL,
    Tolerance,
    _torch_gradcheck,
    as_tensor,
    as_tuple,
    check_fallback,
    check_inputs,
    describe,
    fail,
    name_of,
    numpy_rows,
    refusal,
    refuse,
    torch_check,
    undefined_grad,
    vjp_rows,
)
from torch_ref.problem import run_error, twin_of
from torch_ref.record import NothingToDifferentiate, Recording, record


def _QUIET() -> Any:
    return np.errstate(over="ignore", invalid="ignore", divide="ignore")


@dataclass
class Run:
    """func as you run it, and the recorded run the oracle differentiates."""

    outputs: Any  # what func returned, in your autograd graph
    pairs: list[tuple[torch.Tensor, str | None]]  # each tensor output, its node in the record
    #: the record (None where no output of it carries gradient: every output a constant)
    rec: Recording | None
    named: dict[str, torch.Tensor]  # the differentiated inputs of the record, by node name
    tape: Tape | None  # the manual forward over the record
    #: "one run": the recorded run was your run (float64 inputs, no cast made float64)
    once: bool
    #: where the forward cut the gradient of a value it uses again (torch_ref.gradchecks.cuts)
    cut: str | None = None
    through: bool = False  # the record follows the cuts (the function's derivative)


def _as_run(func: Any, floats: list[torch.Tensor], reference: Any) -> bool:
    """Whether your run can be the recorded one: float64 inputs, and a module's floating
    tensors float64 too (no float64 twin is needed)."""
    if reference is not None or any(x.dtype != torch.float64 for x in floats):
        return False
    if not isinstance(func, nn.Module):
        return True
    tensors = [*func.parameters(), *func.buffers()]
    return all(t.dtype == torch.float64 for t in tensors if t.is_floating_point())


def _record(
    func: Any, tupled: tuple, diff: list[int], reference: Any, through: bool = False
) -> Run:
    """Record func (or `reference`) on the inputs: your own run where every floating input
    (and a module's floating tensor) is float64 already — the record is then your run as it
    is, its random draws included — else the float64 twin's run on float64 copies, with your
    run beside it (after the record, from the random state it started from). `through`: the
    record follows the forward's gradient cuts too (torch_ref.gradchecks.cuts)."""
    fn = reference or func
    floats = [x for x in tupled if isinstance(x, torch.Tensor) and x.is_floating_point()]
    as_run = _as_run(func, floats, reference)
    once = as_run and not through  # (through the cuts, your run is another one)
    twins = (
        tupled
        if once
        else tuple(
            x.detach().to(torch.float64).clone().requires_grad_(k in diff)
            if isinstance(x, torch.Tensor) and x.is_floating_point()
            else x
            for k, x in enumerate(tupled)
        )
    )
    named = {f"input.{k}": twins[k] for k in diff}
    model = (fn if as_run else twin_of(fn)) if isinstance(fn, nn.Module) else None
    state = torch.get_rng_state()
    try:
        with torch.enable_grad(), cuts.watch() as cut:
            traced = model if model is not None else fn
            rec = record(
                cuts.through(traced) if through else traced, twins, {}, model=model,
                inputs=named, live_inputs=True, what=name_of(fn), keep_z=False, as_run=as_run,
            )  # fmt: skip
            cut.returned(rec.result)
    except NothingToDifferentiate:  # every output is a constant of the run
        with torch.enable_grad(), cuts.watch() as cut:
            outputs = func(*tupled)
            cut.returned(outputs)
        leaves = [o for o in pytree.tree_leaves(outputs) if isinstance(o, torch.Tensor)]
        return Run(outputs, [(o, None) for o in leaves], None, named, None, False, cut.used)
    except Exception as err:
        raise run_error(name_of(fn), err, [tuple(x.shape) for x in named.values()]) from None
    once = once and not rec.casts
    if once:
        outputs = rec.result
    else:
        if as_run:  # (the record's draws were not undone: yours draws the same again)
            torch.set_rng_state(state)
        with torch.enable_grad():
            outputs = func(*tupled)
    names = pytree.tree_leaves(rec.outputs, is_leaf=lambda v: v is None)
    leaves = pytree.tree_leaves(outputs)
    if len(names) != len(leaves):
        raise UnsupportedModuleError(
            f"gradcheck of {name_of(func)}: the reference returns another structure of outputs"
        )
    pairs = [(o, n) for o, n in zip(leaves, names, strict=True) if isinstance(o, torch.Tensor)]
    xs = tuple(named[n].detach().numpy() for n in rec.network.inputs)
    with _QUIET():
        _, tape = rec.network.forward(*xs)
    return Run(outputs, pairs, rec, named, tape, once, cut.used)


def gradcheck(
    func: Callable[..., Any],
    inputs: torch.Tensor | Sequence[Any],
    *,
    eps: float = 1e-6,
    atol: float = ATOL,
    rtol: float = RTOL,
    raise_exception: bool = True,
    nondet_tol: float = 0.0,
    check_undefined_grad: bool = True,
    check_grad_dtypes: bool = False,
    check_batched_grad: bool = False,
    check_batched_forward_grad: bool = False,
    check_forward_ad: bool = False,
    check_backward_ad: bool = True,
    fast_mode: bool = False,
    masked: bool | None = None,
    reference: Callable[..., Any] | None = None,
    fallback: str | None = None,
) -> bool:
    """Your derivatives of `func` at `inputs` against the exact Jacobian of its forward (see
    torch_ref.gradchecks for every argument). `reference`: a pure-torch function computing
    the same forward, whose exact VJP is the oracle (for a forward the registry cannot
    follow); `fallback="torch"`: what is refused here runs torch's own gradcheck instead."""
    del eps  # no finite differences
    if not (check_forward_ad or check_backward_ad):  # torch's own assertions
        raise AssertionError(
            "Expected at least one of check_forward_ad or check_backward_ad to be True"
        )
    if check_batched_grad and not check_backward_ad:
        raise AssertionError(
            "Setting check_batched_grad=True requires check_backward_ad to be True"
        )
    if check_batched_forward_grad and not check_forward_ad:
        raise AssertionError(
            "Setting check_batched_forward_grad=True requires check_forward_ad to be True"
        )
    tupled = as_tuple(inputs)
    refused = refusal(tupled, masked)
    if refused:
        if fallback == "torch":
            return _torch_gradcheck.gradcheck(
                func, inputs, atol=float(atol), rtol=float(rtol),
                raise_exception=raise_exception, nondet_tol=nondet_tol,
                check_undefined_grad=check_undefined_grad, check_grad_dtypes=check_grad_dtypes,
                check_batched_grad=check_batched_grad,
                check_batched_forward_grad=check_batched_forward_grad,
                check_forward_ad=check_forward_ad, check_backward_ad=check_backward_ad,
                fast_mode=fast_mode, masked=masked,
            )  # fmt: skip
        raise refuse("gradcheck", func, refused)
    check_fallback(fallback)
    check_inputs(tupled)
    diff = [k for k, x in enumerate(tupled) if isinstance(x, torch.Tensor) and x.requires_grad]
    run = _record(func, tupled, diff, reference)
    outs = [o for o, _ in run.pairs]
    _torch_gradcheck._check_outputs(tuple(outs))
    dtype = next((tupled[j].dtype for j in diff), torch.float64)
    tol = Tolerance(atol, rtol, dtype)
    diff_inputs = [tupled[j] for j in diff]
    checks = (check_backward_ad, check_forward_ad, fast_mode, tol, nondet_tol, check_grad_dtypes)
    failure = _compare(func, run, tupled, diff, *checks)
    if failure is None and run.cut is not None:  # the function's derivative, through the cut
        again = _through(func, run, tupled, diff, reference)
        failure = _compare(func, again, tupled, diff, *checks)
    if failure is not None:
        return fail(failure, raise_exception)
    if check_batched_forward_grad:
        check = lambda: _torch_gradcheck._test_batched_grad_forward_ad(func, tupled)  # noqa: E731
        if not torch_check(check, raise_exception):
            return False
    if not check_backward_ad:
        return True
    differentiable = [o for o in outs if o.requires_grad]
    if check_batched_grad:
        for k, o in enumerate(differentiable):
            check = lambda o=o, k=k: _torch_gradcheck._test_batched_grad(tupled, o, k)  # noqa: E731
            if not torch_check(check, raise_exception):
                return False
    if check_undefined_grad and differentiable:
        check = lambda: undefined_grad(differentiable, diff_inputs)  # noqa: E731
        if not torch_check(check, raise_exception):
            return False
    check = lambda: _torch_gradcheck._test_backward_mul_by_grad_output(  # noqa: E731
        differentiable, tupled, masked
    )  # (the last: it frees the graph)
    return torch_check(check, raise_exception)


def _compare(
    func: Any,
    run: Run,
    tupled: tuple,
    diff: list[int],
    check_backward_ad: bool,
    check_forward_ad: bool,
    fast_mode: bool,
    tol: Tolerance,
    nondet_tol: float,
    check_grad_dtypes: bool,
) -> str | None:
    """The failure message of the reverse-mode and forward-mode checks of `run`, or None."""
    jacobians: dict[tuple[int, int], np.ndarray] = {}  # (output, input) → the oracle's J
    if check_backward_ad:
        lines = _reverse(
            run, tupled, diff, fast_mode, tol, nondet_tol, check_grad_dtypes, jacobians
        )
        if isinstance(lines, str):
            return lines
        if lines:
            what = "random cotangents (fast_mode)" if fast_mode else "the whole Jacobian"
            header = (
                f"Jacobian mismatch for {name_of(func)}: yours (autograd's backward as you run "
                f"it) against the oracle (the exact VJP of the forward), over {what}, {tol}:"
            )
            return "\n".join([header, *lines, *_through_note(run), *_custom_notes(run)])
    if check_forward_ad:
        lines = forward.check(func, tupled, diff, run, fast_mode, tol, check_grad_dtypes, jacobians)
        if lines:
            return "\n".join([*lines, *_through_note(run)])
    return None


def _through(func: Any, run: Run, tupled: tuple, diff: list[int], reference: Any) -> Run:
    """The record again through the forward's gradient cuts (torch_ref.gradchecks.cuts):
    where your backward matched the ops autograd follows, torch's gradcheck still takes the
    function's derivative, through the cut values too; so does this oracle."""
    cut = run.cut
    what = (
        f"gradcheck of {name_of(func)}: the forward computes a value from the inputs that "
        f"autograd does not follow ({cut}) and uses it where the output depends on it; torch's "
        "gradcheck differentiates the function through that path too"
    )
    try:
        again = _record(func, tupled, diff, reference, through=True)
    except (UnsupportedModuleError, ValueError) as err:
        raise UnsupportedModuleError(f"{what}, and the oracle cannot follow it: {err}") from None
    if again.cut is not None:
        raise UnsupportedModuleError(
            f"{what}, and the oracle cannot: {again.cut} has no derivative"
        )
    return replace(again, cut=cut, through=True)


def _through_note(run: Run) -> list[str]:
    if not run.through:
        return []
    return [
        f"  (the oracle follows the value your forward cut from autograd at {run.cut}, as "
        "torch's finite differences do: a straight-through estimator, a .detach() or a "
        "no_grad block on the way from the inputs to the outputs)"
    ]


# --- reverse mode: yours against the oracle, block by block ------------------------------


def _reverse(
    run: Run,
    tupled: tuple,
    diff: list[int],
    fast: bool,
    tol: Tolerance,
    nondet_tol: float,
    check_grad_dtypes: bool,
    jacobians: dict[tuple[int, int], np.ndarray],
) -> list[str] | str:
    """The failure lines of every (output, input) block (a str: torch's own failure)."""
    diff_inputs = [tupled[j] for j in diff]
    gen = torch.Generator().manual_seed(0)
    lines: list[str] = []
    failed: list[tuple[int, int, np.ndarray, str]] = []  # output, input, cotangents, node
    yours_of: dict[tuple[int, int], np.ndarray] = {}
    for k, (out, name) in enumerate(run.pairs):
        if not out.requires_grad:
            if name is not None:
                lines.append(
                    f"  output {k}: yours does not require grad, the oracle's depends on the inputs"
                )
            continue
        V = _cotangents(out, fast, gen)  # (m, *out.shape), float64
        first, again = (
            torch.autograd.grad(
                out, diff_inputs, as_tensor(V[0], out), retain_graph=True, allow_unused=True
            )
            for _ in range(2)
        )  # (torch's reentrancy check: the same cotangent twice)
        rows = (
            [numpy_rows([g], x.numel()) for g, x in zip(first, diff_inputs, strict=True)]
            if len(V) == 1
            else vjp_rows(out, diff_inputs, V)
        )
        yours = dict(zip(diff, rows, strict=True))
        for j, g1, g2 in zip(diff, first, again, strict=True):
            x = tupled[j]
            if check_grad_dtypes and g1 is not None and g1.dtype != x.dtype:
                return (
                    f"Gradient has dtype mismatch: input {j} is {x.dtype}, its gradient {g1.dtype}"
                )
            if g1 is not None and g2 is not None and (g1 - g2).abs().max() > nondet_tol:
                return (
                    "Backward is not reentrant, i.e., running backward with same input and "
                    "grad_output multiple times gives different values, although analytical "
                    "gradient matches numerical gradient. The tolerance for nondeterminism was "
                    f"{nondet_tol}."
                )
        ours = (  # (an output the record found constant: the oracle's gradient is 0)
            _ours(run.rec.network, run.tape, name, V, diff)
            if name is not None
            else {j: np.zeros_like(yours[j]) for j in diff}
        )
        for j in diff:
            yours_of[k, j] = yours[j]
            if not fast:
                jacobians[k, j] = ours[j]
            if not tol.ok(yours[j], ours[j]):
                failed.append((k, j, V, name))
    if not failed:
        return lines
    # the batched VJP sped the passing path up; a failure is decided row by row, then with
    # torch's branch decisions at the kinks and ties rounding decided (torch_ref.ties)
    tied: list[tuple[int, int]] = []
    replayed = _replay(run)
    for k, j, V, name in failed:
        out = run.pairs[k][0]
        yours_of[k, j] = vjp_rows(out, [tupled[j]], V, batched=False)[0]
        if name is None:
            exact = np.zeros_like(yours_of[k, j])
        else:
            exact = _ours(run.rec.network, run.tape, name, V, [j], batched=False)[j]
        if not fast:
            jacobians[k, j] = exact
        if tol.ok(yours_of[k, j], exact):
            continue
        if replayed is not None and name is not None:
            again = _ours(run.rec.network, replayed, name, V, [j], batched=False)[j]
            if tol.ok(yours_of[k, j], again):
                tied.append((k, j))
                if not fast:
                    jacobians[k, j] = again  # (forward mode takes torch's branch there too)
                continue
        lines.append(describe(f"output {k}, input {j}", yours_of[k, j], exact, tupled[j].dtype))
    if lines and tied:
        lines.append(
            f"  ({len(tied)} other block(s) differ only where a kink or tie was decided by "
            "rounding, and match with torch's branch decisions: ties, not failures)"
        )
    return lines


def _cotangents(out: torch.Tensor, fast: bool, gen: torch.Generator) -> np.ndarray:
    """The unit cotangents (the whole Jacobian) or FAST_VECTORS seeded random ones; rows are
    rounded to the output's dtype, so both sides see the same vectors."""
    n = out.numel()
    if fast:
        V = torch.randn((FAST_VECTORS, *out.shape), generator=gen, dtype=torch.float64)
        return V.to(out.dtype).to(torch.float64).numpy()
    return np.eye(n).reshape(n, *out.shape)


def _ours(
    net: Network, tape: Tape, name: str, V: np.ndarray, diff: list[int], *, batched: bool = True
) -> dict[int, np.ndarray]:
    """The oracle's VJPs of node `name` for every row of V, input by input as (rows ×
    entries): one explicit backward per row (`_one_by_one`, the definition), or faster in one
    pass where the formulas allow (`_stacked`, then `_tiled`). A batched pass is trusted only
    where it matches yours: a failing block is computed again row by row before it is
    reported (a batched pass that went wrong costs time, never a verdict)."""
    keep = [f"input.{j}" for j in diff]
    if batched and len(V) > 1:
        for fast in (_stacked, _tiled):
            try:
                with _QUIET():
                    found = fast(net, tape, name, V, keep)
            except Exception:  # noqa: BLE001 (a formula that does not take the batch)
                continue
            if found is not None:
                return dict(zip(diff, found, strict=True))
    return dict(zip(diff, _one_by_one(net, tape, name, V, keep), strict=True))


def _one_by_one(net: Network, tape: Tape, name: str, V: np.ndarray, keep: list[str]) -> list:
    """Row r: the explicit backward seeded with ∂L/∂(node) = V[r]."""
    rows = []
    for v in V:
        with _QUIET():
            rows.append(net.backprop(tape, {name: v}, keep=keep).kept)
    return [
        np.stack([np.ravel(r[n]) if n in r else np.zeros(tape.a[n].size) for r in rows])
        for n in keep
    ]


def _stacked(
    net: Network, tape: Tape, name: str, V: np.ndarray, keep: list[str]
) -> list[np.ndarray] | None:
    """All rows at once along a new leading axis of every δ: right wherever each formula
    broadcasts over leading axes (elementwise ops, matmul)."""
    kept = net.backprop(tape, {name: V}, keep=keep).kept
    m, out = len(V), []
    for n in keep:
        g = kept.get(n)
        if g is not None and np.shape(g) != (m, *tape.a[n].shape):
            return None
        out.append(np.zeros((m, tape.a[n].size)) if g is None else np.reshape(g, (m, -1)))
    return out


def _tiled(
    net: Network, tape: Tape, name: str, V: np.ndarray, keep: list[str]
) -> list[np.ndarray] | None:
    """All rows at once along the batch axis: the forward on every input repeated m times
    along axis 0, row r's cotangent in the r-th block; right where the samples of the batch
    are independent (images, point sets; convolutions, which _stacked cannot batch)."""
    m, shape = len(V), V.shape[1:]
    xs = [tape.a[n] for n in net.inputs]
    if not shape or any(np.ndim(x) == 0 for x in xs):
        return None
    net = _with_batch_times(net, m)
    _, big = net.forward(*(np.concatenate([x] * m, axis=0) for x in xs))
    if np.shape(big.a[name]) != (m * shape[0], *shape[1:]):
        return None
    kept = net.backprop(big, {name: V.reshape(m * shape[0], *shape[1:])}, keep=keep).kept
    out = []
    for n in keep:
        g = kept.get(n)
        if g is not None and np.shape(g) != (m * tape.a[n].shape[0], *tape.a[n].shape[1:]):
            return None
        out.append(np.zeros((m, tape.a[n].size)) if g is None else np.reshape(g, (m, -1)))
    return out


def _with_batch_times(net: Network, m: int) -> Network:
    """The network with every reshape's leading size m times larger (a reshape to
    (N·C, 1, H, W) and back keeps the m blocks of the tiled batch apart, in C order)."""
    nodes = [
        replace(n, layer=Reshape((n.layer.target[0] * m, *n.layer.target[1:])))
        if isinstance(n.layer, Reshape) and n.layer.target and n.layer.target[0] > 0
        else n
        for n in net.nodes
    ]
    return Network(nodes, output=net.output, inputs=net.inputs)


# --- ties and custom Functions -----------------------------------------------------------


class _Problem:
    """What torch_ref.ties and torch_ref.custom read, for a function's recorded run."""

    def __init__(self, run: Run, result: Any = None) -> None:
        self.rec = self.captured = (
            replace(run.rec, result=result) if result is not None else run.rec
        )
        self.xs = tuple(run.named[n].detach().numpy() for n in run.rec.network.inputs)
        self.twin_params: dict[str, torch.Tensor] = {}
        self.twin_inputs = run.named
        self.y = None
        self.input_grads = True

    @staticmethod
    def loss(output: Any, target: Any) -> tuple[float, Any]:
        """(the replay's forward is all gradcheck needs: no loss, a zero seed)"""
        return 0.0, np.zeros_like(output)


def _replay(run: Run) -> Tape | None:
    """The manual forward again with torch's values at the entries near a kink or tie (the
    branch torch took there), or None where no entry is near one or none changed."""
    if run.rec is None:
        return None
    problem = _Problem(run)
    with _QUIET():
        result = Result(0.0, run.tape.a[run.rec.network.output], run.tape, None)  # type: ignore[arg-type]
        replayed = ties.replay(problem, result)
    if replayed is None or not replayed.changed:
        return None
    return replayed.result.tape


def _custom_notes(run: Run) -> list[str]:
    """The custom Functions whose backward differs from their forward's derivative, on a
    seeded random cotangent of the recorded outputs."""
    if run.rec is None or not run.rec.functions:
        return []
    gen = torch.Generator().manual_seed(1)
    outs = [
        o
        for o in pytree.tree_leaves(run.rec.result)
        if isinstance(o, torch.Tensor) and o.requires_grad
    ]
    if not outs:
        return []
    loss = sum(
        (o * torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.dtype)).sum()
        for o in outs
    )
    _, notes = custom.explain(_Problem(run, loss), tolerances.RTOL, tolerances.ATOL)
    return [f"  {n}" for n in notes]
