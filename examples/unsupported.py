"""A model with an op the oracle has no backward for (a real FFT on values that carry
gradient: its values are complex, and torch runs it as one ATen op with no decomposition):
it refuses the model and names the op, its module and your line of code.

    torch-ref check examples/unsupported.py:Spectrum --input-shape 4,10
"""

import torch
import torch.nn as nn


class Spectrum(nn.Module):
    def __init__(self, n_in: int = 10, n_out: int = 8) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft(self.linear(x)).abs()  # (N, 5): the magnitude spectrum
