"""Places where torch's own gradient is wrong, and the oracle says so.

Each test pins the oracle's value to the mathematics (an independent closed form) and shows
that compare_gradients reports the difference with torch as a failure at that entry: a red
result there is a real difference, in torch.
"""

from __future__ import annotations

import torch
import torch.nn as nn

import torch_ref


class _Det(nn.Module):
    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.det(self.a * x).expand(1)


def _cofactors(a: torch.Tensor) -> torch.Tensor:
    """∂det/∂A = cof(A), the cofactor matrix, entry by entry (no inverse: A may be singular)."""
    n = a.shape[0]
    cof = torch.empty_like(a)
    for i in range(n):
        for j in range(n):
            minor = torch.cat([a[:i], a[i + 1 :]])[:, [k for k in range(n) if k != j]]
            cof[i, j] = (-1) ** (i + j) * torch.linalg.det(minor)
    return cof


def test_det_at_an_exactly_singular_matrix_torch_returns_zero_the_oracle_the_cofactors():
    """torch 2.13 (CPU): the backward of det at a matrix of rank n − 1 whose LU has an exact
    zero pivot is 0, though det's derivative there is the cofactor matrix (nonzero)."""
    a = torch.tensor([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [0.0, 1.0, 5.0]], dtype=torch.float64)
    model, x, t = _Det(a), torch.ones(3, 3, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    loss = lambda out, t: (out * t).sum()  # noqa: E731
    grads = torch_ref.manual_gradients(model, loss, x, t)
    cof = _cofactors(a)
    assert cof.abs().max() > 1  # (the derivative is not 0: cof[0, 0] = 4·5 − 6·1 = 14)
    torch.testing.assert_close(grads["a"], cof, rtol=1e-12, atol=1e-12)
    report = torch_ref.compare_gradients(model, loss, x, t)
    assert not report.ok and "oracle 14" in report.failure_message()
