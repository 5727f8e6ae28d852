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
    zero pivot is 0, though det's derivative there is the cofactor matrix (nonzero). A row
    of zeros makes that pivot exactly zero whatever order LAPACK sums in (a singular matrix
    whose LU cancels to zero on one CPU ends 1 ulp off it on another, and torch is right)."""
    a = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [0.0, 1.0, 5.0]], dtype=torch.float64)
    model, x, t = _Det(a), torch.ones(3, 3, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    loss = lambda out, t: (out * t).sum()  # noqa: E731
    grads = torch_ref.manual_gradients(model, loss, x, t)
    cof = _cofactors(a)
    assert cof.abs().max() > 1  # (the derivative is not 0: cof[1, 0] = −(2·5 − 3·1) = −7)
    torch.testing.assert_close(grads["a"], cof, rtol=1e-12, atol=1e-12)
    report = torch_ref.compare_gradients(model, loss, x, t)
    assert not report.ok and "oracle -7" in report.failure_message()


def test_torchs_decomposition_of_multilabel_margin_loss_counts_the_padded_targets():
    """torch._decomp's multilabel_margin_loss_forward (what torch.compile and export run)
    does not mask the target positions after the first −1: each counts as a copy of class 0.
    The kernel and the formula agree; the oracle has a row of its own, and refuses any
    decomposition whose values are not its kernel's (tests/test_not_covered.py)."""
    from torch._decomp import decomposition_table

    x = torch.tensor([[0.3, 0.1, 0.2]], dtype=torch.float64)
    y = torch.tensor([[0, 2, -1]])
    formula = sum(max(0.0, 1 - (x[0, j] - x[0, 1]).item()) for j in (0, 2)) / 3  # targets 0, 2
    kernel = torch.nn.functional.multilabel_margin_loss(x, y)
    decomposed, _ = decomposition_table[torch.ops.aten.multilabel_margin_loss_forward.default](
        x, y, 1
    )
    assert abs(kernel.item() - formula) < 1e-15
    assert abs(decomposed.item() - formula) > 0.1  # (the padded position: 1 − (x0 − x1) / 3 more)
    model = nn.Linear(3, 3).double()
    assert torch_ref.compare_gradients(model, nn.MultiLabelMarginLoss(), x, y).ok
