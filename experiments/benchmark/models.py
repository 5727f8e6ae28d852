"""The models the benchmark times (an MLP, a CNN, a CIFAR ResNet, a ViT block, a GPT block),
the batches drawn for them (`Case`), and the goals they are held to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

# --- the models ------------------------------------------------------------------------


def mlp(widths: tuple[int, ...], act: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    """Linear layers of these widths, `act` between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths, widths[1:], strict=False)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def cnn(size: int = 32) -> nn.Sequential:
    """Conv(3→16, 3, p1)-ReLU-MaxPool(2)-Conv(16→32, 3, p1)-ReLU-AvgPool(2)-Flatten-Linear."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * (size // 4) ** 2, 10),
    )


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: conv-BN-ReLU-conv-BN, plus the (projected) input, ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """A CIFAR ResNet: a 3×3 stem, 4 BasicBlocks of widths 16, 32, 64, 128 (stride 2 from the
    second), global average pooling, a Linear head. BatchNorm in training mode."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128), classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        blocks, c_in = [], widths[0]
        for i, w in enumerate(widths):
            blocks.append(BasicBlock(c_in, w, 1 if i == 0 else 2))
            c_in = w
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class ViTBlock(nn.Module):
    """A ViT encoder: patch embedding, position embedding, one pre-norm block (LayerNorm,
    nn.MultiheadAttention, LayerNorm, GELU MLP, two residuals), mean over tokens, head."""

    def __init__(self, patch: int = 48, dim: int = 64, heads: int = 4, tokens: int = 64) -> None:
        super().__init__()
        self.embed = nn.Linear(patch, dim)
        self.pos = nn.Parameter(0.02 * torch.randn(1, tokens, dim))
        self.ln1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x) + self.pos
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        x = x + self.mlp(self.ln2(x))
        return self.head(self.norm(x).mean(dim=1))


class GPTBlock(nn.Module):
    """A GPT: token and position embeddings, one pre-norm block with causal
    nn.MultiheadAttention and a GELU MLP, final LayerNorm, a head over the vocabulary.
    Returns logits as (N, vocab, T) for CrossEntropyLoss over every position."""

    def __init__(self, vocab: int = 128, dim: int = 64, heads: int = 4, context: int = 32) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(context, dim)
        self.ln1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)
        self.register_buffer("causal", torch.triu(torch.ones(context, context), 1).bool())
        self.register_buffer("positions", torch.arange(context))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(self.positions)
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=self.causal, need_weights=False)[0]
        x = x + self.mlp(self.ln2(x))
        return self.head(self.ln_f(x)).transpose(1, 2)


class EncoderLM(nn.Module):
    """A small language model as users write one with torch's own blocks: token embedding plus
    a learned positional parameter, a 2-layer pre-norm nn.TransformerEncoder, a head over the
    vocabulary. Returns logits as (N, vocab, T) for CrossEntropyLoss over every position."""

    def __init__(self, vocab: int = 50, dim: int = 32, heads: int = 2, context: int = 8) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(0.02 * torch.randn(context, dim))
        layer = nn.TransformerEncoderLayer(
            dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(dim, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.emb(idx) + self.pos)).transpose(1, 2)


@dataclass(frozen=True)
class Case:
    """A model and a batch for it: `inputs(generator)` draws (x, target)."""

    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]]

    def problem(self) -> tuple[nn.Module, nn.Module, torch.Tensor, torch.Tensor]:
        torch.manual_seed(0)
        model = self.build().double()
        x, t = self.inputs(torch.Generator().manual_seed(1))
        return model, nn.CrossEntropyLoss(), x, t


def images(n: int, size: int, classes: int = 10) -> Callable[..., Any]:
    def draw(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, 3, size, size, generator=g, dtype=torch.float64)
        return x, torch.randint(0, classes, (n,), generator=g)

    return draw


def vectors(n: int, features: int, classes: int) -> Callable[..., Any]:
    def draw(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, features, generator=g, dtype=torch.float64)
        return x, torch.randint(0, classes, (n,), generator=g)

    return draw


def tokens(n: int, t: int, features: int) -> Callable[..., Any]:
    def draw(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, t, features, generator=g, dtype=torch.float64)
        return x, torch.randint(0, 10, (n,), generator=g)

    return draw


def token_ids(n: int, t: int, vocab: int) -> Callable[..., Any]:
    def draw(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, vocab, (n, t), generator=g)
        return idx, torch.randint(0, vocab, (n, t), generator=g)

    return draw


def headline_cases(quick: bool) -> list[Case]:
    if quick:
        return [
            Case("mlp-20-32-10", lambda: mlp((20, 32, 10)), vectors(8, 20, 10)),
            Case("cnn-b2", lambda: cnn(8), images(2, 8)),
            Case("resnet-b2", lambda: ResNet((4, 8, 8, 8)), images(2, 8)),
            Case("vit-block-b2", lambda: ViTBlock(6, 8, 2, 4), tokens(2, 4, 6)),
            Case("gpt-block-b2", lambda: GPTBlock(11, 8, 2, 5), token_ids(2, 5, 11)),
            Case("encoder-lm-b2", EncoderLM, token_ids(2, 8, 50)),
        ]
    return [
        Case("mlp-784-512-512-10", lambda: mlp((784, 512, 512, 10)), vectors(128, 784, 10)),
        Case("cnn-3x32x32", cnn, images(32, 32)),
        Case("resnet-4-blocks", ResNet, images(32, 32)),
        Case("vit-block", ViTBlock, tokens(32, 64, 48)),
        Case("gpt-block", GPTBlock, token_ids(32, 32, 128)),
        Case("encoder-lm-b2", EncoderLM, token_ids(2, 8, 50)),
    ]


#: the goals of issue 11, each with the figure the issue measured before this round
GOALS: dict[str, tuple[str, str, float, str]] = {
    # key: (case, before, goal, how the goal compares)
    "mlp": ("MLP 784-512-512-10, b128, tanh, CE", "1.8× (defaults), 2.1× (1 thread)", 1.0, "≤"),
    "cnn": ("CNN of the benchmark, b32", "3.1× / 2.3×", 1.2, "≤"),
    "resnet": ("CIFAR ResNet, 4 BasicBlocks with BatchNorm, b32", "2.7× / 1.75×", 1.3, "≤"),
    "vit": ("ViT encoder block (nn.MultiheadAttention), b32", "—", 1.5, "≤"),
    "gpt": ("GPT block (causal nn.MultiheadAttention), b32", "—", 1.5, "≤"),
    "lm": (
        "pre-norm nn.TransformerEncoder LM, width 32, b2",
        "5.3× (fx trace, 1 thread)",
        3.0,
        "≤",
    ),
    "gradcheck": ("speed-up over gradcheck, 1,893-parameter MLP", "229×", 1000.0, "≥"),
    "fresh": ("a fresh 20-32-32-5 MLP per compare_gradients call", "—", 3.0, "≤"),
    "memory": ("peak memory, CNN b256 3×64×64, over float64 autograd", "1.9×", 1.3, "≤"),
    "second-core": ("MLP width 1024: time at 2 threads over 1 thread", "≈ 1.0", 0.65, "≤"),
    # torch_ref.gradcheck against torch.autograd.gradcheck (experiments.bench_gradcheck)
    "drop-in-mlp": ("torch_ref.gradcheck over torch's, 1,893-parameter MLP", "181×", 1000.0, "≥"),
    "drop-in-median": ("torch_ref.gradcheck over torch's, median function", "—", 10.0, "≥"),
    "drop-in-overhead": ("torch_ref.gradcheck of a small function, per call", "1.35 ms", 2.0, "≤"),
}
HEADLINE_GOALS = ["mlp", "cnn", "resnet", "vit", "gpt", "lm"]
