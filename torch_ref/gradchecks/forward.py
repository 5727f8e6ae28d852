"""check_forward_ad: your forward-mode derivative (jvp) against the exact Jacobian.

Yours is what torch.autograd.forward_ad computes for `func` as you run it (built-in jvp
formulas, and the `jvp` of your custom autograd.Functions), taken by torch's own routine
(`_get_analytical_jacobian_forward_ad`): the whole Jacobian column by column for the unit
tangents, or J·u for FAST_VECTORS seeded random tangents u in fast_mode. The oracle's J·u is
the exact Jacobian J assembled from the explicit VJPs of the recorded forward (one per output
entry, the same J the reverse-mode check compares), times u. A custom Function without a
`jvp` raises torch's NotImplementedError, as torch's gradcheck does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from torch_ref.gradchecks.common import (
    FAST_VECTORS,
    GradcheckError,
    Tolerance,
    _torch_gradcheck,
    describe,
    name_of,
)


def check(
    func: Any,
    tupled: tuple,
    diff: list[int],
    run: Any,
    fast: bool,
    tol: Tolerance,
    check_grad_dtypes: bool,
    jacobians: dict[tuple[int, int], np.ndarray],
) -> list[str]:
    """The failure lines of every (output, input) block of the forward-mode check."""
    from torch_ref.gradchecks.first import _ours, _replay

    ks = [k for k, (o, _) in enumerate(run.pairs) if o.requires_grad]  # torch's outputs
    outs = [run.pairs[k][0] for k in ks]
    if not outs:
        return []
    batched: set[tuple[int, int]] = set()
    for k in ks:  # the oracle's whole Jacobian, where the reverse check did not assemble it
        out, name = run.pairs[k]
        missing = [j for j in diff if (k, j) not in jacobians]
        if missing and name is not None:
            V = np.eye(out.numel()).reshape(out.numel(), *out.shape)
            found = _ours(run.rec.network, run.tape, name, V, missing)
            jacobians.update({(k, j): J for j, J in found.items()})
            batched.update((k, j) for j in missing)

    replayed: list[Any] = []

    def oracle(k: int, j: int, x: torch.Tensor, failed: int = 0) -> np.ndarray:
        """J of output k by input j; on a failure, a batched one computed again row by row
        (failed=1), then with torch's branch decisions at kinks and ties (failed=2)."""
        out, name = run.pairs[k]
        V = np.eye(out.numel()).reshape(out.numel(), *out.shape)
        if failed == 1 and (k, j) in batched and name is not None:
            jacobians[k, j] = _ours(run.rec.network, run.tape, name, V, [j], batched=False)[j]
            batched.discard((k, j))
        if failed == 2 and name is not None:
            replayed[:] = replayed or [_replay(run)]
            if replayed[0] is not None:
                return _ours(run.rec.network, replayed[0], name, V, [j], batched=False)[j]
        return jacobians.get((k, j), np.zeros((out.numel(), x.numel())))

    def mismatch(yours: np.ndarray, k: int, j: int, x: torch.Tensor, take: Any) -> Any:
        """None where yours matches the oracle's `take(J)` (J exact, or replayed at kinks
        and ties where it differs); else the exact oracle's value."""
        exact = None
        for failed in range(3):
            ours = take(oracle(k, j, x, failed))
            if tol.ok(yours, ours):
                return None
            exact = ours if failed < 2 else exact
        return exact

    fwd = _torch_gradcheck._get_analytical_jacobian_forward_ad
    tupled = tuple(map(_writable, tupled))
    lines: list[str] = []
    if not fast:
        try:
            theirs = fwd(func, tupled, outs, check_grad_dtypes=check_grad_dtypes)
        except _torch_gradcheck.GradcheckError as err:
            raise GradcheckError(f"{err} (torch's own check)") from None
        for i, j in enumerate(diff):
            for idx, k in enumerate(ks):
                yours = theirs[i][idx].detach().to(torch.float64).numpy().T  # (out, in)
                ours = mismatch(yours, k, j, tupled[j], lambda J: J)
                if ours is not None:
                    lines.append(describe(f"output {k}, input {j}", yours, ours, tupled[j].dtype))
    else:
        gen = torch.Generator().manual_seed(2)
        for r in range(FAST_VECTORS):
            us = [
                torch.randn(tupled[j].shape, generator=gen, dtype=torch.float64).to(tupled[j].dtype)
                for j in diff
            ]
            theirs = fwd(func, tupled, outs, check_grad_dtypes=check_grad_dtypes, all_u=us)
            for i, j in enumerate(diff):
                u = us[i].to(torch.float64).reshape(-1).numpy()
                for idx, k in enumerate(ks):
                    yours = theirs[i][idx].detach().to(torch.float64).reshape(1, -1).numpy()
                    ours = mismatch(yours, k, j, tupled[j], lambda J, u=u: (J @ u).reshape(1, -1))
                    if ours is not None:
                        lines.append(describe(
                            f"output {k}, input {j} (tangent {r})", yours, ours, tupled[j].dtype,
                            rows="row", entries="output entry",
                        ))  # fmt: skip
    if not lines:
        return []
    what = f"{FAST_VECTORS} random tangents (fast_mode)" if fast else "the whole Jacobian"
    header = (
        f"Jacobian computed with forward mode mismatch for {name_of(func)}: yours (forward AD "
        f"as you run it) against the oracle (the exact Jacobian of the forward), over {what}, "
        f"{tol} (rows: output entries, entries: input entries):"
    )
    if fast:
        header = header.replace(" (rows: output entries, entries: input entries)", "")
    calls = _function_calls(run)
    notes = (
        [f"  forward mode runs through the jvp of the custom autograd.Function(s): {calls}"]
        if calls
        else []
    )
    return [header, *lines, *notes]


def _writable(x: Any) -> Any:
    """A stride-0 (expanded) input made dense: torch's routine writes the tangent in place."""
    if not isinstance(x, torch.Tensor):
        return x
    if any(s == 0 and n > 1 for s, n in zip(x.stride(), x.shape, strict=True)):
        return x.detach().contiguous().requires_grad_(x.requires_grad)
    return x


def _function_calls(run: Any) -> str:
    seen: dict[str, int] = {}
    for call in run.rec.functions if run.rec is not None else ():
        seen[call.cls] = seen.get(call.cls, 0) + 1
    return ", ".join(f"{cls} ({n} call{'s' * (n > 1)})" for cls, n in seen.items())
