"""manual_bp.parallel: work split over threads comes back whole, in order, and the same."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from manual_bp import parallel
from manual_bp.ops import conv


def test_one_thread_is_one_call_on_the_whole_range():
    assert parallel.workers() == 1
    assert parallel.map_parts(lambda s: (s.start, s.stop), 7) == [(0, 7)]


@pytest.mark.parametrize("n_threads, n, parts", [(2, 7, [(0, 3), (3, 7)]), (3, 2, [(0, 1), (1, 2)]),
                                                 (2, 1, [(0, 1)]), (2, 0, [(0, 0)])])  # fmt: skip
def test_parts_cover_the_range_in_order(n_threads: int, n: int, parts: list) -> None:
    with parallel.threads(n_threads):
        assert parallel.map_parts(lambda s: (s.start, s.stop), n) == parts
    assert parallel.workers() == 1


def test_small_work_is_not_split_and_parts_run_at_once_on_two_threads():
    meet = threading.Barrier(2, timeout=10)  # both parts must be running at the same time
    names: list[str] = []

    def work(s: slice) -> int:
        names.append(threading.current_thread().name)
        if s.stop - s.start < 10:
            meet.wait()
        return s.stop - s.start

    with parallel.threads(2):
        assert parallel.map_parts(work, 10, worth_splitting=False) == [10]
        assert parallel.map_parts(work, 10) == [5, 5]
    assert len(set(names[1:])) == 2


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_more_parts_than_threads_are_all_taken_in_order(n_threads: int) -> None:
    with parallel.threads(n_threads):
        got = parallel.map_parts(lambda s: (s.start, s.stop), 10, parts=4)
        assert got == [(0, 2), (2, 5), (5, 7), (7, 10)]
        unsplit = parallel.map_parts(
            lambda s: (s.start, s.stop), 10, parts=4, worth_splitting=False
        )
        assert unsplit == got  # (the same parts, all on the calling thread)


def test_an_error_in_a_part_reaches_the_caller():
    def work(s: slice) -> int:
        if s.start > 0:
            raise ValueError("planted failure in the second part")
        return 0

    with parallel.threads(2), pytest.raises(ValueError, match="second part"):
        parallel.map_parts(work, 4)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2"])
def test_threads_refuses_a_bad_count(bad: object) -> None:
    with pytest.raises(ValueError, match="int ≥ 1"):
        with parallel.threads(bad):  # type: ignore[arg-type]
            pass


@pytest.mark.parametrize("per_sample_pixels", [1, 10**9])
def test_split_convolutions_equal_the_whole(per_sample_pixels: int) -> None:
    """The batch in parts over threads gives the very same numbers as in one piece."""
    with conv.tuned(split_macs=0, per_sample_pixels=per_sample_pixels):
        _split_convolutions_equal_the_whole()


def _split_convolutions_equal_the_whole() -> None:
    rng = np.random.default_rng(0)
    x, W = rng.standard_normal((5, 4, 9, 8)), rng.standard_normal((6, 2, 3, 2))
    z = conv.correlate(x, W, (2, 1), (1, 2), 2)
    delta = rng.standard_normal(z.shape)
    dW = conv.correlate_weight_grad(x, delta, (3, 2), (2, 1), (1, 2), 2)
    dx = conv.full_conv_rot180(delta, W, (2, 1), (1, 2), 2, x.shape)
    with parallel.threads(3):
        assert np.array_equal(conv.correlate(x, W, (2, 1), (1, 2), 2), z)
        split_dW = conv.correlate_weight_grad(x, delta, (3, 2), (2, 1), (1, 2), 2)
        np.testing.assert_allclose(split_dW, dW, rtol=1e-13, atol=1e-13)  # (sums reordered)
        assert np.array_equal(conv.full_conv_rot180(delta, W, (2, 1), (1, 2), 2, x.shape), dx)
