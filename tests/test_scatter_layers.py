"""The index-write layers (manual_bp.ops.scatter) against the same writes in torch.autograd:
x[idx] = v in every form the setitem rule emits (the generic registry tests reach them through
the capture; these reach the layers directly), and a formula bug that the check catches."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from _layer_check import TOL_EXACT, check_layer

from manual_bp.ops.scatter import IndexPut, MaskedWrite, Scatter
from manual_bp.ops.shape import FROM_INPUT

rng = np.random.default_rng(0)
X = rng.normal(size=(4, 3, 5))
IDX = np.array([2, 0, 2])


def _set(index: Any, value: Any = None, accumulate: bool = False) -> Any:
    def fn(x: torch.Tensor, *v: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        val = v[0] if v else value
        if accumulate:
            y[index] += val
        else:
            y[index] = val
        return y

    return fn


CASES = [
    ("y[:, 0] = 0", IndexPut((slice(None), 0), 0.0), (X,), _set((slice(None), 0), 0.0)),
    ("y[..., -1, -1] = v", IndexPut((Ellipsis, -1, -1)), (X, rng.normal(size=(4,))),
     _set((Ellipsis, -1, -1))),
    ("y[idx] = v, repeated rows", IndexPut((IDX,)), (X, rng.normal(size=(3, 3, 5))), _set(IDX)),
    ("y[1:, idx] = v broadcast", IndexPut((slice(1, None), IDX)), (X, rng.normal(size=(5,))),
     _set((slice(1, None), IDX))),
    ("y[None, 0, ::2] = 2", IndexPut((None, 0, slice(None, None, 2)), 2.0), (X,),
     _set((None, 0, slice(None, None, 2)), 2.0)),
]  # fmt: skip


@pytest.mark.parametrize(("case", "layer", "inputs", "fn"), CASES, ids=[c[0] for c in CASES])
def test_index_put_matches_torch(case: str, layer: Any, inputs: Any, fn: Any) -> None:
    check_layer(case, layer, inputs, fn, tol=TOL_EXACT)


def test_index_put_accumulate_with_an_index_input() -> None:
    v = rng.normal(size=(3, 3, 5))
    check_layer(
        "y.index_put_((ids,), v, accumulate=True)",
        IndexPut((FROM_INPUT,), accumulate=True),
        (X, v, IDX),
        lambda x, v, i: x.index_put((i,), v, accumulate=True),
        tol=TOL_EXACT,
    )


def test_masked_write_matches_torch() -> None:
    mask = X[:, 0, 0] > 0
    check_layer("y[mask] = -1.5", MaskedWrite(-1.5), (X, mask), lambda x, m: _set(m, -1.5)(x))
    v = rng.normal(size=(3, 5))
    check_layer("y[mask] = v", MaskedWrite(), (X, v, mask), lambda x, v, m: _set(m)(x, v))
    full = X > 0
    check_layer("y[y > 0] = 0", MaskedWrite(0.0), (X, full), lambda x, m: _set(m, 0.0)(x))


def test_scatter_reduce_mean_matches_torch_and_a_wrong_count_fails() -> None:
    src = rng.normal(size=(6, 3, 5))
    idx = np.broadcast_to(np.array([0, 3, 0, 1, 3, 0])[:, None, None], (6, 3, 5)).copy()
    layer = Scatter(0, idx, reduce="mean", include_self=False)

    def fn(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return x.scatter_reduce(0, torch.from_numpy(idx), s, "mean", include_self=False)

    check_layer("scatter_reduce mean", layer, (X, src), fn)
    wrong = Scatter(0, idx, reduce="mean", include_self=True)  # counts x where torch does not
    with pytest.raises(AssertionError):
        check_layer("scatter_reduce mean, include_self flipped", wrong, (X, src), fn)
