"""A model with an op the oracle has no backward for (a channel shuffle on values that carry
gradient): it refuses the model and names the op, its module and your line of code.

    torch-ref check examples/unsupported.py:ShuffledPairs --input-shape 4,10
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class ShuffledPairs(nn.Module):
    def __init__(self, n_in: int = 10, n_out: int = 4) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear(x).unsqueeze(-1)  # (N, 4, 1): four channels
        return F.channel_shuffle(h, 2).squeeze(-1)
