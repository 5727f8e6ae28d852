"""Calls torch has no float64 kernel for, made of their definition in the twin
(torch_ref.twin_forms): torch._grouped_mm, the Mixture-of-Experts GEMM."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from _tolerances import TOLERANCES

import torch_ref
from torch_ref.twin_forms import grouped_mm

TOL = TOLERANCES["model"]


def _layouts() -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    offs = torch.tensor([4, 4, 12], dtype=torch.int32)  # (an empty group in the middle)
    return [
        ("2d x 3d (experts' tokens)", r(16, 8), r(3, 8, 4), offs),  # rows past 12 ignored
        ("2d x 2d (experts' weight gradients)", r(4, 16), r(16, 8), offs),
        ("3d x 2d", r(3, 4, 8), r(8, 16), offs),
        ("3d x 3d (batched)", r(3, 4, 8), r(3, 8, 4), None),
    ]


@pytest.mark.parametrize("case", _layouts(), ids=lambda c: c[0])
def test_the_twins_grouped_mm_is_torchs_on_every_layout(case):
    _, a, b, offs = case
    want = torch._grouped_mm(a, b, offs=offs)
    got = grouped_mm(a, b, offs=offs)
    if a.ndim == 2 and b.ndim == 3:  # (torch leaves the rows past offs[-1] unwritten)
        want, got = want[:12], got[:12]
    if a.ndim == 3 and b.ndim == 2:  # (and the columns)
        want, got = want[:, :12], got[:, :12]
    torch.testing.assert_close(got, want)


def test_bad_offsets_are_refused_naming_the_call():
    a, b = torch.randn(8, 4), torch.randn(2, 4, 4)
    with pytest.raises(ValueError, match=r"torch._grouped_mm: expected offs increasing"):
        grouped_mm(a, b, offs=torch.tensor([6, 2], dtype=torch.int32))
    with pytest.raises(ValueError, match=r"offs is needed"):
        grouped_mm(a, b)


class Experts(nn.Module):
    """A top-2 Mixture-of-Experts feed-forward, written as transformers writes its experts
    (tokens sorted by expert, one grouped GEMM per projection)."""

    def __init__(self, dim: int = 8, hidden: int = 16, n: int = 4) -> None:
        super().__init__()
        self.n = n
        self.router = nn.Linear(dim, n, bias=False)
        self.up = nn.Parameter(torch.randn(n, dim, hidden) / dim**0.5)
        self.down = nn.Parameter(torch.randn(n, hidden, dim) / hidden**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.reshape(-1, x.shape[-1])
        weights, experts = torch.topk(F.softmax(self.router(tokens), -1, dtype=torch.float), 2)
        experts_g, perm = torch.sort(experts.reshape(-1))
        picked = tokens[perm // 2]
        counts = torch.histc(experts_g.float(), bins=self.n, min=0, max=self.n - 1)
        offs = torch.cumsum(counts, 0, dtype=torch.int32)
        h = F.silu(F.grouped_mm(picked, self.up, offs=offs))
        out = F.grouped_mm(h, self.down, offs=offs) * weights.reshape(-1)[perm, None].to(h.dtype)
        return torch.zeros_like(tokens).index_add(0, perm // 2, out).reshape(x.shape)


def test_a_mixture_of_experts_layer_matches_autograd_and_names_the_form():
    torch.manual_seed(0)
    model = nn.Sequential(Experts(), nn.Linear(8, 3))
    x, t = torch.randn(2, 5, 8), torch.randint(0, 3, (2, 5))
    loss = lambda out, t: F.cross_entropy(out.flatten(0, 1), t.flatten())  # noqa: E731
    report = torch_ref.compare_gradients(model, loss, x, t, **TOL)
    assert report.ok, str(report)
    names = {r.name for r in report.rows if r.kind == "param"}
    assert {"0.up", "0.down", "0.router.weight"} <= names
    assert "torch._grouped_mm" in str(report)


def test_a_wrong_expert_gradient_is_caught():
    """A planted bug: the experts' up-projection with a backward that drops one expert."""

    class DropsExpertZero(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, b, offs):
            ctx.save_for_backward(a, b, offs)
            return torch._grouped_mm(a, b, offs=offs)

        @staticmethod
        def backward(ctx, g):
            a, b, offs = ctx.saved_tensors
            da = torch.zeros_like(a)
            db = torch.zeros_like(b)
            start = 0
            for e, end in enumerate(offs.tolist()):
                if e > 0:  # (the bug: expert 0 gets no gradient)
                    da[start:end] = g[start:end] @ b[e].T
                    db[e] = a[start:end].T @ g[start:end]
                start = end
            return da, db, None

    class Buggy(Experts):
        def forward(self, x):
            tokens = x.reshape(-1, x.shape[-1])
            offs = torch.tensor([3, 6, 8, 10], dtype=torch.int32)
            return DropsExpertZero.apply(tokens, self.up, offs).sum(-1).reshape(x.shape[:-1])

    torch.manual_seed(0)
    report = torch_ref.compare_gradients(
        Buggy(), nn.MSELoss(), torch.randn(2, 5, 8), torch.zeros(2, 5), **TOL
    )
    assert not report.ok
    assert "DropsExpertZero" in str(report)
