"""The test suite's tolerances, in one table: how close two float64 results must be, by what
they are (the library's own defaults are torch_ref.tolerances: rtol 1e-7, atol 1e-10).

    ok ⇔ max|got − want| ≤ atol + rtol · max|want|

Rounding in float64 is ~1.1e-16 per operation; two correct computations of the same value
differ by it times the number of terms and the conditioning of what they compute. So:

- `equal`: bit for bit (a copy, or integer sums that are exact in any order);
- `exact`: ops that only move entries and add a few of them up (shape ops, graph values);
- `reordered`: the same sums in another order (a fast kernel against its literal formula);
- `loss`: a loss's value and ∂L/∂y (one reduction) against torch's;
- `optimizer`: one optimiser step, elementwise (no absolute slack: zero stays zero);
- `layer`: one layer's forward or backward against torch's (its own kernels, same formula);
- `reassociated`: one op whose products and sums run in another order than torch's
  (matmul, einsum, attention), the default of tests/_layer_check.py;
- `model`: a whole model's gradients against torch.autograd (products of many layers);
- `recurrent`: backprop through time against torch's unrolled steps (T products of step
  Jacobians; no absolute slack);
- `finite_differences`: a central difference against ⟨∇L, v⟩: ε² truncation and round-off
  over ε, so ten times the round-off estimate (tests/test_finite_differences.py);
- `elementwise`: an activation's f and f′ against torch's, relative to 1 + |value| (`f`,
  `grad`): one function of one number.

A test that needs looser than these says why beside its call. tests/test_house.py fails
when a test file writes a tolerance of its own.
"""

TOLERANCES: dict[str, dict[str, float]] = {
    "equal": {"rtol": 0.0, "atol": 0.0},
    "exact": {"rtol": 1e-12, "atol": 1e-14},
    "reordered": {"rtol": 1e-12, "atol": 1e-12},
    "loss": {"rtol": 1e-12, "atol": 1e-15},
    "optimizer": {"rtol": 1e-12, "atol": 0.0},
    "layer": {"rtol": 1e-10, "atol": 1e-12},
    "reassociated": {"rtol": 1e-9, "atol": 1e-12},
    "model": {"rtol": 1e-9, "atol": 1e-12},
    "recurrent": {"rtol": 1e-9, "atol": 0.0},
    "finite_differences": {"rtol": 1e-6, "atol": 1e-7},
    "elementwise": {"f": 1e-14, "grad": 1e-13},
}
