"""The linear-algebra layers (manual_bp.ops.matrix) against torch.autograd directly, every
output's δ at once (the registry's samples reach them one use at a time), the degenerate
spectrum refused, and planted formula bugs that the check must catch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from _layer_check import check_layer

from manual_bp.ops.matrix import QR, SVD, Cholesky, Eigh, HouseholderProduct, MatrixExp, Pinv
from manual_bp.ops.matrix import factorizations as matrix

rng = np.random.default_rng(0)
TALL, WIDE, SQUARE = (
    rng.normal(size=(2, 5, 3)),
    rng.normal(size=(2, 3, 5)),
    rng.normal(size=(2, 4, 4)),
)
SPD = SQUARE @ np.swapaxes(SQUARE, -1, -2) + np.eye(4)
SYM = SQUARE + np.swapaxes(SQUARE, -1, -2)

CASES: list[tuple[str, Any, tuple[np.ndarray, ...], Any]] = [
    ("qr tall", QR(), (TALL,), lambda a: torch.linalg.qr(a)),
    ("qr wide", QR(), (WIDE,), lambda a: torch.linalg.qr(a)),
    ("svd tall, reduced", SVD(False), (TALL,), lambda a: torch.linalg.svd(a, False)),
    ("svd wide, reduced", SVD(False), (WIDE,), lambda a: torch.linalg.svd(a, False)),
    ("eigh", Eigh(), (SYM,), lambda a: torch.linalg.eigh(a)),
    ("cholesky upper", Cholesky(True), (SPD,), lambda a: torch.linalg.cholesky(a, upper=True)),
    ("pinv wide", Pinv(), (WIDE,), torch.linalg.pinv),
    ("matrix_exp", MatrixExp(), (SQUARE,), torch.linalg.matrix_exp),
    (
        "householder_product",
        HouseholderProduct(),
        (TALL, rng.normal(size=(2, 2))),
        torch.linalg.householder_product,
    ),
]


@pytest.mark.parametrize(("case", "layer", "inputs", "fn"), CASES, ids=[c[0] for c in CASES])
def test_layer_matches_torch(case: str, layer: Any, inputs: Any, fn: Any) -> None:
    if isinstance(layer, SVD) or isinstance(layer, Eigh):
        # the vectors' signs are free: compare on uses that do not see them
        return _gauge_invariant(case, layer, inputs, fn)
    check_layer(case, layer, inputs, fn)


def _gauge_invariant(case: str, layer: Any, inputs: Any, fn: Any) -> None:
    """L = Σ w ⊙ (U diag(f(s)) Vᵀ) for SVD, Σ w ⊙ (V diag(f(λ)) Vᵀ) for eigh: sign-free."""
    a = torch.tensor(inputs[0], requires_grad=True)
    outs = fn(a)
    w = torch.randn(a.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    if isinstance(layer, SVD):
        u, s, vh = outs
        loss = (w * ((u * s.exp().unsqueeze(-2)) @ vh)).sum()
    else:
        lam, v = outs
        loss = (w * ((v * lam.sin().unsqueeze(-2)) @ v.mT)).sum()
    loss.backward()
    z, cache = layer.forward(inputs[0])
    W = w.numpy()
    if isinstance(layer, SVD):
        u, s, vh = z
        e = np.exp(s)
        gu = W @ np.swapaxes(vh, -1, -2) * e[..., None, :]
        gs = np.einsum("...ij,...ik,...kj->...k", W, u, vh) * e
        gvh = np.swapaxes(u * e[..., None, :], -1, -2) @ W
        got, _ = layer.backward((gu, gs, gvh), cache)
    else:
        lam, v = z
        f = np.sin(lam)
        S = W + np.swapaxes(W, -1, -2)
        gv = S @ v * f[..., None, :]
        gl = np.einsum("...ik,...ij,...jk->...k", v, W, v) * np.cos(lam)
        got, _ = layer.backward((gl, gv), cache)
    np.testing.assert_allclose(got, a.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=case)


def test_a_degenerate_spectrum_is_refused_where_the_vectors_matter() -> None:
    a = np.diag([1.0, 2.0, 2.0])
    z, cache = Eigh().forward(a)
    with pytest.raises(ValueError, match="repeated eigenvalues"):
        Eigh().backward((np.ones(3), np.ones((3, 3))), cache)
    g, _ = Eigh().backward((np.ones(3), None), cache)  # the values alone are fine
    np.testing.assert_allclose(g, np.eye(3))


def test_planted_bugs_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cholesky's Φ without its halved diagonal, and a pseudo-inverse backward that keeps only
    the inverse's term −Zᵀ Z̄ Zᵀ (right for an invertible A, wrong for a wide one): the check
    against torch fails on both."""

    class InverseOnly(Pinv):
        def backward(self, delta: np.ndarray, cache: Any) -> tuple[np.ndarray, dict]:
            _, Z = cache
            Zt = np.swapaxes(Z, -1, -2)
            return -(Zt @ delta @ Zt), {}

    with pytest.raises(AssertionError):
        check_layer("pinv with the inverse's formula", InverseOnly(), (WIDE,), torch.linalg.pinv)
    monkeypatch.setattr(matrix, "_phi", lambda x: np.tril(x))
    with pytest.raises(AssertionError):
        check_layer("cholesky, Φ not halved", Cholesky(), (SPD,), torch.linalg.cholesky)
