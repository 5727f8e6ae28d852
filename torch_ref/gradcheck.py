"""torch_ref.gradcheck: torch.autograd.gradcheck's drop-in, exact instead of finite differences.

    from torch_ref import gradcheck      # in place of: from torch.autograd import gradcheck
    assert gradcheck(MyFunction.apply, (x, w))

The subject is autograd's vector–Jacobian product of `func` as you run it (your custom
backwards, an extension's backward); the reference is the exact VJP of the ops the forward
executed, recorded on float64 copies of the inputs (torch_ref.record) and differentiated by
the explicit backward formulas of manual_bp. `fast_mode=False` compares the whole Jacobian,
one VJP per output entry on each side; `fast_mode=True` compares the full input gradients
for a few seeded random cotangents (stronger than torch's one scalar vᵀJu).

Torch's signature, return value and raising are kept: True on success; on failure a
`GradcheckError` (a subclass of torch's) whose message names the output, the input, the
worst entry, yours against the oracle's, and any custom Function whose backward differs —
or False with `raise_exception=False`.

What each argument means here:

- `eps`: accepted and unused (there are no finite differences);
- `atol`, `rtol`: when given, torch's test, |yours − oracle| ≤ atol + rtol·|oracle| entry by
  entry; left at torch's defaults, the tolerance of the inputs' dtype (`TOLERANCES`),
  relative to the largest entry of each (output, input) block;
- `raise_exception`: as in torch; `nondet_tol`: your backward, run twice on the same
  cotangent, agrees within it (torch's reentrancy check);
- `check_undefined_grad`, `check_batched_grad`: torch's own checks (no finite differences);
- `check_grad_dtypes`: each gradient has its input's dtype;
- `check_backward_ad=False`: no backward check (the input and output checks still run);
- `check_forward_ad`, `check_batched_forward_grad`, `masked`, sparse or complex inputs:
  refused (UnsupportedModuleError), or torch's own gradcheck with `fallback="torch"`;
- `reference=` (ours): a pure-torch function computing the same forward, for a func whose
  forward the registry cannot follow (an extension op, NumPy inside).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils import _pytree as pytree

from torch_ref import custom
from torch_ref.errors import UnsupportedModuleError
from torch_ref.problem import run_error, twin_of
from torch_ref.record import Recording, record
from torch_ref.tolerances import ATOL, GRADCHECK_TOLERANCES, RTOL

_torch_gradcheck = sys.modules["torch.autograd.gradcheck"]


class GradcheckError(_torch_gradcheck.GradcheckError):
    """A gradcheck failure: the table of where your backward differs from the oracle."""


#: tolerances by the inputs' dtype when atol/rtol are left at torch's defaults:
#: max|yours − oracle| ≤ atol + rtol · max|oracle| over each (output, input) block
#: (atol, rtol), read from the library's one table (torch_ref.tolerances)
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    getattr(torch, name): (atol, rtol) for name, (rtol, atol) in GRADCHECK_TOLERANCES.items()
}


class _Default(float):
    """torch's default value of a tolerance, told apart from the same value passed."""


_ATOL, _RTOL = _Default(1e-5), _Default(1e-3)
_FAST_COTANGENTS = 3


def _as_tuple(inputs: Any) -> tuple:
    return tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)


def _fail(message: str, raise_exception: bool) -> bool:
    if raise_exception:
        raise GradcheckError(message)
    return False


def _torch_check(check: Callable[[], bool], raise_exception: bool) -> bool:
    """One of torch's own checks, with torch's raising."""
    try:
        return bool(check())
    except _torch_gradcheck.GradcheckError as err:
        return _fail(f"{err} (torch's own check)", raise_exception)


def _name(func: Any) -> str:
    owner = getattr(func, "__self__", None)
    if isinstance(owner, type):  # MyFunction.apply
        return f"{owner.__name__}.{func.__name__}"
    return getattr(func, "__qualname__", None) or type(func).__name__


def _record(func: Any, tupled: tuple, diff: list[int]) -> tuple[Recording, dict[str, torch.Tensor]]:
    """func on float64 copies of the inputs, recorded; the differentiated inputs by name."""
    twins = tuple(
        x.detach().to(torch.float64).clone().requires_grad_(k in diff)
        if isinstance(x, torch.Tensor) and x.is_floating_point()
        else x
        for k, x in enumerate(tupled)
    )
    named = {f"input.{k}": twins[k] for k in diff}
    model = twin_of(func) if isinstance(func, nn.Module) else None
    fn = model if model is not None else func
    try:
        with torch.enable_grad():
            rec = record(
                fn, twins, {}, model=model, inputs=named, live_inputs=True, what=_name(func)
            )
    except Exception as err:
        raise run_error(_name(func), err, [tuple(x.shape) for x in named.values()]) from None
    return rec, named


def _block_ok(yours: np.ndarray, ours: np.ndarray, atol: float, rtol: float, given: bool) -> bool:
    if not (np.isfinite(yours).all() and np.isfinite(ours).all()):
        return False  # (a NaN on both sides is a finding, not a match)
    d = np.abs(yours - ours)
    if given:  # torch's own test, entry by entry
        return bool(np.all(d <= atol + rtol * np.abs(ours)))
    return bool(d.max(initial=0.0) <= atol + rtol * np.abs(ours).max(initial=0.0))


def _describe(k: int, j: int, yours: np.ndarray, ours: np.ndarray, dtype: torch.dtype) -> str:
    bad = ~np.isfinite(yours) | ~np.isfinite(ours)
    d = np.where(bad, np.inf, np.abs(yours - ours))
    r, c = np.unravel_index(int(np.argmax(d)), d.shape)
    scale = float(np.abs(ours).max(initial=0.0)) or 1.0
    ulps = float(d[r, c]) / (scale * torch.finfo(dtype).eps) if np.isfinite(d[r, c]) else np.inf
    return (
        f"  output {k}, input {j}: worst at [output entry {r}, input entry {c}]: yours "
        f"{yours[r, c]:.10g}, oracle {ours[r, c]:.10g} (max |yours − oracle| {d[r, c]:.3g}, "
        f"{ulps:.3g} × eps of {str(dtype).replace('torch.', '')} at the block's scale)"
    )


def gradcheck(
    func: Callable[..., Any],
    inputs: torch.Tensor | Sequence[Any],
    *,
    eps: float = 1e-6,
    atol: float = _ATOL,
    rtol: float = _RTOL,
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
    """Your backward of `func` at `inputs` against the exact VJP of its forward (see the
    module docstring for every argument). `reference`: a pure-torch function computing the
    same forward, whose exact VJP is the oracle (for a forward the registry cannot follow);
    `fallback="torch"`: what is refused here runs torch's own gradcheck instead."""
    del eps  # no finite differences
    tupled = _as_tuple(inputs)
    refused = _refusal(tupled, check_forward_ad, check_batched_forward_grad, masked)
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
        raise UnsupportedModuleError(
            f"gradcheck of {_name(func)}: {refused} is not supported by the oracle; pass "
            "fallback='torch' to run torch's own gradcheck for it"
        )
    if fallback not in (None, "torch"):
        raise ValueError(f"fallback must be None or 'torch', got {fallback!r}")
    with warnings.catch_warnings():  # (torch warns that float32 fails its finite differences)
        warnings.filterwarnings("ignore", message=".*not a double precision")
        _torch_gradcheck._check_inputs(tupled)
    diff = [k for k, x in enumerate(tupled) if isinstance(x, torch.Tensor) and x.requires_grad]
    with torch.enable_grad():
        outputs = func(*tupled)
    outs = [o for o in pytree.tree_leaves(outputs) if isinstance(o, torch.Tensor)]
    _torch_gradcheck._check_outputs(tuple(outs))
    if not check_backward_ad:
        return True
    if check_undefined_grad and not _torch_check(
        lambda: _torch_gradcheck._test_undefined_backward_mode(func, tuple(outs), tupled),
        raise_exception,
    ):
        return False
    if check_batched_grad:
        for k, o in enumerate(outs):
            if o.requires_grad:
                for j in diff:
                    check = lambda o=o, j=j, k=k: _torch_gradcheck._test_batched_grad(  # noqa: E731
                        tupled[j], o, k
                    )
                    if not _torch_check(check, raise_exception):
                        return False
    rec, named = _record(reference or func, tupled, diff)
    names = [n for n in pytree.tree_leaves(rec.outputs, is_leaf=lambda v: v is None)]
    if len(names) != len(pytree.tree_leaves(outputs)):
        raise UnsupportedModuleError(
            f"gradcheck of {_name(func)}: the reference returns another structure of outputs"
        )
    leaves = pytree.tree_leaves(outputs)
    pairs = [(o, n) for o, n in zip(leaves, names, strict=True) if isinstance(o, torch.Tensor)]
    net = rec.network
    xs = tuple(named[n].detach().numpy() for n in net.inputs)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        _, tape = net.forward(*xs)
    dtype = next((tupled[j].dtype for j in diff), torch.float64)
    given = not (isinstance(atol, _Default) and isinstance(rtol, _Default))
    tol_a, tol_r = (float(atol), float(rtol)) if given else TOLERANCES.get(dtype, (ATOL, RTOL))
    diff_inputs = [tupled[j] for j in diff]
    lines: list[str] = []
    gen = torch.Generator().manual_seed(0)
    for k, (out, name) in enumerate(pairs):
        if not out.requires_grad or name is None:
            if name is not None:
                lines.append(
                    f"  output {k}: yours does not require grad, the oracle's depends on the inputs"
                )
            continue
        cotangents = _cotangents(out, fast_mode, gen)
        ours_rows = {j: [] for j in diff}
        yours_rows = {j: [] for j in diff}
        for v in cotangents:
            grads = torch.autograd.grad(out, diff_inputs, v, retain_graph=True, allow_unused=True)
            if nondet_tol is not None and v is cotangents[0]:
                again = torch.autograd.grad(
                    out, diff_inputs, v, retain_graph=True, allow_unused=True
                )
                for g1, g2 in zip(grads, again, strict=True):
                    if g1 is not None and (g1 - g2).abs().max() > nondet_tol:
                        return _fail(
                            f"Backward is not reentrant, i.e., running backward with same input "
                            f"and grad_output multiple times gives different values, although "
                            f"analytical gradient matches numerical gradient. The tolerance for "
                            f"nondeterminism was {nondet_tol}.",
                            raise_exception,
                        )
            seed = v.detach().to("cpu", torch.float64).numpy()
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                kept = net.backprop(tape, {name: seed}, keep=list(named)).kept
            for j, g in zip(diff, grads, strict=True):
                x = tupled[j]
                if check_grad_dtypes and g is not None and g.dtype != x.dtype:
                    return _fail(f"Gradient has dtype mismatch: input {j} is {x.dtype}, its "
                                 f"gradient {g.dtype}", raise_exception)  # fmt: skip
                yours_rows[j].append(
                    np.zeros(x.numel())
                    if g is None or g._is_zerotensor()
                    else g.detach().to("cpu", torch.float64).reshape(-1).numpy()
                )
                ours = kept.get(f"input.{j}")
                ours_rows[j].append(
                    np.zeros(x.numel()) if ours is None else np.asarray(ours).reshape(-1)
                )
        for j in diff:
            yours, ours = np.stack(yours_rows[j]), np.stack(ours_rows[j])
            if not _block_ok(yours, ours, tol_a, tol_r, given):
                lines.append(_describe(k, j, yours, ours, tupled[j].dtype))
    if not lines:
        return True
    what = "random cotangents (fast_mode)" if fast_mode else "the whole Jacobian"
    tolerance = (
        f"atol={tol_a:g}, rtol={tol_r:g} entrywise"
        if given
        else f"atol={tol_a:g}, rtol={tol_r:g} of each block's largest entry ({dtype})"
    )
    header = (
        f"Jacobian mismatch for {_name(func)}: yours (autograd's backward as you run it) "
        f"against the oracle (the exact VJP of the forward), over {what}, {tolerance}:"
    )
    notes = _custom_notes(rec, named, pairs)
    return _fail("\n".join([header, *lines, *notes]), raise_exception)


def _cotangents(out: torch.Tensor, fast: bool, gen: torch.Generator) -> list[torch.Tensor]:
    if fast:
        return [
            torch.randn(out.shape, generator=gen, dtype=torch.float64).to(out.dtype).to(out.device)
            for _ in range(_FAST_COTANGENTS)
        ]
    eye = torch.eye(out.numel(), dtype=out.dtype, device=out.device)
    return [eye[i].reshape(out.shape) for i in range(out.numel())]


def _refusal(tupled: tuple, forward_ad: bool, batched_forward: bool, masked: Any) -> str:
    if forward_ad:
        return "check_forward_ad=True"
    if batched_forward:
        return "check_batched_forward_grad=True"
    if masked:
        return "masked=True"
    for k, x in enumerate(tupled):
        if isinstance(x, torch.Tensor) and x.layout != torch.strided:
            return f"input {k} in layout {x.layout}"
        if isinstance(x, torch.Tensor) and x.is_complex():
            return f"the complex input {k}"
    return ""


class _Shim:
    """What custom.explain reads, for a function's recorded run."""

    def __init__(self, rec: Recording, named: dict[str, torch.Tensor], loss: torch.Tensor):
        self.rec = _with_result(rec, loss)
        self.twin_params: dict[str, torch.Tensor] = {}
        self.twin_inputs = named
        self.xs = tuple(named[n].detach().numpy() for n in rec.network.inputs)


def _with_result(rec: Recording, loss: torch.Tensor) -> Recording:
    from dataclasses import replace

    return replace(rec, result=loss)


def _custom_notes(rec: Recording, named: dict[str, torch.Tensor], pairs: list) -> list[str]:
    """The custom Functions whose backward differs from their forward's derivative, on a
    seeded random cotangent of the twin's outputs."""
    if not rec.functions:
        return []
    gen = torch.Generator().manual_seed(1)
    outs = [
        o for o in pytree.tree_leaves(rec.result) if isinstance(o, torch.Tensor) and o.requires_grad
    ]
    if not outs:
        return []
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum() for o in outs)
    _, notes = custom.explain(_Shim(rec, named, loss), RTOL, ATOL)
    return [f"  {n}" for n in notes]


def gradgradcheck(
    func: Callable[..., Any],
    inputs: torch.Tensor | Sequence[Any],
    grad_outputs: torch.Tensor | Sequence[torch.Tensor | None] | None = None,
    *,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    gen_non_contig_grad_outputs: bool = False,
    raise_exception: bool = True,
    nondet_tol: float = 0.0,
    check_undefined_grad: bool = True,
    check_grad_dtypes: bool = False,
    check_batched_grad: bool = False,
    check_fwd_over_rev: bool = False,
    check_rev_over_rev: bool = True,
    fast_mode: bool = False,
    masked: bool = False,
    fallback: str | None = None,
) -> bool:
    """torch.autograd.gradgradcheck's signature. The exact second-order reference needs the
    backward itself recorded, and torch's built-in backward formulas run in its C++ engine
    where no mode sees them: refused, or torch's own gradgradcheck with fallback="torch"."""
    if fallback == "torch":
        return _torch_gradcheck.gradgradcheck(
            func, inputs, grad_outputs, eps=eps, atol=atol, rtol=rtol,
            gen_non_contig_grad_outputs=gen_non_contig_grad_outputs,
            raise_exception=raise_exception, nondet_tol=nondet_tol,
            check_undefined_grad=check_undefined_grad, check_grad_dtypes=check_grad_dtypes,
            check_batched_grad=check_batched_grad, check_fwd_over_rev=check_fwd_over_rev,
            check_rev_over_rev=check_rev_over_rev, fast_mode=fast_mode, masked=masked,
        )  # fmt: skip
    raise UnsupportedModuleError(
        f"gradgradcheck of {_name(func)}: the oracle has no exact second-order reference yet "
        "(the backward runs in torch's C++ engine, where the record cannot see its ops); pass "
        "fallback='torch' to run torch's own gradgradcheck"
    )
