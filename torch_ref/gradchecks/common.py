"""What gradcheck and gradgradcheck share: the error, the tolerance table, the block test and
the failure line, torch's own checks, and the refusals."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from torch_ref.errors import UnsupportedModuleError
from torch_ref.tolerances import GRADCHECK_TOLERANCES

_torch_gradcheck = sys.modules["torch.autograd.gradcheck"]


class GradcheckError(_torch_gradcheck.GradcheckError):
    """A gradcheck failure: the table of where your derivative differs from the oracle."""


#: tolerances by the inputs' dtype when atol/rtol are left at torch's defaults:
#: max|yours − oracle| ≤ atol + rtol · max|oracle| over each (output, input) block
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    getattr(torch, name): (atol, rtol) for name, (rtol, atol) in GRADCHECK_TOLERANCES.items()
}


class _Default(float):
    """torch's default value of a tolerance, told apart from the same value passed."""


ATOL, RTOL = _Default(1e-5), _Default(1e-3)
#: random cotangents (and tangents) of fast_mode, seeded
FAST_VECTORS = 3


class Tolerance:
    """atol/rtol as given (torch's entrywise test) or the dtype's row of TOLERANCES (relative
    to each block's largest entry)."""

    def __init__(self, atol: float, rtol: float, dtype: torch.dtype) -> None:
        self.given = not (isinstance(atol, _Default) and isinstance(rtol, _Default))
        self.dtype = dtype
        self.atol, self.rtol = (
            (float(atol), float(rtol))
            if self.given
            else TOLERANCES.get(dtype, TOLERANCES[torch.float64])
        )

    def ok(self, yours: np.ndarray, ours: np.ndarray) -> bool:
        """|yours − ours| ≤ atol + rtol·|ours| entrywise (given) or at the block's scale."""
        if not (np.isfinite(yours).all() and np.isfinite(ours).all()):
            return False  # (a NaN on both sides is a finding, not a match)
        d = np.abs(yours - ours)
        if self.given:
            return bool(np.all(d <= self.atol + self.rtol * np.abs(ours)))
        return bool(d.max(initial=0.0) <= self.atol + self.rtol * np.abs(ours).max(initial=0.0))

    def __str__(self) -> str:
        if self.given:
            return f"atol={self.atol:g}, rtol={self.rtol:g} entrywise"
        return (
            f"atol={self.atol:g}, rtol={self.rtol:g} of each block's largest entry ({self.dtype})"
        )


def describe(
    where: str,
    yours: np.ndarray,
    ours: np.ndarray,
    dtype: torch.dtype,
    rows: str = "output entry",
    entries: str = "input entry",
) -> str:
    """One failure line: the worst entry of a (rows × entries) block, both values, and the
    difference in units of the dtype's eps at the block's scale."""
    bad = ~np.isfinite(yours) | ~np.isfinite(ours)
    d = np.where(bad, np.inf, np.abs(yours - ours))
    r, c = np.unravel_index(int(np.argmax(d)), d.shape)
    scale = float(np.abs(ours).max(initial=0.0)) or 1.0
    ulps = float(d[r, c]) / (scale * torch.finfo(dtype).eps) if np.isfinite(d[r, c]) else np.inf
    return (
        f"  {where}: worst at [{rows} {r}, {entries} {c}]: yours {yours[r, c]:.10g}, oracle "
        f"{ours[r, c]:.10g} (max |yours − oracle| {d[r, c]:.3g}, {ulps:.3g} × eps of "
        f"{str(dtype).replace('torch.', '')} at the block's scale)"
    )


def as_tuple(inputs: Any) -> tuple:
    return tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)


def fail(message: str, raise_exception: bool) -> bool:
    if raise_exception:
        raise GradcheckError(message)
    return False


def torch_check(check: Callable[[], Any], raise_exception: bool) -> bool:
    """One of torch's own checks (no finite differences in it), with torch's raising."""
    try:
        check()
        return True
    except _torch_gradcheck.GradcheckError as err:
        return fail(f"{err} (torch's own check)", raise_exception)


def name_of(func: Any) -> str:
    owner = getattr(func, "__self__", None)
    if isinstance(owner, type):  # MyFunction.apply
        return f"{owner.__name__}.{func.__name__}"
    return getattr(func, "__qualname__", None) or type(func).__name__


def numpy_rows(grads: list[torch.Tensor | None], numel: int) -> np.ndarray:
    """Gradients (None or a zero tensor for an unused input) as float64 rows."""
    return np.stack(
        [
            np.zeros(numel)
            if g is None or g._is_zerotensor()
            else g.detach().to("cpu", torch.float64).reshape(-1).numpy()
            for g in grads
        ]
    )


def as_tensor(v: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.asarray(v)).to(like.dtype).to(like.device)


def vjp_rows(
    out: torch.Tensor | None, wrt: list[torch.Tensor], V: np.ndarray, batched: bool = True
) -> list[np.ndarray]:
    """Autograd's VJPs of `out` with respect to each of `wrt` for every row of V, as
    (rows × entries) arrays: batched (vmap) where the backward allows it, else one backward
    per row. An output that is None or has no graph has zero rows."""
    if out is None or not out.requires_grad:
        return [np.zeros((len(V), x.numel())) for x in wrt]
    if batched and len(V) > 1:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                grads = torch.autograd.grad(
                    out, wrt, as_tensor(V, out), retain_graph=True, allow_unused=True,
                    is_grads_batched=True,
                )  # fmt: skip
            return [
                numpy_rows([g], len(V) * x.numel()).reshape(len(V), -1)
                for g, x in zip(grads, wrt, strict=True)
            ]
        except Exception:  # noqa: BLE001 (a backward vmap cannot batch: one row at a time)
            pass
    rows = [
        torch.autograd.grad(out, wrt, as_tensor(v, out), retain_graph=True, allow_unused=True)
        for v in V
    ]
    return [numpy_rows([r[i] for r in rows], x.numel()) for i, x in enumerate(wrt)]


def undefined_grad(outputs: list[torch.Tensor], diff: list[torch.Tensor]) -> None:
    """torch's check that every backward takes undefined output gradients (and then returns
    zeros), on the graph already built: all outputs' gradients undefined, then each one's
    alone (torch builds the graph again for each; this reuses it). Raises GradcheckError."""
    undefined = torch._C._functions.UndefinedGrad
    sets = [[undefined()(o) for o in outputs]]
    if len(outputs) > 1:
        sets += [
            [undefined()(o) if i == k else o for i, o in enumerate(outputs)]
            for k in range(len(outputs))
        ]
    for outs in sets:
        zeros = [torch.zeros_like(o, memory_format=torch.legacy_contiguous_format) for o in outs]
        try:
            grads = torch.autograd.grad(outs, diff, zeros, allow_unused=True, retain_graph=True)
        except RuntimeError as err:
            raise GradcheckError(
                "Expected backward function to handle undefined output grads. Please look at "
                '"Notes about undefined output gradients" in "tools/autograd/derivatives.yaml"'
            ) from err
        if any(g is not None and not g.eq(0).all() for g in grads):
            raise GradcheckError(
                "Expected all input grads to be undefined or zero when all output grads are "
                'undefined or zero. Please look at "Notes about undefined output gradients" in '
                '"tools/autograd/derivatives.yaml"'
            )


def check_inputs(tupled: tuple) -> None:
    """torch's check of the inputs, less its refusal of stride-0 (expanded) inputs, which
    only finite differences cannot perturb."""
    if not any(isinstance(x, torch.Tensor) and x.requires_grad for x in tupled):
        raise ValueError(
            "gradcheck expects at least one input tensor to require gradient, but none of them "
            "have requires_grad=True."
        )


def refusal(tupled: tuple, masked: Any) -> str:
    """What the oracle cannot check here ('' for nothing)."""
    if masked:
        return "masked=True"
    for k, x in enumerate(tupled):
        if isinstance(x, torch.Tensor) and x.layout != torch.strided:
            return f"input {k} in layout {x.layout}"
        if isinstance(x, torch.Tensor) and x.is_complex():
            return f"the complex input {k}"
    return ""


def refuse(what: str, func: Any, refused: str) -> UnsupportedModuleError:
    return UnsupportedModuleError(
        f"{what} of {name_of(func)}: {refused} is not supported by the oracle; pass "
        f"fallback='torch' to run torch's own {what} for it"
    )


def check_fallback(fallback: str | None) -> None:
    if fallback not in (None, "torch"):
        raise ValueError(f"fallback must be None or 'torch', got {fallback!r}")
