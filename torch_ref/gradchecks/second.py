"""gradgradcheck: your double backward against an exact second-order reference.

The subject is torch's: the function (inputs, grad_outputs) ↦ autograd.grad(func(inputs),
inputs, grad_outputs, create_graph=True), differentiated by autograd as you run it — through
the backward of your custom autograd.Functions, and their backward's own backward.

The reference is that same function on float64 copies of the inputs with every custom
autograd.Function replaced by its forward's ops (the Function's `forward` run with grad
enabled, so autograd records the plain torch calls it makes; `reference=` replaces the whole
forward), differentiated twice by torch's built-in derivative formulas (analytic, float64; no
finite differences). What it does not check: torch's own double-backward formulas of the
built-in ops (they are the reference). A Function whose forward autograd cannot follow (NumPy
inside, an extension op) is refused naming it, unless `reference=` is given.

Where a block differs, each custom Function is replaced alone in your run: one whose
replacement makes the block match is named as the one whose double backward is wrong.
`check_fwd_over_rev`: forward AD of your first derivative (torch's routine on torch's
new_func) against the reference's Jacobian of it, assembled from the reference's VJPs.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.autograd.function import Function

from torch_ref.errors import UnsupportedModuleError
from torch_ref.gradchecks.common import (
    ATOL,
    FAST_VECTORS,
    RTOL,
    Tolerance,
    _torch_gradcheck,
    as_tuple,
    check_fallback,
    check_inputs,
    describe,
    fail,
    name_of,
    refusal,
    refuse,
    torch_check,
    undefined_grad,
    vjp_rows,
)
from torch_ref.problem import twin_of


class _Ctx:
    """What a Function's forward (or setup_context) may call on ctx, when the forward runs
    as plain ops: saving and marking are no-ops, attributes are kept."""

    def __init__(self, args: tuple) -> None:
        self.needs_input_grad = tuple(isinstance(a, torch.Tensor) and a.requires_grad for a in args)
        self.saved_tensors: tuple = ()
        self.non_differentiable: list[torch.Tensor] = []
        self.materialize_grads = True

    def save_for_backward(self, *tensors: Any) -> None:
        self.saved_tensors = tensors

    def save_for_forward(self, *tensors: Any) -> None:
        pass

    def mark_dirty(self, *tensors: Any) -> None:
        pass

    def mark_non_differentiable(self, *tensors: Any) -> None:
        self.non_differentiable.extend(tensors)

    def set_materialize_grads(self, value: bool) -> None:
        self.materialize_grads = value


def _forward_of(cls: type, args: tuple, kwargs: dict) -> Any:
    """The Function's forward as plain ops: what autograd records is its forward's calls."""
    ctx = _Ctx(args)
    with torch.enable_grad():
        if cls.setup_context is not Function.setup_context:  # forward(*args) + setup_context
            out = cls.forward(*args, **kwargs)
            cls.setup_context(ctx, args, out)
        else:
            out = cls.forward(ctx, *args, **kwargs)
    live = any(isinstance(a, torch.Tensor) and a.requires_grad for a in args)
    outs = [o for o in (out if isinstance(out, tuple) else (out,)) if isinstance(o, torch.Tensor)]
    nondiff = {id(t) for t in ctx.non_differentiable}
    if live and outs and not any(o.requires_grad for o in outs if id(o) not in nondiff):
        raise UnsupportedModuleError(
            f"gradgradcheck: the forward of custom autograd.Function {cls.__name__} is opaque "
            "to autograd (NumPy inside, an extension op, a detach): no second-order reference "
            "exists for it; pass reference= (a pure-torch function computing the same forward)"
        )
    if not nondiff:
        return out
    fix = lambda o: o.detach() if isinstance(o, torch.Tensor) and id(o) in nondiff else o  # noqa: E731
    return tuple(map(fix, out)) if isinstance(out, tuple) else fix(out)


#: Function.apply as torch wrote it (a copy: its code is swapped while forward_ops is on)
_APPLY = Function.__dict__["apply"].__func__
_ORIGINAL = types.FunctionType(
    _APPLY.__code__, _APPLY.__globals__, "apply", _APPLY.__defaults__, _APPLY.__closure__
)
_SELECTED: list[set[type] | None] = []


class _Swapped:
    def apply(cls, *args, **kwargs):  # type: ignore[no-untyped-def]
        """(the code run as Function.apply under forward_ops: it reads its module by import,
        since its globals are torch.autograd.function's)"""
        __class__  # noqa: B018 (the free variable torch's apply has, for super())
        return __import__("torch_ref.gradchecks.second", fromlist=["_"])._dispatch(
            cls, args, kwargs
        )


def _dispatch(cls: type, args: tuple, kwargs: dict) -> Any:
    only = _SELECTED[-1]
    if only is not None and cls not in only:
        return _ORIGINAL(cls, *args, **kwargs)
    return _forward_of(cls, args, kwargs)


@contextlib.contextmanager
def forward_ops(only: set[type] | None = None) -> Iterator[None]:
    """Every custom autograd.Function (or those in `only`) runs as its forward's ops. The
    code of Function.apply is swapped for the time, so that `MyFunction.apply` taken before
    the call (gradcheck(MyFunction.apply, ...)) is reached too; not thread-safe."""
    _SELECTED.append(only)
    _APPLY.__code__ = _Swapped.apply.__code__
    try:
        yield
    finally:
        _SELECTED.pop()
        if not _SELECTED:
            _APPLY.__code__ = _ORIGINAL.__code__


def _first_derivative(
    func: Any, args: tuple, n_in: int, diff: list[int]
) -> tuple[list[torch.Tensor | None], list[torch.Tensor]]:
    """torch's new_func: the gradients of func's outputs with respect to the differentiable
    inputs, given the grad_outputs (the last arguments), with create_graph=True; and the
    outputs."""
    inputs, grad_outputs = args[:n_in], args[n_in:]
    with torch.enable_grad():
        outputs = _torch_gradcheck._differentiable_outputs(func(*inputs))
        grads = torch.autograd.grad(
            outputs, [inputs[j] for j in diff], grad_outputs, create_graph=True, allow_unused=True
        )
    return list(grads), list(outputs)


def _functions(roots: list[torch.Tensor | None]) -> list[type]:
    """The custom Function classes whose backward nodes are in the graph of `roots`."""
    seen, found, stack = set(), {}, [r.grad_fn for r in roots if r is not None and r.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        cls = getattr(node, "_forward_cls", None)
        if cls is not None:
            found[cls] = None
        stack.extend(n for n, _ in node.next_functions)
    return list(found)


def gradgradcheck(
    func: Callable[..., Any],
    inputs: torch.Tensor | Sequence[Any],
    grad_outputs: torch.Tensor | Sequence[torch.Tensor | None] | None = None,
    *,
    eps: float = 1e-6,
    atol: float = ATOL,
    rtol: float = RTOL,
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
    reference: Callable[..., Any] | None = None,
    fallback: str | None = None,
) -> bool:
    """Your double backward of `func` against the exact second-order reference (see the
    module docstring). Torch's signature and semantics; `grad_outputs` left None are seeded
    random values in [-1, 1) (torch draws them from the global generator)."""
    del eps
    tupled = as_tuple(inputs)
    refused = refusal(tupled, masked)
    if refused:
        if fallback == "torch":
            return _torch_gradcheck.gradgradcheck(
                func, inputs, grad_outputs, atol=float(atol), rtol=float(rtol),
                gen_non_contig_grad_outputs=gen_non_contig_grad_outputs,
                raise_exception=raise_exception, nondet_tol=nondet_tol,
                check_undefined_grad=check_undefined_grad, check_grad_dtypes=check_grad_dtypes,
                check_batched_grad=check_batched_grad, check_fwd_over_rev=check_fwd_over_rev,
                check_rev_over_rev=check_rev_over_rev, fast_mode=fast_mode, masked=masked,
            )  # fmt: skip
        raise refuse("gradgradcheck", func, refused)
    check_fallback(fallback)
    if not (check_fwd_over_rev or check_rev_over_rev):  # torch's own assertions
        raise AssertionError(
            "Expected at least one of check_fwd_over_rev or check_rev_over_rev to be True"
        )
    for flag, on in (
        ("check_undefined_grad", check_undefined_grad),
        ("check_batched_grad", check_batched_grad),
    ):
        if on and not check_rev_over_rev:
            raise AssertionError(f"Setting {flag}=True requires check_rev_over_rev to be True")
    check_inputs(tupled)
    if grad_outputs is None:
        with torch.enable_grad():
            outs = _torch_gradcheck._differentiable_outputs(func(*tupled))
        grad_outputs = _seeded_grad_outputs(outs, gen_non_contig_grad_outputs)
    gouts = as_tuple(grad_outputs)
    args = tupled + gouts
    n_in = len(tupled)
    diff = [k for k, x in enumerate(tupled) if isinstance(x, torch.Tensor) and x.requires_grad]
    wrt = [k for k, x in enumerate(args) if isinstance(x, torch.Tensor) and x.requires_grad]
    yours, outputs = _first_derivative(func, args, n_in, diff)
    twins = tuple(
        x.detach().to(torch.float64).clone().requires_grad_(x.requires_grad)
        if isinstance(x, torch.Tensor) and x.is_floating_point()
        else x
        for x in args
    )
    fn = reference or func
    fn = twin_of(fn) if isinstance(fn, nn.Module) else fn
    with forward_ops():
        ours, _ = _first_derivative(fn, twins, n_in, diff)
    dtype = args[wrt[0]].dtype if wrt else torch.float64
    tol = Tolerance(atol, rtol, dtype)
    gen = torch.Generator().manual_seed(3)
    lines: list[str] = []
    failed: list[tuple[int, int, np.ndarray]] = []
    for k, (g, g_ref) in enumerate(zip(yours, ours, strict=True) if check_rev_over_rev else ()):
        x = tupled[diff[k]]
        V = _vectors(x, fast_mode, gen)
        mine = vjp_rows(g, [args[j] for j in wrt], V)
        theirs = vjp_rows(g_ref, [twins[j] for j in wrt], V)
        for i, j in enumerate(wrt):
            if tol.ok(mine[i], theirs[i]):
                continue
            a = vjp_rows(g, [args[j]], V, batched=False)[0]  # (a failure is decided unbatched)
            b = vjp_rows(g_ref, [twins[j]], V, batched=False)[0]
            if not tol.ok(a, b):
                failed.append((k, j, V))
                where = _where(k, j, diff, n_in)
                lines.append(describe(where, a, b, args[j].dtype, rows="row", entries="entry"))
    if lines:
        what = "random cotangents (fast_mode)" if fast_mode else "the whole Jacobian"
        header = (
            f"second-order Jacobian mismatch for {name_of(func)}: yours (autograd through your "
            "backward, create_graph=True) against the reference (torch's built-in double "
            "backward of the forward's ops, custom autograd.Functions replaced by their "
            f"forward), over {what}, {tol}:"
        )
        notes = _blame(func, args, n_in, diff, outputs, ours, twins, failed, tol)
        return fail("\n".join([header, *lines, *notes]), raise_exception)
    if check_fwd_over_rev:
        lines = _fwd_over_rev(func, args, n_in, diff, wrt, yours, ours, twins, fast_mode, tol)
        if lines:
            return fail("\n".join(lines), raise_exception)
    if not check_rev_over_rev:
        return True
    return _torch_checks(
        yours, [args[j] for j in wrt], args, raise_exception, nondet_tol, check_undefined_grad,
        check_grad_dtypes, check_batched_grad, masked, wrt,
    )  # fmt: skip


def _torch_checks(
    yours: list, wrt_tensors: list, args: tuple, raise_exception: bool, nondet_tol: float,
    check_undefined_grad: bool, check_grad_dtypes: bool, check_batched_grad: bool,
    masked: bool, wrt: list[int],
) -> bool:  # fmt: skip
    """torch's own checks of the first derivative as a function (no finite differences)."""
    outs = [g for g in yours if g is not None and g.requires_grad]
    for k, g in enumerate(outs):
        v = torch.ones_like(g)
        once = torch.autograd.grad(g, wrt_tensors, v, retain_graph=True, allow_unused=True)
        twice = torch.autograd.grad(g, wrt_tensors, v, retain_graph=True, allow_unused=True)
        for j, a, b in zip(wrt, once, twice, strict=True):
            if a is not None and b is not None and (a - b).abs().max() > nondet_tol:
                return fail(
                    "Backward is not reentrant, i.e., running backward with same input and "
                    "grad_output multiple times gives different values, although analytical "
                    f"gradient matches numerical gradient. The tolerance for nondeterminism was "
                    f"{nondet_tol}.",
                    raise_exception,
                )
            if check_grad_dtypes and a is not None and a.dtype != args[j].dtype:
                return fail(f"Gradient has dtype mismatch: argument {j}", raise_exception)
        if check_batched_grad:
            check = lambda g=g, k=k: _torch_gradcheck._test_batched_grad(args, g, k)  # noqa: E731
            if not torch_check(check, raise_exception):
                return False
    if outs and check_undefined_grad:
        check = lambda: undefined_grad(outs, wrt_tensors)  # noqa: E731
        if not torch_check(check, raise_exception):
            return False
    if outs:  # (the last: it frees the graph)
        check = lambda: _torch_gradcheck._test_backward_mul_by_grad_output(outs, args, masked)  # noqa: E731
        return torch_check(check, raise_exception)
    return True


def _fwd_over_rev(
    func: Any, args: tuple, n_in: int, diff: list[int], wrt: list[int], yours: list,
    ours: list, twins: tuple, fast: bool, tol: Tolerance,
) -> list[str]:  # fmt: skip
    """check_fwd_over_rev: forward AD of your first derivative (torch's routine, on torch's
    new_func) against the reference's Jacobian of it, assembled from its VJPs."""
    wrt_set, ks = set(wrt), [k for k, g in enumerate(yours) if g is not None]

    def new_func(*a: Any) -> tuple:
        a = tuple(x.requires_grad_() if i in wrt_set else x for i, x in enumerate(a))
        grads, _ = _first_derivative(func, a, n_in, diff)
        return tuple(g for g in grads if g is not None)

    def reference(k: int, j: int, batched: bool = True) -> np.ndarray:  # (out, in)
        n = yours[k].numel()
        return vjp_rows(ours[k], [twins[j]], np.eye(n).reshape(n, *yours[k].shape), batched)[0]

    fwd = _torch_gradcheck._get_analytical_jacobian_forward_ad
    outs = [yours[k] for k in ks]
    gen, lines = torch.Generator().manual_seed(4), []
    tangents = [None] if not fast else [
        [torch.randn(args[j].shape, generator=gen, dtype=torch.float64).to(args[j].dtype)
         for j in wrt]
        for _ in range(FAST_VECTORS)
    ]  # fmt: skip
    for r, us in enumerate(tangents):
        theirs = fwd(new_func, args, outs, all_u=us) if us else fwd(new_func, args, outs)
        for i, j in enumerate(wrt):
            u = us[i].to(torch.float64).reshape(-1).numpy() if us else None
            for o, k in enumerate(ks):
                mine = theirs[i][o].detach().to(torch.float64).numpy()
                mine = mine.reshape(1, -1) if us else mine.T
                for batched in (True, False):
                    ref = reference(k, j, batched)
                    ref = (ref @ u).reshape(1, -1) if us else ref
                    if tol.ok(mine, ref):
                        break
                else:
                    where = _where(k, j, diff, n_in) + (f" (tangent {r})" if us else "")
                    lines.append(
                        describe(where, mine, ref, args[j].dtype, rows="row", entries="entry")
                    )
    if not lines:
        return []
    header = (
        f"forward-over-reverse mismatch for {name_of(func)}: forward AD of your first derivative "
        f"against the reference's Jacobian of it, {tol}:"
    )
    return [header, *lines]


def _seeded_grad_outputs(outs: list[torch.Tensor], noncontiguous: bool) -> tuple:
    gen = torch.Generator().manual_seed(0)
    made = []
    for o in outs:
        dtype = o.dtype if o.is_floating_point() else torch.float64
        shape = (*o.shape, 2) if noncontiguous else o.shape
        t = (2 * torch.rand(shape, generator=gen, dtype=torch.float64) - 1).to(dtype).to(o.device)
        made.append((t[..., 0] if noncontiguous else t).requires_grad_())
    return tuple(made)


def _vectors(x: torch.Tensor, fast: bool, gen: torch.Generator) -> np.ndarray:
    n = x.numel()
    if fast:
        V = torch.randn((FAST_VECTORS, *x.shape), generator=gen, dtype=torch.float64)
        return V.to(x.dtype).to(torch.float64).numpy()
    return np.eye(n).reshape(n, *x.shape)


def _where(k: int, j: int, diff: list[int], n_in: int) -> str:
    arg = f"input {j}" if j < n_in else f"grad_output {j - n_in}"
    return f"the gradient of input {diff[k]}, by {arg}"


def _blame(
    func: Any, args: tuple, n_in: int, diff: list[int], outputs: list, ours: list,
    twins: tuple, failed: list, tol: Tolerance,
) -> list[str]:  # fmt: skip
    """The custom Functions whose double backward is wrong: each replaced by its forward's
    ops alone in your run, those whose replacement makes every failing block match."""
    classes = _functions(outputs)
    blamed = []
    for cls in classes:
        try:
            with forward_ops({cls}):
                again, _ = _first_derivative(func, args, n_in, diff)
        except UnsupportedModuleError:  # (an opaque forward: checked against reference=)
            continue
        fixed = True
        for k, j, V in failed:
            if again[k] is None or ours[k] is None:
                fixed = fixed and again[k] is None and ours[k] is None
                continue
            a = vjp_rows(again[k], [args[j]], V, False)[0]
            b = vjp_rows(ours[k], [twins[j]], V, False)[0]
            fixed = fixed and tol.ok(a, b)
        if fixed:
            blamed.append(cls.__name__)
    if blamed:
        return [
            f"  custom autograd.Function {', '.join(blamed)}: its backward is wrong under "
            "double backward (with it replaced by its forward's ops the blocks match): a "
            "backward must be built of differentiable ops on saved inputs/outputs (an "
            "intermediate saved from the forward is a constant to the double backward)"
        ]
    if classes:
        names = ", ".join(c.__name__ for c in classes)
        return [
            f"  the double backward runs through the backward of the custom Function(s): {names}"
        ]
    return []
