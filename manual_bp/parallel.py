"""Several cores for the NumPy pass, without a thread pool that spins.

OpenBLAS's own threads busy-wait for ~0.1 s after every threaded call; in a process that
also runs torch, whose OpenMP threads want the same cores, the two pools fight, and a pass
of many small products waits on a thread the machine does not give it. So the pass may run
BLAS at one thread per call and split its large products over a few Python threads here
instead: NumPy releases the GIL inside BLAS calls and large copies, and these threads sleep
on a queue when idle.

    with parallel.threads(2):            # (torch_ref's oracle sets the caller's BLAS count)
        parallel.map_parts(work, n)      # work(slice) on each part of range(n), in two threads

With one thread (the default) `map_parts` calls work on its parts one after the other.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

_setting = threading.local()  # per calling thread: two callers do not share a setting
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def workers() -> int:
    """How many threads `map_parts` splits work over in this thread (1: none)."""
    return getattr(_setting, "workers", 1)


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Split work over n threads (the calling one and n − 1 pool threads) for the duration."""
    global _pool
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads(n) takes an int ≥ 1, got {n!r}")
    with _pool_lock:
        if n > 1 and (_pool is None or _pool._max_workers < n - 1):
            _pool = ThreadPoolExecutor(max_workers=n - 1, thread_name_prefix="manual_bp")
    before = workers()
    _setting.workers = n
    try:
        yield
    finally:
        _setting.workers = before


def map_parts(
    work: Callable[[slice], T], n: int, *, parts: int | None = None, worth_splitting: bool = True
) -> list[T]:
    """[work(part) for part in contiguous parts of range(n)], in order: `parts` of them (by
    default one per thread, or one when not worth splitting). The calling thread and the
    pool's threads each take the next part left until none is; all on the calling thread
    when there is one thread, or when the caller says the work is too small to be worth a
    hand-off (~50 µs)."""
    k = max(1, min(n, parts or (workers() if worth_splitting else 1)))
    bounds = [n * i // k for i in range(k + 1)]
    slices = [slice(a, b) for a, b in zip(bounds, bounds[1:], strict=False)]
    helpers = min(workers(), k) - 1 if worth_splitting else 0
    if helpers < 1 or _pool is None:
        return [work(part) for part in slices]
    results: list[T | None] = [None] * k
    order = itertools.count()  # (next() on it is atomic under the GIL)

    def drain() -> None:
        while (i := next(order)) < k:
            results[i] = work(slices[i])

    futures = [_pool.submit(drain) for _ in range(helpers)]
    drain()
    for f in futures:
        f.result()  # (re-raises an error of that thread's parts)
    return results  # type: ignore[return-value]
