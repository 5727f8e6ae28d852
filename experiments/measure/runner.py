"""Running many independent measurements: serially, on a process pool, or on a Dask cluster.

    run_tasks(fn, tasks, jobs=2)      [fn(task) for task in tasks], in the tasks' order

Every task runs with BLAS pinned to one thread (threadpoolctl): the processes are the
parallelism, and a matrix product's rounding does not depend on how many threads split it,
so the same command gives the same bytes on any executor. `progress` is tqdm's bar on a
terminal and a few plain lines otherwise (a log file gets "40/819 config (5%) 3.1 s" lines,
not one line of carriage returns).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any, TextIO, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: without a terminal, a progress line at most every this many seconds (and at the end).
LOG_INTERVAL_S = 15.0


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS (and OpenMP) on one thread inside the block."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def _pinned(fn: Callable[[T], R], task: T) -> R:
    with one_blas_thread():
        return fn(task)


class Progress:
    """A counter that shows itself: tqdm on a terminal, sparse lines elsewhere, or nothing."""

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str = "task",
        enabled: bool = True,
        stream: TextIO | None = None,
    ) -> None:
        self.total, self.desc, self.unit, self.done = total, desc, unit, 0
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self._bar = None
        self._start = self._last = time.monotonic()
        if enabled and self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if self.enabled and (now - self._last >= LOG_INTERVAL_S or self.done >= self.total):
            self._last = now
            share = self.done / self.total if self.total else 1.0
            self.stream.write(
                f"{self.desc}: {self.done}/{self.total} {self.unit} ({share:.0%}) "
                f"{now - self._start:.1f} s\n"
            )
            self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _executor(jobs: int, dask: str | None) -> tuple[Executor | None, Callable[[], None]]:
    if dask is not None:
        try:
            from distributed import Client
        except ImportError:
            raise ValueError("--dask needs dask.distributed: pip install -e '.[cluster]'") from None
        client = Client(dask)
        return client.get_executor(), client.close
    if jobs < 1:
        raise ValueError(f"jobs must be ≥ 1, got {jobs}")
    if jobs == 1:
        return None, lambda: None
    pool = ProcessPoolExecutor(max_workers=jobs)
    return pool, lambda: pool.shutdown(wait=True, cancel_futures=True)


def run_tasks(
    fn: Callable[[T], R],
    tasks: Sequence[T],
    *,
    jobs: int = 1,
    dask: str | None = None,
    sizes: Sequence[int] | None = None,
    desc: str = "tasks",
    unit: str = "task",
    show_progress: bool = True,
) -> list[R]:
    """[fn(t) for t in tasks] with BLAS on one thread, on `jobs` processes or a Dask cluster.

    `fn` must be a module-level function (it is pickled). `sizes[i]` is what task i adds to
    the progress count (default 1 each). Results come back in the tasks' order.
    """
    sizes = [1] * len(tasks) if sizes is None else list(sizes)
    executor, close = _executor(jobs, dask)
    bar = Progress(sum(sizes), desc, unit, enabled=show_progress)
    results: list[Any] = [None] * len(tasks)
    try:
        if executor is None:
            for i, task in enumerate(tasks):
                results[i] = _pinned(fn, task)
                bar.update(sizes[i])
        else:
            futures: dict[Future, int] = {
                executor.submit(_pinned, fn, task): i for i, task in enumerate(tasks)
            }
            for future in as_completed(futures):
                i = futures[future]
                results[i] = future.result()
                bar.update(sizes[i])
    finally:
        bar.close()
        close()
    return results
