"""torch_ref.gradcheck: torch.autograd.gradcheck's drop-in, exact instead of finite differences.

    from torch_ref import gradcheck      # in place of: from torch.autograd import gradcheck
    assert gradcheck(MyFunction.apply, (x, w))

The subject is autograd's vector–Jacobian product of `func` as you run it (your custom
backwards, an extension's backward); the reference is the exact VJP of the ops the forward
executed, recorded (torch_ref.record) and differentiated by the explicit backward formulas of
manual_bp in float64. Where every floating input is float64 the recorded run is your run
(one call of `func`), unless the record made a cast float64; otherwise it runs on float64
copies of the inputs beside your run. `fast_mode=False` compares the whole Jacobian, one
VJP per output entry on each side (batched: vmap on yours where your backward allows it, the
cotangents stacked along a leading axis on the oracle's where every formula broadcasts over
it; a failing block is always computed again one row at a time); `fast_mode=True` compares
the full input gradients for 3 seeded random cotangents (stronger than torch's scalar vᵀJu).

Torch's signature, return value and raising are kept: True on success; on failure a
`GradcheckError` (a subclass of torch's) whose message names the output, the input, the
worst entry, yours against the oracle's, and any custom Function whose backward differs —
or False with `raise_exception=False`.

What each argument means here:

- `eps`: accepted and unused (there are no finite differences);
- `atol`, `rtol`: when given, torch's test, |yours − oracle| ≤ atol + rtol·|oracle| entry by
  entry; left at torch's defaults, the tolerance of the inputs' dtype (`TOLERANCES`),
  relative to the largest entry of each (output, input) block;
- `raise_exception`: as in torch; `nondet_tol`: your backward, run twice on the same
  cotangent, agrees within it (torch's reentrancy check);
- `check_undefined_grad`, `check_batched_grad`, `check_batched_forward_grad`: torch's own
  checks (no finite differences in them); torch's check that the backward is multiplied by
  the output gradient runs too, as in torch;
- `check_grad_dtypes`: each gradient has its input's dtype;
- `check_backward_ad=False`: no reverse-mode check (the input and output checks still run);
- `check_forward_ad`: your forward-mode derivative (jvp) against the exact Jacobian
  (torch_ref.gradchecks.forward);
- kinks and ties: a block that differs only where a kink or tie was decided by rounding
  (relu at 0, a max pool's tie) and matches when the manual pass takes torch's branch there
  (torch_ref.ties) is a tie, not a failure;
- `masked`, sparse or complex inputs: refused (UnsupportedModuleError), or torch's own
  gradcheck with `fallback="torch"`;
- `reference=` (ours): a pure-torch function computing the same forward, for a func whose
  forward the registry cannot follow (an extension op, NumPy inside).

- stride-0 (expanded) inputs, which torch refuses (its finite differences cannot perturb one
  entry), are checked.

`gradgradcheck`: the user's double backward (and with `check_fwd_over_rev`, forward AD over
the first derivative) against torch's built-in double backward of the same forward with every
custom autograd.Function replaced by its forward's ops (torch_ref.gradchecks.second).
"""

from torch_ref.gradchecks.common import TOLERANCES, GradcheckError
from torch_ref.gradchecks.first import gradcheck
from torch_ref.gradchecks.second import gradgradcheck

__all__ = ["TOLERANCES", "GradcheckError", "gradcheck", "gradgradcheck"]
