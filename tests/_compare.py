"""The one tensor comparison of the layer tests: the oracle's own row
(torch_ref.report.compare), so that a failure names the check, the case, the worst index and
both values there. ok ⇔ max|got − want| ≤ atol + rtol · max|want|."""

import numpy as np

from torch_ref.report import compare


def assert_close(
    check: str, where: str, got: np.ndarray, want: np.ndarray, *, rtol: float, atol: float
) -> None:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{check} [{where}]: shape {got.shape}, torch {want.shape}"
    row = compare("tensor", check, got, want, rtol, atol)
    assert row.ok, (
        f"{check} [{where}] at index {row.index}: manual {row.manual!r}, torch {row.autograd!r}, "
        f"|diff| {row.max_abs_err:.3e} > {atol + rtol * np.abs(want).max():.3e}"
    )
