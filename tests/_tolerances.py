"""The test suite's tolerances, in one table: how close two float64 results must be, by what
they are (the library's own defaults are torch_ref's: rtol 1e-7, atol 1e-10).

Rounding in float64 is ~1.1e-16 per operation; two correct computations of the same value
differ by it times the number of terms and the conditioning of what they compute. So:

- `reordered`: the same sums in another order (a fast kernel against its literal formula);
- `layer`: one layer's forward or backward against torch's (its own kernels, same formula);
- `model`: a whole model's gradients against torch.autograd (products of many layers).

A test that needs looser than these says why beside its call. (Adopted first by the tests of
the first-contact work; the older files keep their own TOL until they move here.)
"""

TOLERANCES: dict[str, dict[str, float]] = {
    "reordered": {"rtol": 1e-12, "atol": 1e-12},
    "layer": {"rtol": 1e-10, "atol": 1e-12},
    "model": {"rtol": 1e-9, "atol": 1e-12},
}
