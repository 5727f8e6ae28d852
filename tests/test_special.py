"""manual_bp.ops.special against the standard library (math.erf, math.erfc) and, for Φ's tails,
mpmath: dense grids, every range boundary ± 1 ulp, tiny and huge arguments, ±0, ±inf, NaN,
the symmetries, blocks larger than one block, and a hypothesis property over all floats."""

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manual_bp.ops import special
from manual_bp.ops.special import erf, erfc, normal_cdf

EPS = np.finfo(float).eps
TINY = 5e-324  # the smallest subnormal
ERF_ABS = 2e-15
ERFC_REL = 4e-15  # measured ≤ 8e-16; the brief allows 1e-13 up to x = 3, 1e-14 beyond


def nudged(points: list[float]) -> np.ndarray:
    """Each point, its neighbours one ulp either side, and the negatives of all of them."""
    p = np.asarray(points, dtype=float)
    both = np.concatenate([p, np.nextafter(p, -np.inf), np.nextafter(p, np.inf)])
    return np.concatenate([both, -both])


BOUNDARIES = nudged(
    [special._SMALL, special._TABLE_END, special._CLIP]
    + [special._SMALL + k * special._STEP for k in range(1, 44)]  # table intervals
    + [2.5, 3.0, 26.5, 27.0, 27.2, 27.3]
)
TINY_ARGS = nudged([TINY, 1e-310, 2.2250738585072014e-308, 1e-300, 1e-200, 1e-16, 1e-8, 1e-4])
GRID = np.concatenate(
    [
        np.linspace(-10.0, 10.0, 40001),
        np.linspace(-28.0, 28.0, 5601),
        np.linspace(0.45, 0.55, 1001),
        np.linspace(5.9, 6.1, 1001),
        BOUNDARIES,
        TINY_ARGS,
    ]
)


def math_erf(x: np.ndarray) -> np.ndarray:
    return np.array([math.erf(v) for v in x.tolist()])


def math_erfc(x: np.ndarray) -> np.ndarray:
    return np.array([math.erfc(v) for v in x.tolist()])


def assert_erf(x: np.ndarray) -> None:
    got, want = erf(x), math_erf(x)
    err = np.abs(got - want)
    i = int(np.argmax(err))
    assert err[i] <= ERF_ABS, f"erf({x[i]!r}) = {got[i]!r}, math.erf {want[i]!r}"


def assert_erfc(x: np.ndarray) -> None:
    """Relative error ≤ ERFC_REL; where erfc is subnormal only an absolute 4 subnormal ulps."""
    got, want = erfc(x), math_erfc(x)
    err = np.abs(got - want)
    bound = ERFC_REL * want + 4 * TINY
    i = int(np.argmax(err / bound))
    assert err[i] <= bound[i], f"erfc({x[i]!r}) = {got[i]!r}, math.erfc {want[i]!r}"


def test_erf_absolute_error_on_the_grid():
    assert_erf(GRID)


def test_erfc_relative_error_on_the_grid():
    assert_erfc(GRID)


def test_erfc_relative_error_beats_the_brief_below_three():
    x = np.linspace(-3.0, 3.0, 60001)
    rel = np.abs(erfc(x) / math_erfc(x) - 1)
    assert rel.max() <= 1e-15


def test_tiny_arguments_keep_their_relative_accuracy():
    x = TINY_ARGS[TINY_ARGS > 1e-307]  # erf(x) = 2x/√π: subnormal below that
    assert np.all(np.abs(erf(x) / math_erf(x) - 1) <= 2 * EPS)
    assert erf(np.array([TINY]))[0] == math.erf(TINY)


def test_signed_zero_and_infinities():
    x = np.array([0.0, -0.0, np.inf, -np.inf])
    e = erf(x)
    assert e.tolist() == [0.0, 0.0, 1.0, -1.0]
    assert np.signbit(e).tolist() == [False, True, False, True]
    assert erfc(x).tolist() == [1.0, 1.0, 0.0, 2.0]
    assert normal_cdf(x).tolist() == [0.5, 0.5, 1.0, 0.0]


def test_nan_propagates():
    x = np.array([np.nan, 0.1, -np.nan, 3.0, np.nan, 30.0])
    for f in (erf, erfc, normal_cdf):
        y = f(x)
        assert np.isnan(y).tolist() == [True, False, True, False, True, False], f.__name__


def test_huge_arguments_saturate_without_warnings():
    x = np.array([27.3, 28.0, 30.0, 1e10, 1e300, np.finfo(float).max])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert erfc(x).tolist() == [0.0] * 6
        assert erfc(-x).tolist() == [2.0] * 6
        assert erf(x).tolist() == [1.0] * 6
        assert erf(-x).tolist() == [-1.0] * 6
        z = np.array([39.0, 40.0, 1e10, 1e300, np.finfo(float).max])
        assert normal_cdf(-z).tolist() == [0.0] * 5
        assert normal_cdf(z).tolist() == [1.0] * 5


def test_erfc_underflows_where_math_does():
    x = np.linspace(26.0, 27.5, 3001)  # erfc goes subnormal near 26.55 and 0 near 27.3
    assert_erfc(x)
    assert erfc(np.array([27.3]))[0] == math.erfc(27.3) == 0.0


def test_symmetries():
    x = GRID
    assert np.array_equal(erf(-x), -erf(x))  # exactly odd
    assert np.max(np.abs(erfc(x) + erfc(-x) - 2.0)) <= 2 * EPS
    assert np.max(np.abs(erf(x) + erfc(x) - 1.0)) <= 2 * EPS
    assert np.max(np.abs(normal_cdf(x) + normal_cdf(-x) - 1.0)) <= 2 * EPS


def test_normal_cdf_against_math_in_the_middle():
    z = np.linspace(-8.0, 8.0, 16001)
    want = np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in z.tolist()])
    # the reference rounds z/√2, which costs it a relative ~z²·ε; ours forms e^{-z²/2} from z
    assert np.all(np.abs(normal_cdf(z) - want) <= (4e-15 + z * z * EPS) * want)


def test_normal_cdf_tails_against_mpmath():
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 40
    # down to Φ(−37.5) ≈ 5·10⁻³⁰⁸, the last normal numbers
    z = np.concatenate([np.linspace(-37.5, -0.5, 1501), np.linspace(0.5, 9.0, 301)])
    want = np.array([float(mp.ncdf(mp.mpf(v))) for v in z.tolist()])
    rel = np.abs(normal_cdf(z) / want - 1)
    assert rel.max() <= 2e-15, f"z = {z[int(np.argmax(rel))]}: relative error {rel.max():.2e}"


def test_shapes_scalars_dtypes_and_views():
    x = np.linspace(-4.0, 4.0, 120).reshape(4, 5, 6)
    for f in (erf, erfc, normal_cdf):
        assert f(x).shape == (4, 5, 6)
        assert np.array_equal(f(x[:, ::2, 1:]), f(np.ascontiguousarray(x[:, ::2, 1:])))
        assert f(0.7).shape == () and float(f(0.7)) == float(f(np.array([0.7]))[0])
        assert f(np.float32(1.5)).dtype == np.float64
        assert f([1, 2]).dtype == np.float64
        assert f(np.array([])).shape == (0,)


def test_results_do_not_depend_on_the_block():
    rng = np.random.default_rng(7)
    x = rng.standard_normal(3 * special._BLOCK + 17) * 4.0
    for f in (erf, erfc, normal_cdf):
        whole = f(x)
        pieces = np.concatenate([f(x[k : k + 1000]) for k in range(0, x.size, 1000)])
        assert np.array_equal(whole, pieces), f.__name__


def test_the_fitted_table_is_finite_and_decaying():
    table = special._ERFCX_TABLE
    assert table.shape == (special._DEGREE + 1, round((6.0 - 0.5) / special._STEP))
    assert np.all(np.isfinite(table))
    assert np.all(np.abs(table[-1]) < 1e-9)  # the last coefficient barely matters


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=True), min_size=1, max_size=50))
def test_property_against_the_standard_library(values):
    x = np.array(values, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_erf(x)
        assert_erfc(x)
        p = normal_cdf(x)
    assert np.all((p >= 0) & (p <= 1))
    assert np.array_equal(erf(-x), -erf(x))
