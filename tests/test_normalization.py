"""BatchNorm, InstanceNorm, GroupNorm and LayerNorm against torch.autograd in float64:
forward, ∂γ, ∂β and δ_prev; tables of named cases, properties over random shapes, refusals
as data (a negative running_var among them), and planted bugs that must fail."""

from __future__ import annotations

from dataclasses import dataclass

import _compare
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _layer_check import check_layer
from _tolerances import TOLERANCES
from hypothesis import given
from hypothesis import strategies as st

from manual_bp.ops.normalization import (
    BatchNorm,
    BatchNorm1d,
    BatchNorm2d,
    BatchNorm3d,
    GroupNorm,
    InstanceNorm,
    InstanceNorm1d,
    InstanceNorm2d,
    InstanceNorm3d,
    LayerNorm,
)

#: one tolerance for every comparison with torch: max|manual − torch| ≤ atol + rtol·max|torch|
TOL = TOLERANCES["layer"]

BN_CLASSES = {
    "1d": (BatchNorm1d, torch.nn.BatchNorm1d),
    "2d": (BatchNorm2d, torch.nn.BatchNorm2d),
    "3d": (BatchNorm3d, torch.nn.BatchNorm3d),
}


def assert_close(check: str, where: str, got: np.ndarray, want: np.ndarray) -> None:
    """Fail naming the check, the case, the worst index and both values there."""
    _compare.assert_close(check, where, got, want, **TOL)


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().numpy().copy()


# --- the layer vs torch, for one spec ---------------------------------------------------


def check_against_torch(
    layer: BatchNorm | LayerNorm | InstanceNorm | GroupNorm,
    m: torch.nn.Module,
    x: torch.Tensor,
    where: str,
    seed: int = 0,
) -> None:
    """The layer beside torch's module on the same x and a seeded upstream δ: shape, z,
    δ_prev, ∂L/∂θ (tests/_layer_check.py); the module's parameters are the layer's."""
    params = dict(m.named_parameters())

    def torch_fn(x_t: torch.Tensor, **p: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(m, p, (x_t,))

    check_layer(where, layer, [_np(x)], torch_fn, params=params, tol=TOL, seed=seed)


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
    check_against_torch(layer, m, x, case.id, case.seed)


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
    check_against_torch(layer, m, x, case.id, case.seed)


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
    BNCase("bn3d_eval", "3d", (2, 3, 2, 3, 2), training=False),
    BNCase("bn3d_train", "3d", (2, 3, 2, 3, 2), training=True),
    BNCase("bn3d_no_track_no_affine", "3d", (1, 2, 2, 2, 3), training=False, track=False,
           affine=False),
]  # fmt: skip

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


# --- instance norm ----------------------------------------------------------------------------

IN_CLASSES = {
    1: (InstanceNorm1d, torch.nn.InstanceNorm1d),
    2: (InstanceNorm2d, torch.nn.InstanceNorm2d),
    3: (InstanceNorm3d, torch.nn.InstanceNorm3d),
}


@dataclass(frozen=True)
class INCase:
    id: str
    dims: int
    shape: tuple[int, ...]  # (N, C, *spatial) or unbatched (C, *spatial)
    training: bool = False
    affine: bool = False  # torch's defaults: affine=False, track_running_stats=False
    track: bool = False
    eps: float = 1e-5
    seed: int = 0


def _module_and_layer(case: INCase) -> tuple[torch.nn.Module, InstanceNorm]:
    ours, theirs = IN_CLASSES[case.dims]
    gen = torch.Generator().manual_seed(case.seed)
    C = case.shape[-case.dims - 1]
    m = theirs(C, eps=case.eps, affine=case.affine, track_running_stats=case.track).double()
    with torch.no_grad():
        if case.affine:
            m.weight.copy_(0.5 + torch.rand(C, generator=gen, dtype=torch.float64))
            m.bias.copy_(torch.randn(C, generator=gen, dtype=torch.float64))
        if case.track:
            m.running_mean.copy_(torch.randn(C, generator=gen, dtype=torch.float64))
            m.running_var.copy_(0.5 + 2 * torch.rand(C, generator=gen, dtype=torch.float64))
    m.train(case.training)
    # torch's modules pass use_input_stats = training or not track_running_stats
    layer = ours(
        _np(m.weight), _np(m.bias), _np(m.running_mean), _np(m.running_var), eps=case.eps,
        use_input_stats=case.training or not case.track,
    )  # fmt: skip
    return m, layer


def check_instancenorm(case: INCase) -> None:
    m, layer = _module_and_layer(case)
    gen = torch.Generator().manual_seed(case.seed + 1)
    x = 1.0 + 2.0 * torch.randn(case.shape, generator=gen, dtype=torch.float64)
    check_against_torch(layer, m, x, case.id, case.seed)


# fmt: off
IN_CASES = [
    INCase("in1d_default", 1, (2, 3, 5)),
    INCase("in1d_unbatched", 1, (3, 5)),
    INCase("in1d_affine", 1, (2, 3, 5), affine=True),
    INCase("in1d_track_eval_running_stats", 1, (2, 3, 5), track=True),
    INCase("in1d_track_train_input_stats", 1, (2, 3, 5), track=True, training=True),
    INCase("in1d_track_eval_affine_unbatched", 1, (3, 4), track=True, affine=True),
    INCase("in2d_default", 2, (2, 3, 4, 5)),
    INCase("in2d_affine_train", 2, (2, 3, 4, 5), affine=True, training=True),
    INCase("in2d_track_affine_eval", 2, (2, 3, 4, 5), affine=True, track=True),
    INCase("in2d_unbatched", 2, (3, 4, 5), affine=True),
    INCase("in2d_two_spatial_elements", 2, (2, 3, 1, 2)),
    INCase("in2d_eps_big", 2, (2, 3, 2, 3), eps=0.5),
    INCase("in3d_default", 3, (2, 3, 2, 3, 2)),
    INCase("in3d_affine_track_eval", 3, (1, 3, 2, 3, 2), affine=True, track=True),
    INCase("in3d_unbatched_train", 3, (3, 2, 2, 3), affine=True, track=True, training=True),
    INCase("in2d_empty_batch", 2, (0, 3, 2, 2)),
]
# fmt: on


@pytest.mark.parametrize("case", IN_CASES, ids=lambda c: c.id)
def test_instancenorm_matches_torch(case: INCase) -> None:
    check_instancenorm(case)


@st.composite
def in_cases(draw: st.DrawFn) -> INCase:
    dims = draw(st.sampled_from([1, 2, 3]))
    batch = draw(st.sampled_from([(), (1,), (2,)]))
    spatial = tuple(draw(st.integers(1, 4)) for _ in range(dims))
    training, track = draw(st.booleans()), draw(st.booleans())
    if (training or not track) and np.prod(spatial) <= 1:
        spatial = (2, *spatial[1:])  # more than one spatial element for the input's stats
    shape = (*batch, draw(st.integers(1, 3)), *spatial)
    return INCase(
        f"in{dims}d_{shape}_train={training}_track={track}", dims, shape, training,
        draw(st.booleans()), track, draw(st.sampled_from([1e-5, 1e-3, 0.1])),
        draw(st.integers(0, 2**16)),
    )  # fmt: skip


@given(case=in_cases())
def test_instancenorm_property_random_shapes(case: INCase) -> None:
    check_instancenorm(case)


def test_functional_instance_norm_ignores_running_stats_when_using_the_input() -> None:
    """F.instance_norm(x, rm, rv, use_input_stats=True): torch normalises with the input's
    statistics (and would update rm, rv: we never do); the functional layer takes (N, C, …)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 4, 2))
    rm, rv = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    before = (rm.copy(), rv.copy())
    layer = InstanceNorm(running_mean=rm, running_var=rv, use_input_stats=True)
    z, cache = layer.forward(x)
    delta = rng.standard_normal(x.shape)
    dx, _ = layer.backward(delta, cache)
    x_t = torch.from_numpy(x).requires_grad_(True)
    z_t = F.instance_norm(x_t, torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy()))
    (dx_t,) = torch.autograd.grad(z_t, x_t, torch.from_numpy(delta))
    assert_close("z", "F.instance_norm", z, _np(z_t))
    assert_close("δ_prev", "F.instance_norm", dx, _np(dx_t))
    assert np.array_equal(rm, before[0]) and np.array_equal(rv, before[1]), "stats changed"
    with pytest.raises(ValueError, match=r"input \(N, C, \*spatial\)"):
        layer.shape((3, 4))


# --- group norm -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GNCase:
    id: str
    num_groups: int
    shape: tuple[int, ...]
    affine: bool = True
    eps: float = 1e-5
    seed: int = 0


def check_groupnorm(case: GNCase, cls: type = GroupNorm) -> None:
    C = case.shape[1]
    gen = torch.Generator().manual_seed(case.seed)
    m = torch.nn.GroupNorm(case.num_groups, C, eps=case.eps, affine=case.affine).double()
    if case.affine:
        with torch.no_grad():
            m.weight.copy_(0.5 + torch.rand(C, generator=gen, dtype=torch.float64))
            m.bias.copy_(torch.randn(C, generator=gen, dtype=torch.float64))
    layer = cls(case.num_groups, _np(m.weight), _np(m.bias), eps=case.eps)
    x = 1.0 + 2.0 * torch.randn(case.shape, generator=gen, dtype=torch.float64)
    check_against_torch(layer, m, x, case.id, case.seed)


# fmt: off
GN_CASES = [
    GNCase("gn_2_groups_2d", 2, (2, 6, 4, 5)),
    GNCase("gn_1_group_is_layernorm_over_CHW", 1, (2, 4, 3, 3)),
    GNCase("gn_C_groups_is_instancenorm", 4, (2, 4, 3, 3)),
    GNCase("gn_no_spatial", 3, (3, 6)),
    GNCase("gn_one_value_per_group", 4, (3, 4)),  # v = 0: x̂ = 0, z = β
    GNCase("gn_1d", 2, (2, 4, 7)),
    GNCase("gn_3d", 3, (2, 6, 2, 3, 2)),
    GNCase("gn_no_affine", 2, (2, 4, 3, 3), affine=False),
    GNCase("gn_eps_big", 2, (2, 4, 3), eps=0.5),
    GNCase("gn_batch_1", 2, (1, 4, 2, 2)),
    GNCase("gn_empty_batch", 2, (0, 4, 2, 2)),
]
# fmt: on


@pytest.mark.parametrize("case", GN_CASES, ids=lambda c: c.id)
def test_groupnorm_matches_torch(case: GNCase) -> None:
    check_groupnorm(case)


@st.composite
def gn_cases(draw: st.DrawFn) -> GNCase:
    G = draw(st.integers(1, 3))
    C = G * draw(st.integers(1, 3))
    shape = (
        draw(st.integers(1, 3)),
        C,
        *(draw(st.integers(1, 4)) for _ in range(draw(st.integers(0, 3)))),
    )
    if np.prod(shape) // G == 1:
        shape = (2, *shape[1:])  # torch wants more than one value per group (batch counted)
    eps = draw(st.sampled_from([1e-5, 1e-3, 0.1]))
    return GNCase(f"gn_G{G}_{shape}", G, shape, draw(st.booleans()), eps, draw(st.integers(0, 99)))


@given(case=gn_cases())
def test_groupnorm_property_random_shapes(case: GNCase) -> None:
    check_groupnorm(case)


def test_planted_groupnorm_interleaved_groups_fails() -> None:
    """Groups are consecutive channels (c // (C/G)); taking every G-th channel must fail."""

    class Interleaved(GroupNorm):
        def forward(self, x):  # type: ignore[no-untyped-def]
            N, C = x.shape[:2]
            perm = np.arange(C).reshape(C // self.num_groups, self.num_groups).T.ravel()
            z, cache = super().forward(x[:, perm])
            return z[:, np.argsort(perm)], (cache, perm)

        def backward(self, delta, cache):  # type: ignore[no-untyped-def]
            cache, perm = cache
            dx, grads = super().backward(delta[:, perm], cache)
            return dx[:, np.argsort(perm)], grads

    with pytest.raises(AssertionError):
        check_groupnorm(GNCase("planted", 2, (2, 4, 3), affine=False), cls=Interleaved)


def test_planted_instancenorm_without_the_mean_route_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """δ_prev must run through μ and v: dropping the routes (g/σ) must fail."""
    import manual_bp.ops.normalization.instance as instance

    monkeypatch.setattr(instance, "_normalised_backward", lambda g, cache: g * cache.inv_std)
    with pytest.raises(AssertionError, match="δ_prev"):
        check_instancenorm(IN_CASES[0])


# --- the functional batch norm and negative running variances -------------------------------


def test_functional_batch_norm_any_rank() -> None:
    """F.batch_norm takes (N, C, *) of any rank: the base layer given that rank (`ndims`)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 2, 1, 2, 2))
    rm, rv = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    w, b = rng.uniform(0.5, 1.5, 3), rng.standard_normal(3)
    delta = rng.standard_normal(x.shape)
    for training in (False, True):
        layer = BatchNorm(w, b, rm, rv, eps=1e-3, training=training, ndims=(x.ndim,))
        z, cache = layer.forward(x)
        dx, grads = layer.backward(delta, cache)
        x_t = torch.from_numpy(x).requires_grad_(True)
        w_t, b_t = (torch.from_numpy(a.copy()).requires_grad_(True) for a in (w, b))
        z_t = F.batch_norm(x_t, torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy()), w_t,
                           b_t, training=training, eps=1e-3)  # fmt: skip
        dx_t, dw_t, db_t = torch.autograd.grad(z_t, (x_t, w_t, b_t), torch.from_numpy(delta))
        where = f"F.batch_norm training={training}"
        for check, got, want in (
            ("z", z, z_t),
            ("δ_prev", dx, dx_t),
            ("∂L/∂weight", grads["weight"], dw_t),
            ("∂L/∂bias", grads["bias"], db_t),
        ):
            assert_close(check, where, got, _np(want))  # fmt: skip


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda rv: BatchNorm1d(running_mean=np.zeros(3), running_var=rv), id="bn"),
        pytest.param(lambda rv: BatchNorm2d(C3, C3, np.zeros(3), rv), id="bn2d-affine"),
        pytest.param(
            lambda rv: InstanceNorm1d(
                running_mean=np.zeros(3), running_var=rv, use_input_stats=False
            ),  # fmt: skip
            id="instancenorm-eval",
        ),
    ],
)
@pytest.mark.parametrize(
    "running_var", [[1.0, -1.0, 1.0], [1.0, np.nan, 1.0], [-1e-8, 1.0, 1.0]], ids=str
)
def test_negative_running_var_is_refused_in_the_constructor(build, running_var: list) -> None:  # type: ignore[no-untyped-def]
    """Issue 13: a clear ValueError before any arithmetic, naming the entry."""
    rv = np.array(running_var)
    bad = int(np.flatnonzero(~(rv >= 0))[0])
    with pytest.raises(ValueError, match=rf"running_var must be ≥ 0 .* running_var\[{bad}\]"):
        build(rv)


def test_torch_returns_nan_for_a_negative_running_var() -> None:
    """Why: torch's eval-mode output is NaN on that channel."""
    m = torch.nn.BatchNorm1d(3).double().eval()
    with torch.no_grad():
        m.running_var[1] = -1.0
    z = m(torch.randn(4, 3, dtype=torch.float64))
    assert torch.isnan(z[:, 1]).all() and not torch.isnan(z[:, 0]).any()


def test_negative_running_var_is_fine_where_unused() -> None:
    """In training mode (batch statistics) the running variance is never read."""
    rv = np.array([1.0, -1.0, 1.0])
    BatchNorm1d(running_mean=np.zeros(3), running_var=rv, training=True).shape((4, 3))
    InstanceNorm1d(running_mean=np.zeros(3), running_var=rv, use_input_stats=True)


# fmt: off
MORE_ERROR_CASES = [
    ErrorCase("in1d_4d_input", lambda: InstanceNorm1d(), (2, 3, 4, 4),
              r"expected 2D \(unbatched\) or 3D input",
              lambda: torch.nn.InstanceNorm1d(3).double()(_t(2, 3, 4, 4))),
    ErrorCase("in2d_one_spatial_element", lambda: InstanceNorm2d(), (2, 3, 1, 1),
              "more than 1 spatial element",
              lambda: torch.nn.InstanceNorm2d(3).double()(_t(2, 3, 1, 1))),
    ErrorCase("in1d_affine_channels", lambda: InstanceNorm1d(C3, C3), (2, 4, 5),
              "expected 3 channels",
              lambda: torch.nn.InstanceNorm1d(3, affine=True).double()(_t(2, 4, 5))),
    ErrorCase("in_eval_without_running_stats", lambda: InstanceNorm1d(use_input_stats=False),
              None, "expected running_mean and running_var when use_input_stats=False"),
    ErrorCase("in_running_mean_alone", lambda: InstanceNorm2d(running_mean=C3), None,
              "running_var"),
    ErrorCase("gn_channels_not_divisible", lambda: GroupNorm(4), (2, 6, 3),
              "divisible by num_groups 4",
              lambda: torch.nn.functional.group_norm(_t(2, 6, 3), 4)),
    ErrorCase("gn_1d_input", lambda: GroupNorm(1), (4,), "at least 2 dims",
              lambda: torch.nn.functional.group_norm(_t(4), 1)),
    ErrorCase("gn_affine_channels", lambda: GroupNorm(2, np.ones(4), np.ones(4)), (2, 6, 3),
              "expected 4 channels",
              lambda: torch.nn.GroupNorm(2, 4).double()(_t(2, 6, 3))),
    ErrorCase("gn_num_channels_not_divisible", lambda: GroupNorm(4, np.ones(6)), None,
              "num_channels 6 must be divisible by num_groups 4",
              lambda: torch.nn.GroupNorm(4, 6)),
    ErrorCase("gn_zero_groups", lambda: GroupNorm(0), None, "num_groups ≥ 1"),
    ErrorCase("gn_one_value_in_all", lambda: GroupNorm(2), (1, 2), "more than 1 value per group",
              lambda: torch.nn.functional.group_norm(_t(1, 2), 2)),
    ErrorCase("gn_eps_zero", lambda: GroupNorm(2, eps=0.0), None, "eps > 0"),
]
# fmt: on


@pytest.mark.parametrize("case", MORE_ERROR_CASES, ids=lambda c: c.id)
def test_more_refusals(case: ErrorCase) -> None:
    test_refusals(case)
