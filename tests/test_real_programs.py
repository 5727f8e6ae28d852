"""The program that runs: idioms of real code, each written as its authors write it.

Hugging Face-style models (decorated `forward(*args, **kwargs)`, a ModelOutput-like
dataclass, RMSNorm upcasting with `.to(torch.float32)`, softmax with `dtype=torch.float32`,
a rotary cache filled lazily, padding masks built with `.to(torch.bool)` and `&`, position
ids by `cumsum`), an EMA teacher under `no_grad`, custom Functions, losses written as
functions, state the forward writes: each matches autograd at rtol 1e-9, or for a planted
bug fails naming the right place, and nothing the caller owns changes.
"""

from __future__ import annotations

import copy
import functools
import random
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from _tolerances import TOLERANCES

import torch_ref

TOL = TOLERANCES["model"]
V, D, H = 11, 8, 2  # vocabulary, width, heads


# --- a small Llama-style LM, written as transformers writes it ---------------------------


@dataclass
class CausalLMOutput:
    logits: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None


def can_return_tuple(forward):
    """transformers' decorators: functools.wraps over (*args, **kwargs)."""

    @functools.wraps(forward)
    def wrapper(self, *args, **kwargs):
        return_dict = kwargs.pop("return_dict", True)
        out = forward(self, *args, **kwargs)
        return out if return_dict else (out.logits,)

    return wrapper


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


class RotaryEmbedding(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.max_seq_len_cached = 0
        self.cos_cached = None

    def forward(self, x: torch.Tensor, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        if seq_len > self.max_seq_len_cached:  # filled lazily, on the first call
            self.max_seq_len_cached = seq_len
            t = torch.arange(seq_len, device=x.device, dtype=self.inv_freq.dtype)
            freqs = torch.outer(t, self.inv_freq)
            emb = torch.cat((freqs, freqs), dim=-1)
            self.cos_cached, self.sin_cached = emb.cos(), emb.sin()
        return self.cos_cached[:seq_len].to(x.dtype), self.sin_cached[:seq_len].to(x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head_dim = D // H
        self.q_proj = nn.Linear(D, D, bias=False)
        self.k_proj = nn.Linear(D, D, bias=False)
        self.v_proj = nn.Linear(D, D, bias=False)
        self.o_proj = nn.Linear(D, D, bias=False)
        self.rotary_emb = RotaryEmbedding(self.head_dim)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        bsz, q_len, _ = hidden_states.size()
        q = self.q_proj(hidden_states).view(bsz, q_len, H, self.head_dim).transpose(1, 2)
        k = self.k_proj(hidden_states).view(bsz, q_len, H, self.head_dim).transpose(1, 2)
        v = self.v_proj(hidden_states).view(bsz, q_len, H, self.head_dim).transpose(1, 2)
        cos, sin = self.rotary_emb(v, seq_len=q_len)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        scores = torch.matmul(q, k.transpose(2, 3)) / self.head_dim**0.5
        scores = scores + attention_mask
        weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        self.last_attn = weights  # (a forward that keeps state on the module)
        out = torch.matmul(weights, v).transpose(1, 2).reshape(bsz, q_len, D)
        return self.o_proj(out)


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(D)
        self.self_attn = Attention()
        self.post_attention_layernorm = RMSNorm(D)
        self.mlp = nn.Sequential(nn.Linear(D, 2 * D), nn.SiLU(), nn.Linear(2 * D, D))

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), attention_mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class TinyLlama(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(V, D)
        self.layers = nn.ModuleList([Block(), Block()])
        self.norm = RMSNorm(D)
        self.lm_head = nn.Linear(D, V, bias=False)
        self.calls = 0

    @can_return_tuple
    def forward(self, *args, **kwargs) -> CausalLMOutput:
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        attention_mask = kwargs.get("attention_mask")
        self.calls += 1
        position_ids = attention_mask.long().cumsum(-1) - 1  # left padding
        position_ids.masked_fill_(attention_mask == 0, 1)
        x = self.embed_tokens(input_ids)
        n = input_ids.shape[1]
        causal = torch.tril(torch.ones(n, n, device=x.device)).to(torch.bool)
        keep = causal[None, None] & attention_mask[:, None, None, :].to(torch.bool)
        mask = torch.zeros(keep.shape, dtype=x.dtype).masked_fill(~keep, torch.finfo(x.dtype).min)
        for layer in self.layers:
            x = layer(x, mask)
        return CausalLMOutput(logits=self.lm_head(self.norm(x)))


def _lm_batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, V, (2, 5), generator=g)
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    return {"input_ids": ids, "attention_mask": mask}


def _lm_loss(out: CausalLMOutput, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out.logits.flatten(0, 1), labels.flatten(), ignore_index=-100)


def _labels(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)


def test_a_llama_style_lm_as_users_hold_it_matches_autograd():
    """Keyword inputs, a padded mask, a decorated forward, a dataclass output, float32 upcasts
    in RMSNorm and softmax, a lazily filled rotary cache: float64 end to end."""
    torch.manual_seed(0)
    model = TinyLlama()  # float32, as users hold it
    batch = _lm_batch()
    report = torch_ref.compare_gradients(model, _lm_loss, batch, _labels(batch), **TOL)
    assert report.ok, str(report)
    assert {r.name for r in report.rows if r.kind == "param"} == {
        n for n, _ in model.named_parameters()
    }
    deltas = {r.name for r in report.rows if r.kind == "delta"}
    assert "layers.0.self_attn.q_proj" in deltas and "lm_head" in deltas


def test_the_caller_model_keeps_its_state():
    """What the forward writes (a counter, a cache, the last attention map) happens to the
    twin: the caller's model, its caches and its counters are as they were."""
    torch.manual_seed(0)
    model = TinyLlama()
    batch = _lm_batch()
    before = copy.deepcopy(model.state_dict())
    torch_ref.compare_gradients(model, _lm_loss, batch, _labels(batch))
    torch_ref.manual_gradients(model, _lm_loss, batch, _labels(batch))
    assert model.calls == 0
    attn = model.layers[0].self_attn
    assert attn.rotary_emb.max_seq_len_cached == 0 and attn.rotary_emb.cos_cached is None
    assert not hasattr(attn, "last_attn")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_a_planted_bug_in_rms_norm_fails_naming_its_layer():
    """A custom backward that is wrong (RMSNorm's weight gradient off by a factor) fails,
    naming the Function and the parameter."""

    class RMSNormFn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w):
            r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
            ctx.save_for_backward(x, w, r)
            return w * x * r

        @staticmethod
        def backward(ctx, g):
            x, w, r = ctx.saved_tensors
            xhat = x * r
            gw = (g * xhat).sum(dim=tuple(range(g.ndim - 1))) * 1.01  # planted: 1% off
            gx = r * (g * w - xhat * (g * w * xhat).mean(-1, keepdim=True))
            return gx, gw

    class FusedRMSNorm(RMSNorm):
        def forward(self, x):
            return RMSNormFn.apply(x, self.weight)

    torch.manual_seed(0)
    model = TinyLlama()
    model.norm = FusedRMSNorm(D)
    batch = _lm_batch()
    report = torch_ref.compare_gradients(model, _lm_loss, batch, _labels(batch), **TOL)
    assert not report.ok
    assert {r.name for r in report.failures() if r.kind == "param"} == {"norm.weight"}
    assert any("RMSNormFn (call 0)" in n and "input 1" in n for n in report.notes)


# --- custom Functions: many, repeated, only one wrong ------------------------------------


class Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g


class Cube(torch.autograd.Function):  # new style: setup_context
    @staticmethod
    def forward(x, scale):
        return scale * x**3

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])
        ctx.scale = inputs[1]

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * ctx.scale * x * x * g * 1.05, None  # planted: 5% off


class TwoFunctions(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.b = nn.Linear(4, 2)

    def forward(self, x):
        h = Square.apply(self.a(x))
        h = Square.apply(h)  # the first Function twice: its ctx is freed and its id reused
        return self.b(Cube.apply(h, 0.5))


def test_two_functions_only_the_second_wrong_is_blamed():
    torch.manual_seed(0)
    model = TwoFunctions().double()
    x = torch.randn(5, 3, dtype=torch.float64) * 0.5
    t = torch.randn(5, 2, dtype=torch.float64)
    report = torch_ref.compare_gradients(model, nn.MSELoss(), x, t, **TOL)
    assert not report.ok
    rows = {r.name: r.status for r in report.rows if r.kind == "function"}
    assert rows == {"Square#0 input 0": "ok", "Square#1 input 0": "ok", "Cube#0 input 0": "fail"}
    assert len(report.notes) == 1 and "Cube (call 0)" in report.notes[0]
    assert "yours against the oracle" in report.notes[0]


# --- grad mode, casts, constants made in forward -------------------------------------------


class Student(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
        self.teacher = copy.deepcopy(self.net)
        self.register_buffer("P", torch.eye(3))

    def forward(self, x):
        with torch.no_grad():  # the EMA teacher: a constant target
            for pt, ps in zip(self.teacher.parameters(), self.net.parameters(), strict=True):
                pt.mul_(0.9).add_(0.1 * ps)
            soft = F.softmax(self.teacher(x), dim=-1)
        logits = self.net(x)
        extra = torch.zeros(x.shape[0], 3)  # float32 by default in the user's code
        return F.log_softmax(logits @ self.P + extra, dim=-1), soft.detach()


def test_no_grad_regions_and_detach_are_constants_as_in_autograd():
    torch.manual_seed(0)
    model = Student()
    x = torch.randn(6, 4)

    def distill(out, target):
        log_p, soft = out
        return -(soft * log_p).sum(1).mean()

    teacher = copy.deepcopy(model.teacher.state_dict())
    report = torch_ref.compare_gradients(model, distill, x, None, **TOL)
    assert report.ok, str(report)
    grads = torch_ref.manual_gradients(model, distill, x, None)
    assert all(grads[n].abs().sum() == 0 for n in grads if n.startswith("teacher."))
    assert any(grads[n].abs().sum() > 0 for n in grads if n.startswith("net."))
    # the EMA update ran on the twin; the caller's teacher is as it was
    assert all(torch.equal(teacher[k], v) for k, v in model.teacher.state_dict().items())


def test_an_unregistered_float32_tensor_attribute_is_a_float64_constant():
    class Projected(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.P = torch.randn(3, 3)  # not a buffer, float32

        def forward(self, x):
            return self.fc(x) @ self.P

    torch.manual_seed(0)
    model = Projected().double()
    x, t = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    report = torch_ref.compare_gradients(model, nn.MSELoss(), x, t, **TOL)
    assert report.ok, str(report)


# --- any loss ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "loss_fn",
    [
        lambda out, t: F.mse_loss(out, t) + 0.1 * F.l1_loss(out, t),
        lambda out, t: F.smooth_l1_loss(out, t, reduction="none").mean(),
        lambda out, t: (out - t).pow(2).sum(-1).sqrt().mean(),
        lambda out, t: nn.HuberLoss(delta=0.5)(out, t) * 2,
    ],
    ids=[
        "sum of two losses",
        "reduction none then mean",
        "a loss written by hand",
        "a scaled module",
    ],
)
def test_any_loss_callable(loss_fn):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.GELU(), nn.Linear(6, 3)).double()
    x, t = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    report = torch_ref.compare_gradients(model, loss_fn, x, t, **TOL)
    assert report.ok, str(report)


def test_a_penalty_that_reads_the_model_parameters():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    x, t = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)

    def loss_fn(out, t):
        return F.mse_loss(out, t) + 1e-2 * sum(p.pow(2).sum() for p in model.parameters())

    # the penalty reads the caller's parameters (the loss closes over the model): they are
    # the same parameters by name, on both sides
    report = torch_ref.compare_gradients(model, loss_fn, x, t, **TOL)
    assert report.ok, str(report)
    plain = torch_ref.manual_gradients(model, nn.MSELoss(), x, t)
    penalised = torch_ref.manual_gradients(model, loss_fn, x, t)
    for n, p in model.named_parameters():
        assert torch.allclose(penalised[n] - plain[n], 2e-2 * p.detach(), rtol=1e-9, atol=1e-12)


# --- random draws and the caller's generators ----------------------------------------------


@pytest.mark.parametrize(
    "draw",
    [lambda x: x * torch.rand_like(x), lambda x: x * float(np.random.rand()),
     lambda x: x * float(np.random.standard_normal()), lambda x: x * random.random()],
    ids=["torch", "numpy", "numpy-cached-gaussian", "python"],
)  # fmt: skip
@pytest.mark.parametrize("cached", [True, False], ids=["gaussian-cached", "none-cached"])
def test_a_forward_that_draws_is_refused_and_every_generator_is_kept(draw, cached):
    class Draws(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return draw(self.fc(x))

    model, x, t = Draws(), torch.randn(2, 3), torch.randn(2, 3)
    torch.manual_seed(1)
    np.random.seed(1)
    if cached:  # NumPy holds a cached gaussian: a draw may take only it, the key unmoved
        np.random.standard_normal()
    random.seed(1)
    states = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    with pytest.raises(ValueError, match="draws random numbers"):
        torch_ref.manual_gradients(model, nn.MSELoss(), x, t)
    assert torch.equal(states[0], torch.get_rng_state())
    assert np.array_equal(states[1][1], np.random.get_state()[1])
    assert states[1][2:] == np.random.get_state()[2:]
    assert states[2] == random.getstate()


# --- trust holes -------------------------------------------------------------------------


def test_a_model_that_cannot_be_copied_is_refused_naming_the_attribute():
    import threading

    model = nn.Sequential(nn.Linear(3, 3))
    model[0].lock = threading.Lock()
    with pytest.raises(
        torch_ref.UnsupportedModuleError, match=r"'0\.lock'.*deep-copied|deep-copied.*'0\.lock'"
    ):
        torch_ref.manual_gradients(model, nn.MSELoss(), torch.randn(2, 3), torch.randn(2, 3))


def test_an_inplace_activation_at_the_start_of_a_sequential():
    torch.manual_seed(0)
    model = nn.Sequential(nn.ReLU(inplace=True), nn.Linear(3, 3)).double()
    x, t = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    kept = x.clone()
    assert torch_ref.compare_gradients(model, nn.MSELoss(), x, t, **TOL).ok
    assert torch.equal(x, kept)  # the caller's input is never written
    with pytest.raises(torch_ref.UnsupportedModuleError, match="modifies 'input' in place"):
        torch_ref.compare_gradients(model, nn.MSELoss(), x, t, input_grads=True)


def test_compiled_module_is_checked_through_its_original():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    compiled = torch.compile(model)
    x, t = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    grads = torch_ref.manual_gradients(compiled, nn.MSELoss(), x, t)
    assert set(grads) == {n for n, _ in compiled.named_parameters()}


def test_the_forward_runs_once_per_oracle_call():
    class Counted(nn.Module):
        runs = 0

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            type(self).runs += 1
            return self.fc(x)

    x, t = torch.randn(2, 3), torch.randn(2, 3)
    torch_ref.manual_gradients(Counted(), nn.MSELoss(), x, t)
    assert Counted.runs == 1
    Counted.runs = 0
    torch_ref.compare_gradients(Counted(), nn.MSELoss(), x, t)
    assert Counted.runs == 1


def test_a_zero_gradient_torch_hands_back_as_a_zero_tensor():
    """torch's gradient of sgn is a ZeroTensor (no values to read): zeros, on both sides."""

    class Sign(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return torch.sgn(self.fc(x)) + self.fc(x)

    torch.manual_seed(0)
    x, t = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    assert torch_ref.compare_gradients(Sign().double(), nn.MSELoss(), x, t, **TOL).ok
    x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch_ref.gradcheck(lambda x: torch.sgn(x) * x, (x,))


def test_item_assignment_and_writes_through_an_indexing_view():
    """x[:, 0] = 0, a buffer filled by slices, and kornia's H[..., -1, -1] += 1 (a write
    through a view, then assigned back): each the program autograd differentiates."""

    class Writes(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(9, 9)

        def forward(self, x):
            h = self.fc(x)
            h[:, 0] = 0
            buf = torch.zeros(x.shape[0], 11)
            buf[:, 1:10] = h
            H = buf[:, 1:10].reshape(-1, 3, 3) * 2
            H[..., -1, -1] += 1
            return H

    torch.manual_seed(0)
    model = Writes().double()
    x, t = torch.randn(4, 9, dtype=torch.float64), torch.randn(4, 3, 3, dtype=torch.float64)
    report = torch_ref.compare_gradients(model, nn.MSELoss(), x, t, **TOL)
    assert report.ok, str(report)
    assert report.rows[1].name == "fc.bias"
    assert torch_ref.manual_gradients(model, nn.MSELoss(), x, t)["fc.weight"][0].abs().sum() == 0


def test_a_program_torch_cannot_differentiate_is_refused_with_torchs_reason():
    class ExpInPlace(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            h = self.fc(x).exp()
            h[:, 0] += 1  # exp saved its output for backward: torch refuses
            return h

    x, t = torch.randn(4, 3), torch.randn(4, 3)
    with pytest.raises(ValueError, match="torch.autograd cannot differentiate this forward"):
        torch_ref.compare_gradients(ExpInPlace(), nn.MSELoss(), x, t)
    assert set(torch_ref.manual_gradients(ExpInPlace(), nn.MSELoss(), x, t)) == {
        "fc.weight",
        "fc.bias",
    }


class _Autocast(nn.Module):
    """A mixed-precision block as users write one: a bfloat16 autocast region, then .float()."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 8)
        self.b = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = torch.tanh(self.a(x))
        return self.b(h.float())


def test_an_autocast_region_is_float64_in_the_twin_and_named():
    torch.manual_seed(0)
    model, x, y = _Autocast(), torch.randn(5, 4), torch.randn(5, 3)
    report = torch_ref.compare_gradients(model, nn.MSELoss(), x, y, rtol=1e-9, input_grads=True)
    assert report.ok, report.failure_message()  # (a bfloat16 reference would differ by ~1e-3)
    assert any("torch.autocast" in n for n in report.notes), report.notes
    assert torch.is_autocast_enabled("cpu") is False  # (the caller's state is as it was)
    w = model.a.weight.detach().double().requires_grad_()
    h = torch.tanh(F.linear(x.double(), w, model.a.bias.detach().double()))
    out = F.linear(h, model.b.weight.double(), model.b.bias.double())
    nn.MSELoss()(out, y.double()).backward()  # (float64 throughout, no autocast)
    grads = torch_ref.manual_gradients(model, nn.MSELoss(), x, y)
    torch.testing.assert_close(grads["a.weight"].double(), w.grad, rtol=1e-6, atol=0)
