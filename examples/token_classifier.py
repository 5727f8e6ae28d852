"""A bag-of-words classifier: token ids → nn.Embedding → mean over the sequence → Linear.
Its input is integers, which the command line draws with --input-dtype and --input-range.

    torch-ref check examples/token_classifier.py:TokenClassifier --input-shape 4,12 \
        --input-dtype int64 --input-range 0,100 --loss cross_entropy
"""

import torch
import torch.nn as nn


class TokenClassifier(nn.Module):
    def __init__(self, vocabulary: int = 100, dim: int = 8, classes: int = 3) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (N, T) integer ids
        return self.head(self.embedding(tokens).mean(dim=1))  # (N, classes)
