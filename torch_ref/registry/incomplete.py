"""Rows of the special functions with a derivative in one argument only: torch.special.zeta
(in q) and gammainc / gammaincc (in x). Their formulas: manual_bp.ops.incomplete."""

from __future__ import annotations

import torch

from manual_bp.ops.incomplete import GammaInc, Zeta
from torch_ref.registry.arithmetic import binary_rule
from torch_ref.registry.core import OpEntry, Sample


def _zeta_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(31)
    q = 0.5 + 3 * torch.rand(3, 4, generator=g, dtype=torch.float64)
    x = 1.5 + 3 * torch.rand(4, generator=g, dtype=torch.float64)
    return [
        Sample("q, x a number", (q,), fn=lambda q: torch.special.zeta(2.5, q)),
        Sample("q, x a constant tensor (broadcast)", (q,), fn=lambda q: torch.special.zeta(x, q)),
    ]


def _gammainc_samples(fn) -> list[Sample]:
    g = torch.Generator().manual_seed(32)
    x = 0.1 + 4 * torch.rand(3, 4, generator=g, dtype=torch.float64)
    a = 0.5 + 3 * torch.rand(4, generator=g, dtype=torch.float64)
    return [
        Sample("x, a 0-d constant", (x,), fn=lambda x: fn(torch.tensor(1.7, dtype=x.dtype), x)),
        Sample("x, a a constant tensor (broadcast)", (x,), fn=lambda x: fn(a, x)),
    ]


ROWS = [
    OpEntry(
        "zeta",
        "elementwise",
        binary_rule(Zeta, "zeta"),
        functions=(torch.special.zeta,),
        note="ζ(x, q): the gradient in q (torch has none in x)",
        samples=_zeta_samples,
    ),
    OpEntry(
        "gammainc",
        "elementwise",
        binary_rule(GammaInc, "gammainc"),
        functions=(torch.special.gammainc, torch.igamma),
        methods=("igamma", "igamma_"),
        note="P(a, x): the gradient in x (torch has none in a)",
        samples=lambda: _gammainc_samples(torch.special.gammainc),
    ),
    OpEntry(
        "gammaincc",
        "elementwise",
        binary_rule(lambda: GammaInc(upper=True), "gammaincc"),
        functions=(torch.special.gammaincc, torch.igammac),
        methods=("igammac", "igammac_"),
        note="Q(a, x) = 1 − P(a, x): the gradient in x (torch has none in a)",
        samples=lambda: _gammainc_samples(torch.special.gammaincc),
    ),
]
