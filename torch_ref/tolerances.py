"""The library's tolerances, in one table: how close your gradients must be to the oracle's.

    ok ⇔ max|yours − oracle| ≤ atol + rtol · max|oracle|, tensor by tensor

- `RTOL`, `ATOL`: both sides float64 (compare_gradients, assert_gradients_close, the pytest
  fixture's assert_close, the command line). Float64 rounding leaves ~1e-16 per operation;
  1e-7 keeps nine orders of magnitude of room for a deep model's sums and is still far below
  what a wrong formula gives.
- `GRAD_TOLERANCES`: check_grads, by the dtype of your gradient (the oracle's is float64;
  yours carries the rounding of its own dtype).
- `GRADCHECK_TOLERANCES`: torch_ref.gradcheck where torch's defaults are left, by the dtype
  of the inputs (a Jacobian block rounds like its inputs).

Each table maps a dtype's name to (rtol, atol). Imports nothing: the command line's --help
and the pytest plugin read it without loading torch.
"""

RTOL, ATOL = 1e-7, 1e-10

GRAD_TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (RTOL, ATOL),
    "float32": (1e-4, 1e-6),
    "float16": (1e-2, 1e-4),
    "bfloat16": (5e-2, 1e-3),
}

GRADCHECK_TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (RTOL, ATOL),
    "float32": (1e-4, 1e-6),
    "float16": (1e-2, 1e-3),
    "bfloat16": (5e-2, 1e-2),
}
