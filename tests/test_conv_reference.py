"""The convolution's fast kernels against its textbook formulas, on random shapes.

manual_bp.ops.conv writes the three formulas literally (`conv_reference`,
`weight_grad_reference`, `input_grad_reference`: a loop over the kernel offsets) above the
kernels that replace them (im2col blocks, the batch folded into the GEMM, the stride's phase
decomposition, the thread split). Here both run on random problems: 1-d to 3-d, any stride,
dilation and group count, padded inputs of any size, and the kernels' memory budget and
per-sample threshold drawn small too, so that every path of the plan is taken.
"""

import numpy as np
import pytest
from _tolerances import TOLERANCES
from hypothesis import given
from hypothesis import strategies as st

from manual_bp.ops import conv

TOL = TOLERANCES["reordered"]  # the same sums as the formula, in another order


@st.composite
def problems(draw: st.DrawFn) -> dict:
    n = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(n))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(n))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(n))
    reach = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True)]
    size = tuple(r + draw(st.integers(0, 6 if n < 3 else 3)) for r in reach)
    return {
        "shape": (draw(st.integers(1, 3)), c_in, *size),
        "weight": (c_out, c_in // groups, *kernel),
        "stride": stride,
        "dilation": dilation,
        "groups": groups,
        "seed": draw(st.integers(0, 2**16)),
        # the kernels' plan: bytes of columns at once, pixels from which a sample is its own GEMM
        "column_bytes": draw(st.sampled_from([8, 256, 4096, conv.COLUMN_BYTES])),
        "per_sample_pixels": draw(st.sampled_from([1, 4, conv.PER_SAMPLE_PIXELS])),
    }


def _close(name: str, got: np.ndarray, want: np.ndarray, problem: dict) -> None:
    assert got.shape == want.shape, f"{name}: shape {got.shape}, reference {want.shape}"
    err = np.abs(got - want)
    i = np.unravel_index(int(np.argmax(err)), err.shape) if err.size else ()
    assert np.allclose(got, want, **TOL), (
        f"{name} differs from its formula at {i}: fast {got[i]!r}, reference {want[i]!r} "
        f"({problem})"
    )


@given(problems())
def test_the_fast_kernels_compute_the_textbook_formulas(problem: dict) -> None:
    rng = np.random.default_rng(problem["seed"])
    x_pad, W = rng.normal(size=problem["shape"]), rng.normal(size=problem["weight"])
    s, d, g = problem["stride"], problem["dilation"], problem["groups"]
    with conv.tuned(
        column_bytes=problem["column_bytes"], per_sample_pixels=problem["per_sample_pixels"]
    ):
        z = conv.correlate(x_pad, W, s, d, g)
        _close("z", z, conv.conv_reference(x_pad, W, s, d, g), problem)
        delta = rng.normal(size=z.shape)
        kernel = W.shape[2:]
        _close(
            "∂L/∂W",
            conv.correlate_weight_grad(x_pad, delta, kernel, s, d, g),
            conv.weight_grad_reference(x_pad, delta, kernel, s, d, g),
            problem,
        )
        full = conv.input_grad_reference(delta, W, s, d, g, x_pad.shape)
        _close("δ_prev", conv.full_conv_rot180(delta, W, s, d, g, x_pad.shape), full, problem)
        # the zero padding's cells left out: the same formula, cropped
        crop = tuple((min(1, L // 3), min(1, L // 4)) for L in x_pad.shape[2:])
        inner = full[
            (..., *(slice(lo, L - hi) for (lo, hi), L in zip(crop, x_pad.shape[2:], strict=True)))
        ]
        got = conv.full_conv_rot180(delta, W, s, d, g, x_pad.shape, crop=crop)
        _close("δ_prev (cropped)", got, inner, problem)


def test_the_reference_is_the_transpose_of_the_forward() -> None:
    """The formulas themselves: ⟨W ⋆ x, δ⟩ = ⟨x, δ_prev⟩ = ⟨W, ∂L/∂W⟩ (all three are the same
    trilinear sum), on one problem with stride, dilation and groups."""
    rng = np.random.default_rng(0)
    x_pad, W = rng.normal(size=(2, 4, 9, 10)), rng.normal(size=(6, 2, 3, 2))
    s, d, g = (2, 3), (2, 1), 2
    z = conv.conv_reference(x_pad, W, s, d, g)
    delta = rng.normal(size=z.shape)
    dx = conv.input_grad_reference(delta, W, s, d, g, x_pad.shape)
    dW = conv.weight_grad_reference(x_pad, delta, W.shape[2:], s, d, g)
    assert np.isclose(np.vdot(z, delta), np.vdot(x_pad, dx), **TOL)
    assert np.isclose(np.vdot(z, delta), np.vdot(W, dW), **TOL)


def test_a_wrong_fast_kernel_is_caught() -> None:
    """The check can fail: the rotation forgotten (the kernel used as it is) is a difference."""
    rng = np.random.default_rng(1)
    x_pad, W = rng.normal(size=(1, 2, 7)), rng.normal(size=(2, 2, 3))
    delta = rng.normal(size=conv.conv_reference(x_pad, W, (1,), (1,), 1).shape)
    want = conv.input_grad_reference(delta, W, (1,), (1,), 1, x_pad.shape)
    unrotated = conv.input_grad_reference(delta, np.flip(W, 2), (1,), (1,), 1, x_pad.shape)
    assert not np.allclose(unrotated, want, **TOL)


def test_tuned_changes_the_rules_for_its_block_only() -> None:
    """The kernels' rules change inside `tuned` and come back after it, also on an error; an
    unknown rule is a TypeError naming the known ones."""
    before = conv.kernels.TUNING
    with conv.tuned(column_bytes=8) as rules:
        assert conv.kernels.TUNING is rules and rules.column_bytes == 8
        assert rules.per_sample_pixels == before.per_sample_pixels
    assert conv.kernels.TUNING is before
    with pytest.raises(RuntimeError), conv.tuned(split_macs=0):
        raise RuntimeError
    assert conv.kernels.TUNING is before
    with pytest.raises(TypeError, match="column_bytes"), conv.tuned(column_byte=8):
        pass
