"""The one check of a manual layer against the same op in torch.autograd, float64, shared by
every layer test (conv, pooling, padding, resampling, normalisation, recurrent, shape, linalg,
attention, embedding, ...).

    check_layer(case_id, layer, inputs, torch_fn, params=..., tol=..., tol_z=...)

runs `layer.shape`, `layer.forward` and `layer.backward` on NumPy copies of `inputs`, the same
op in torch on tensors that require grad (floating inputs and `params`), and compares the
output shape, z, ∂L/∂(every floating input) and ∂L/∂(every parameter) under a random upstream
δ (seeded; small integers with `integer_delta`, where every sum is exact). A layer with
several outputs gets a δ for each, None for those listed in `unused`. Integer inputs (token
ids, indices) must get None as δ from the layer. `tol_z` (default `tol`) is the forward's
tolerance: TOLERANCES["equal"] where the layer only copies (a pad) and must match exactly.
`param_order`: ∂L/∂θ must come in the order of `params` (torch's named_parameters).

`adjoint(...)` checks ⟨J v, u⟩ = ⟨v, Jᵀ u⟩ for a layer linear in its inputs (the forward is J,
the backward is Jᵀ), on random v and u.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import _compare
import numpy as np
import torch
from _tolerances import TOLERANCES

TOL_EXACT = TOLERANCES["exact"]  # ops that move entries and add them up
TOL = TOLERANCES["reassociated"]  # ops with products and sums in another order than torch's


def np_(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().copy()


def _is_float(x: np.ndarray) -> bool:
    return np.issubdtype(np.asarray(x).dtype, np.floating)


def _outputs(z: Any, n_outputs: int) -> list[Any]:
    return [z] if n_outputs == 1 else list(z)


def check_layer(
    case_id: str,
    layer: Any,
    inputs: Sequence[np.ndarray],
    torch_fn: Callable[..., Any],
    *,
    params: dict[str, torch.Tensor] | None = None,
    tol: dict[str, float] = TOL,
    seed: int = 0,
    unused: Sequence[int] = (),
    integer_delta: bool = False,
    tol_z: dict[str, float] | None = None,
    param_order: bool = False,
) -> None:
    """Fail naming the check, the case, the worst index and both values there."""
    params = params or {}
    ts = [
        torch.tensor(x, dtype=torch.float64, requires_grad=True)
        if _is_float(x)
        else torch.tensor(x)
        for x in inputs
    ]
    ps = {k: p.detach().clone().to(torch.float64).requires_grad_(True) for k, p in params.items()}
    out = torch_fn(*ts, **ps) if ps else torch_fn(*ts)
    outs = [out] if isinstance(out, torch.Tensor) else list(out)
    assert len(outs) == layer.n_outputs, (
        f"[{case_id}] torch gives {len(outs)} outputs, the layer declares {layer.n_outputs}"
    )
    gen = torch.Generator().manual_seed(seed)

    def upstream(shape: torch.Size) -> torch.Tensor:
        if integer_delta:  # with integer inputs: every product and sum exact
            return torch.randint(-3, 4, shape, generator=gen).to(torch.float64)
        return torch.randn(shape, generator=gen, dtype=torch.float64)

    ups = [None if k in unused else upstream(o.shape) for k, o in enumerate(outs)]
    pairs = [(o, u) for o, u in zip(outs, ups, strict=True) if u is not None and o.requires_grad]
    if pairs:
        torch.autograd.backward([o for o, _ in pairs], [u for _, u in pairs])

    shapes = _outputs(layer.shape(*(np.shape(x) for x in inputs)), layer.n_outputs)
    for k, (s, o) in enumerate(zip(shapes, outs, strict=True)):
        assert tuple(s) == tuple(o.shape), f"shape() [{case_id}] output {k}: {s}, torch {o.shape}"
    z, cache = layer.forward(*(np.array(x, copy=True) for x in inputs))
    for k, (zk, o) in enumerate(zip(_outputs(z, layer.n_outputs), outs, strict=True)):
        _compare.assert_close(f"forward z[{k}]", case_id, zk, np_(o), **(tol_z or tol))

    delta = [None if u is None else np_(u) for u in ups]
    delta_prev, grads = layer.backward(delta[0] if layer.n_outputs == 1 else tuple(delta), cache)
    if layer.n_inputs == 1:
        delta_prev = (delta_prev,)
    assert len(delta_prev) == len(ts), f"[{case_id}]: {len(delta_prev)} δ_prev for {len(ts)} inputs"
    for i, (d, t) in enumerate(zip(delta_prev, ts, strict=True)):
        if not t.is_floating_point():
            assert d is None, f"[{case_id}] integer input {i} got a δ: it carries no gradient"
            continue
        want = np.zeros(t.shape) if t.grad is None else np_(t.grad)
        got = np.zeros(t.shape) if d is None else d
        _compare.assert_close(f"δ_prev of input {i}", case_id, got, want, **tol)
    if param_order:  # the layer returns its gradients in torch's order of the parameters
        assert list(grads) == list(ps), (
            f"[{case_id}] ∂L/∂θ in order {list(grads)}, torch {list(ps)}"
        )
    assert set(grads) == set(ps), f"[{case_id}] ∂L/∂θ for {sorted(grads)}, torch {sorted(ps)}"
    for name, p in ps.items():
        want = np.zeros(p.shape) if p.grad is None else np_(p.grad)
        _compare.assert_close(f"∂L/∂{name}", case_id, grads[name], want, **tol)


def adjoint(
    case_id: str,
    layer: Any,
    inputs: Sequence[np.ndarray],
    *,
    vary: Sequence[int] | None = None,
    seed: int = 0,
) -> None:
    """⟨J v, u⟩ = ⟨v, Jᵀ u⟩ where J is the layer's forward as a linear map of the inputs in
    `vary` (the floating ones by default; the others held at their given values). An affine forward
    (addmm in its input) is fine: J v = f(v) − f(0)."""
    rng = np.random.default_rng(seed)
    if vary is None:  # every floating input (integer ones are indices: J is linear in the rest)
        vary = [i for i, x in enumerate(inputs) if _is_float(x)]
    v = [rng.standard_normal(np.shape(x)) if i in vary else x for i, x in enumerate(inputs)]
    z, cache = layer.forward(*v)
    z0, _ = layer.forward(*(np.zeros_like(x) if i in vary else x for i, x in enumerate(v)))
    zs = [
        zk - z0k
        for zk, z0k in zip(_outputs(z, layer.n_outputs), _outputs(z0, layer.n_outputs), strict=True)
    ]
    u = [rng.standard_normal(np.shape(zk)) for zk in zs]
    d, _ = layer.backward(u[0] if layer.n_outputs == 1 else tuple(u), cache)
    d = (d,) if layer.n_inputs == 1 else d
    lhs = sum(float(np.sum(zk * uk)) for zk, uk in zip(zs, u, strict=True))
    rhs = sum(float(np.sum(v[i] * d[i])) for i in vary)
    scale = max(sum(float(np.abs(zk * uk).sum()) for zk, uk in zip(zs, u, strict=True)), 1.0)
    assert abs(lhs - rhs) <= 1e-12 * scale, (
        f"adjoint [{case_id}]: ⟨Jv, u⟩ {lhs!r}, ⟨v, Jᵀu⟩ {rhs!r}"
    )
