"""BatchNorm and LayerNorm against torch.autograd in float64: forward, ∂γ, ∂β and δ_prev."""

from __future__ import annotations

from dataclasses import dataclass

import _compare
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from manual_bp.ops.normalization import BatchNorm, BatchNorm1d, BatchNorm2d, LayerNorm

#: one tolerance for every comparison with torch: max|manual − torch| ≤ atol + rtol·max|torch|
TOL = {"rtol": 1e-10, "atol": 1e-12}

BN_CLASSES = {"1d": (BatchNorm1d, torch.nn.BatchNorm1d), "2d": (BatchNorm2d, torch.nn.BatchNorm2d)}


def assert_close(check: str, where: str, got: np.ndarray, want: np.ndarray) -> None:
    """Fail naming the check, the case, the worst index and both values there."""
    _compare.assert_close(check, where, got, want, **TOL)


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().numpy().copy()


# --- the layer vs torch, for one spec ---------------------------------------------------


def check_against_torch(
    layer: BatchNorm | LayerNorm, m: torch.nn.Module, x: torch.Tensor, up: torch.Tensor, where: str
) -> None:
    """The layer beside torch's module on the same x and upstream δ: shape, z, δ_prev, ∂L/∂θ."""
    x.requires_grad_(True)
    out = m(x)
    out.backward(up)

    assert layer.shape(tuple(x.shape)) == tuple(out.shape), where
    z, cache = layer.forward(_np(x))
    delta_prev, grads = layer.backward(_np(up), cache)
    assert_close("forward z", where, z, _np(out))
    assert_close("δ_prev", where, delta_prev, _np(x.grad))
    torch_grads = {n: _np(p.grad) for n, p in m.named_parameters()}
    assert set(grads) == set(torch_grads), f"param names [{where}]: {set(grads)} vs torch"
    for name, g in torch_grads.items():
        assert_close(f"∂L/∂{name}", where, grads[name], g)


@dataclass(frozen=True)
class BNCase:
    id: str
    kind: str  # "1d" or "2d"
    shape: tuple[int, ...]
    training: bool
    affine: bool = True
    track: bool = True  # track_running_stats
    eps: float = 1e-5
    seed: int = 0


def check_batchnorm(case: BNCase) -> None:
    ours, theirs = BN_CLASSES[case.kind]
    gen = torch.Generator().manual_seed(case.seed)
    C = case.shape[1]
    m = theirs(C, eps=case.eps, affine=case.affine, track_running_stats=case.track).double()
    with torch.no_grad():
        if case.affine:
            m.weight.copy_(0.5 + torch.rand(C, generator=gen, dtype=torch.float64))
            m.bias.copy_(torch.randn(C, generator=gen, dtype=torch.float64))
        if case.track:
            m.running_mean.copy_(torch.randn(C, generator=gen, dtype=torch.float64))
            m.running_var.copy_(0.5 + 2 * torch.rand(C, generator=gen, dtype=torch.float64))
    m.train(case.training)
    layer = ours(
        weight=_np(m.weight),
        bias=_np(m.bias),
        running_mean=_np(m.running_mean),
        running_var=_np(m.running_var),
        eps=case.eps,
        training=case.training,
    )
    x = 3.0 + 2.0 * torch.randn(case.shape, generator=gen, dtype=torch.float64)
    up = torch.randn(case.shape, generator=gen, dtype=torch.float64)
    check_against_torch(layer, m, x, up, case.id)


@dataclass(frozen=True)
class LNCase:
    id: str
    shape: tuple[int, ...]
    normalized_shape: tuple[int, ...]
    affine: str = "both"  # "both", "weight" (torch's bias=False) or "none"
    eps: float = 1e-5
    seed: int = 0


def check_layernorm(case: LNCase) -> None:
    gen = torch.Generator().manual_seed(case.seed)
    m = torch.nn.LayerNorm(
        case.normalized_shape,
        eps=case.eps,
        elementwise_affine=case.affine != "none",
        bias=case.affine == "both",
    ).double()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(0.5 + torch.rand(p.shape, generator=gen, dtype=torch.float64))
    layer = LayerNorm(case.normalized_shape, weight=_np(m.weight), bias=_np(m.bias), eps=case.eps)
    x = 1.0 + 3.0 * torch.randn(case.shape, generator=gen, dtype=torch.float64)
    up = torch.randn(case.shape, generator=gen, dtype=torch.float64)
    check_against_torch(layer, m, x, up, case.id)


# --- tables of named cases --------------------------------------------------------------

BN_CASES = [
    BNCase("bn1d_NC_eval", "1d", (6, 4), training=False),
    BNCase("bn1d_NC_train", "1d", (6, 4), training=True),
    BNCase("bn1d_NCL_eval", "1d", (3, 4, 5), training=False),
    BNCase("bn1d_NCL_train", "1d", (3, 4, 5), training=True),
    BNCase("bn1d_N1_L2_train", "1d", (1, 3, 2), training=True),
    BNCase("bn1d_N2_train_min", "1d", (2, 3), training=True),
    BNCase("bn1d_train_no_affine", "1d", (5, 3), training=True, affine=False),
    BNCase("bn1d_eval_no_affine", "1d", (5, 3, 2), training=False, affine=False),
    BNCase("bn1d_no_track_train", "1d", (5, 3), training=True, track=False),
    BNCase("bn1d_no_track_eval", "1d", (5, 3, 4), training=False, track=False),
    BNCase("bn1d_eps_big_train", "1d", (4, 3), training=True, eps=0.5),
    BNCase("bn1d_eps_big_eval", "1d", (4, 3), training=False, eps=0.5),
    BNCase("bn2d_eval", "2d", (2, 3, 4, 5), training=False),
    BNCase("bn2d_train", "2d", (2, 3, 4, 5), training=True),
    BNCase("bn2d_N1_train", "2d", (1, 2, 3, 3), training=True),
    BNCase("bn2d_train_no_affine", "2d", (2, 3, 2, 2), training=True, affine=False),
    BNCase("bn2d_no_track_eval", "2d", (2, 3, 3, 2), training=False, track=False),
    BNCase(
        "bn2d_no_track_no_affine", "2d", (3, 2, 2, 2), training=False, track=False, affine=False
    ),
    BNCase("bn2d_eps_tiny_train", "2d", (2, 3, 2, 3), training=True, eps=1e-12),
    BNCase("bn2d_empty_batch_eval", "2d", (0, 3, 2, 2), training=False),
]

LN_CASES = [
    LNCase("ln_last_dim", (4, 5), (5,)),
    LNCase("ln_last_dim_3d", (2, 3, 6), (6,)),
    LNCase("ln_two_dims", (2, 3, 4), (3, 4)),
    LNCase("ln_all_dims", (3, 4), (3, 4)),
    LNCase("ln_no_affine", (4, 5), (5,), affine="none"),
    LNCase("ln_two_dims_no_affine", (2, 3, 4), (3, 4), affine="none"),
    LNCase("ln_bias_false", (4, 5), (5,), affine="weight"),
    LNCase("ln_two_dims_bias_false", (2, 2, 3, 4), (3, 4), affine="weight"),
    LNCase("ln_eps_big", (3, 7), (7,), eps=0.3),
    LNCase("ln_one_feature", (4, 1), (1,)),  # v = 0: x̂ = 0, z = β
    LNCase("ln_1d_input", (6,), (6,)),
    LNCase("ln_empty_batch", (0, 5), (5,)),
]


@pytest.mark.parametrize("case", BN_CASES, ids=lambda c: c.id)
def test_batchnorm_matches_torch(case: BNCase) -> None:
    check_batchnorm(case)


@pytest.mark.parametrize("case", LN_CASES, ids=lambda c: c.id)
def test_layernorm_matches_torch(case: LNCase) -> None:
    check_layernorm(case)


@pytest.mark.parametrize("case", [c for c in BN_CASES if c.training], ids=lambda c: c.id)
def test_batchnorm_train_delta_sees_the_statistics(case: BNCase) -> None:
    """z does not change when a channel of x is shifted, so Σ δ_prev = 0 per channel; it
    would not change when one is scaled but for eps, so Σ δ_prev ⊙ x̂ = eps/(v+eps) · Σ δ ⊙ x̂/σ.
    """
    rng = np.random.default_rng(case.seed)
    layer = BatchNorm(training=True, eps=case.eps)
    x = 1.0 + rng.standard_normal(case.shape)
    delta = rng.standard_normal(case.shape)
    z, cache = layer.forward(x)
    delta_prev, _ = layer.backward(delta, cache)
    axes = (0, *range(2, x.ndim))
    inv_std = cache.inv_std.reshape(-1)  # (C,)
    var = x.var(axis=axes)
    scale_route = case.eps / (var + case.eps) * inv_std * (delta * cache.x_hat).sum(axis=axes)
    checks = [
        ("Σ δ_prev", delta_prev.sum(axis=axes), np.zeros_like(inv_std)),
        ("Σ δ_prev ⊙ x̂", (delta_prev * cache.x_hat).sum(axis=axes), scale_route),
    ]
    # rounding: a few ulps of the terms δ_prev is the difference of, (|δ|/σ)(1 + |x̂|)²
    terms = np.abs(delta) * cache.inv_std * (1 + np.abs(cache.x_hat)) ** 2
    bound = 64 * np.finfo(np.float64).eps * terms.sum()
    for check, got, want in checks:
        c = int(np.argmax(np.abs(got - want)))
        assert abs(got[c] - want[c]) <= bound, (
            f"{check} [{case.id}] channel {c}: {got[c]!r}, expected {want[c]!r}"
        )


# --- a property over random shapes -------------------------------------------------------


@st.composite
def bn_cases(draw: st.DrawFn, *, max_side: int = 4) -> BNCase:
    kind = draw(st.sampled_from(["1d", "2d"]))
    ndim = draw(st.sampled_from([2, 3])) if kind == "1d" else 4
    training = draw(st.booleans())
    track = draw(st.booleans())
    shape = tuple(draw(st.integers(1, max_side)) for _ in range(ndim))
    if (training or not track) and np.prod(shape) // shape[1] <= 1:
        shape = (shape[0] + 1, *shape[1:])  # more than one value per channel
    return BNCase(
        id=f"bn{kind}_{shape}_train={training}_track={track}",
        kind=kind,
        shape=shape,
        training=training,
        affine=draw(st.booleans()),
        track=track,
        eps=draw(st.sampled_from([1e-5, 1e-3, 0.1])),
        seed=draw(st.integers(0, 2**16)),
    )


@st.composite
def ln_cases(draw: st.DrawFn, *, max_side: int = 4, max_ndim: int = 4) -> LNCase:
    ndim = draw(st.integers(1, max_ndim))
    shape = tuple(draw(st.integers(1, max_side)) for _ in range(ndim))
    k = draw(st.integers(1, ndim))
    affine = draw(st.sampled_from(["both", "weight", "none"]))
    return LNCase(
        id=f"ln_{shape}_over_{shape[ndim - k :]}_{affine}",
        shape=shape,
        normalized_shape=shape[ndim - k :],
        affine=affine,
        eps=draw(st.sampled_from([1e-5, 1e-3, 0.1])),
        seed=draw(st.integers(0, 2**16)),
    )


@given(case=bn_cases())
def test_batchnorm_property_random_shapes(case: BNCase) -> None:
    check_batchnorm(case)


@given(case=ln_cases())
def test_layernorm_property_random_shapes(case: LNCase) -> None:
    check_layernorm(case)


# --- refusals: ValueError before arithmetic, where torch refuses too ----------------------


@dataclass(frozen=True)
class ErrorCase:
    id: str
    build: object  # () -> layer; may itself raise
    in_shape: tuple[int, ...] | None  # None: the constructor raises
    match: str
    torch_call: object | None = None  # () -> anything; must raise where given


def _t(*shape: int) -> torch.Tensor:
    return torch.zeros(shape, dtype=torch.float64)


C3 = np.ones(3)
ERROR_CASES = [
    ErrorCase(
        "bn1d_4d_input",
        lambda: BatchNorm1d(C3, C3, C3, C3),
        (2, 3, 4, 4),
        "2D or 3D input",
        lambda: torch.nn.BatchNorm1d(3).double().eval()(_t(2, 3, 4, 4)),
    ),
    ErrorCase(
        "bn2d_2d_input",
        lambda: BatchNorm2d(C3, C3, C3, C3),
        (2, 3),
        "4D input",
        lambda: torch.nn.BatchNorm2d(3).double().eval()(_t(2, 3)),
    ),
    ErrorCase(
        "bn_channel_mismatch",
        lambda: BatchNorm1d(C3, C3, C3, C3),
        (2, 4),
        "3 channels",
        lambda: torch.nn.BatchNorm1d(3).double().eval()(_t(2, 4)),
    ),
    ErrorCase(
        "bn_train_one_value_NC",
        lambda: BatchNorm1d(C3, C3, training=True),
        (1, 3),
        "more than 1 value per channel",
        lambda: torch.nn.BatchNorm1d(3).double().train()(_t(1, 3)),
    ),
    ErrorCase(
        "bn_train_one_value_NCL",
        lambda: BatchNorm1d(training=True),
        (1, 3, 1),
        "more than 1 value per channel",
        lambda: torch.nn.BatchNorm1d(3).double().train()(_t(1, 3, 1)),
    ),
    ErrorCase(
        "bn_train_one_value_2d",
        lambda: BatchNorm2d(training=True),
        (1, 3, 1, 1),
        "more than 1 value per channel",
        lambda: torch.nn.BatchNorm2d(3).double().train()(_t(1, 3, 1, 1)),
    ),
    ErrorCase(
        "bn_no_track_eval_one_value",
        lambda: BatchNorm1d(C3, C3),
        (1, 3),
        "more than 1 value per channel",
        lambda: torch.nn.BatchNorm1d(3, track_running_stats=False).double().eval()(_t(1, 3)),
    ),
    ErrorCase(
        "bn_train_empty_batch",
        lambda: BatchNorm1d(training=True),
        (0, 3),
        "more than 1 value per channel",
    ),
    ErrorCase(
        "bn_running_mean_alone",
        lambda: BatchNorm1d(running_mean=C3),
        None,
        "running_var",
    ),
    ErrorCase(
        "bn_param_sizes_differ",
        lambda: BatchNorm1d(np.ones(3), np.ones(4)),
        None,
        r"shape \(C,\)",
    ),
    ErrorCase("bn_eps_zero", lambda: BatchNorm1d(eps=0.0), None, "eps > 0"),
    ErrorCase(
        "ln_trailing_mismatch",
        lambda: LayerNorm(3),
        (2, 4),
        r"\(\*, 3\)",
        lambda: torch.nn.LayerNorm(3).double()(_t(2, 4)),
    ),
    ErrorCase(
        "ln_two_dims_mismatch",
        lambda: LayerNorm((3, 4)),
        (2, 4, 3),
        r"\(\*, 3, 4\)",
        lambda: torch.nn.LayerNorm((3, 4)).double()(_t(2, 4, 3)),
    ),
    ErrorCase(
        "ln_input_too_short",
        lambda: LayerNorm((2, 3)),
        (3,),
        r"\(\*, 2, 3\)",
        lambda: torch.nn.LayerNorm((2, 3)).double()(_t(3)),
    ),
    ErrorCase(
        "ln_empty_normalized_shape",
        lambda: LayerNorm(()),
        None,
        "at least one dim",
        lambda: torch.nn.LayerNorm(())(_t(2, 3)),
    ),
    ErrorCase(
        "ln_weight_shape",
        lambda: LayerNorm(3, weight=np.ones(4)),
        None,
        "weight of shape",
    ),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c.id)
def test_refusals(case: ErrorCase) -> None:
    if case.torch_call is not None:
        with pytest.raises((RuntimeError, ValueError)):
            case.torch_call()
    if case.in_shape is None:
        with pytest.raises(ValueError, match=case.match):
            case.build()
        return
    layer = case.build()
    with pytest.raises(ValueError, match=case.match):
        layer.shape(case.in_shape)
    with pytest.raises(ValueError, match=case.match):  # forward checks before arithmetic
        layer.forward(np.zeros(case.in_shape))


# --- the oracle must not change what the caller owns ------------------------------------


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batchnorm_leaves_the_callers_arrays_alone(training: bool) -> None:
    rng = np.random.default_rng(7)
    given = {
        "weight": rng.uniform(0.5, 1.5, 3),
        "bias": rng.standard_normal(3),
        "running_mean": rng.standard_normal(3),
        "running_var": rng.uniform(0.5, 2.0, 3),
    }
    before = {k: v.copy() for k, v in given.items()}
    layer = BatchNorm1d(**given, training=training)
    x = rng.standard_normal((5, 3, 2))
    z, cache = layer.forward(x)
    layer.backward(rng.standard_normal(z.shape), cache)
    for name, arr in given.items():
        assert np.array_equal(arr, before[name]), f"{name} changed: {before[name]} → {arr}"
        assert not np.shares_memory(arr, getattr(layer, name, layer.params.get(name))), name
