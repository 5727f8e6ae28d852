"""A model with an op the oracle does not support (a Bessel function of the first kind): it
refuses the model and names the op, its module and your line of code.

    torch-ref check examples/unsupported.py:BesselFeatures --input-shape 4,10
"""

import torch
import torch.nn as nn


class BesselFeatures(nn.Module):
    def __init__(self, n_in: int = 10, n_out: int = 2) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.special.bessel_j0(x))
