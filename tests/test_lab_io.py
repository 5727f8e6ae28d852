"""The lab's shared file writer (experiments.report.io) and task runner
(experiments.measure.runner):
whole files or none, the same bytes every time, progress as sparse lines off a terminal,
results in order whatever the executor."""

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from experiments.measure import runner
from experiments.report.common import command_line, crossing, markdown_table, signed
from experiments.report.io import atomic_write, csv_text, write_csv, write_png


def test_atomic_write_text_and_bytes(tmp_path):
    path = atomic_write(tmp_path / "sub" / "a.txt", "δ = ∂L/∂z\n")
    assert path.read_text(encoding="utf-8") == "δ = ∂L/∂z\n"
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    atomic_write(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert [p.name for p in path.parent.iterdir()] == ["a.txt"], "temporary file left"


def test_atomic_write_refuses_other_types(tmp_path):
    with pytest.raises(TypeError, match="str or bytes"):
        atomic_write(tmp_path / "x", 3.0)
    assert not (tmp_path / "x").exists()


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = atomic_write(tmp_path / "keep.csv", "old\n")

    def boom(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.csv"]


def test_csv_has_fixed_floats_nan_and_unix_line_ends(tmp_path):
    frame = pd.DataFrame({"a": [1.0 / 3.0, np.nan, np.inf], "b": ["x", "y", "z"], "n": [1, 2, 3]})
    text = csv_text(frame, "%.4g")
    assert text == "a,b,n\n0.3333,x,1\nnan,y,2\ninf,z,3\n", text
    path = write_csv(tmp_path / "f.csv", frame, "%.4g")
    assert path.read_bytes() == text.encode()


def _figure() -> Figure:
    fig = Figure(figsize=(3, 2))
    ax = fig.subplots()
    ax.plot([0, 1, 2], [1, 0, 1], label="δ")
    ax.legend()
    return fig


def test_png_is_the_same_bytes_every_time(tmp_path):
    a = write_png(tmp_path / "a.png", _figure()).read_bytes()
    b = write_png(tmp_path / "b.png", _figure()).read_bytes()
    assert a == b and a.startswith(b"\x89PNG")
    assert b"Software" not in a and b"matplotlib" not in a.lower()


# --- progress and the runner ------------------------------------------------------------------


class NotATerminal(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_progress_off_a_terminal_writes_sparse_whole_lines(monkeypatch):
    stream = NotATerminal()
    clock = iter(float(t) for t in range(0, 10_000, 5))  # five seconds per update
    monkeypatch.setattr(runner.time, "monotonic", lambda: next(clock))
    bar = runner.Progress(100, "sweep", "config", stream=stream)
    for _ in range(100):
        bar.update()
    bar.close()
    text = stream.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert 5 <= len(lines) <= 40, lines  # every 15 s of 500 s, and the last
    assert lines[-1].startswith("sweep: 100/100 config (100%)"), lines[-1]


def test_progress_disabled_writes_nothing():
    stream = NotATerminal()
    bar = runner.Progress(3, "x", enabled=False, stream=stream)
    for _ in range(3):
        bar.update()
    bar.close()
    assert stream.getvalue() == ""


def _square(x: int) -> int:
    return x * x


def _fail(x: int) -> int:
    raise ValueError(f"task {x} refused")


@pytest.mark.parametrize("jobs", [1, 2])
def test_run_tasks_keeps_the_tasks_order(jobs):
    assert runner.run_tasks(_square, list(range(7)), jobs=jobs, show_progress=False) == [
        x * x for x in range(7)
    ]


@pytest.mark.parametrize("jobs", [1, 2])
def test_run_tasks_passes_a_tasks_error_on(jobs):
    with pytest.raises(ValueError, match="task 0 refused"):
        runner.run_tasks(_fail, [0], jobs=jobs, show_progress=False)


def test_run_tasks_refuses_zero_jobs():
    with pytest.raises(ValueError, match="jobs must be ≥ 1"):
        runner.run_tasks(_square, [1], jobs=0, show_progress=False)


def test_tasks_run_with_one_blas_thread():
    from threadpoolctl import threadpool_info

    def inside(_):
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    counts = runner._pinned(inside, None)
    assert counts and set(counts) == {1}, counts


# --- small report helpers -------------------------------------------------------------------


def test_command_line_leaves_out_where_and_how_fast():
    argv = ["--out", "/tmp/x", "--depths", "4", "--jobs=2", "--no-progress", "--dask", "h:1"]
    assert command_line("experiments.gradient_flow", argv) == (
        "python -m experiments.gradient_flow --depths 4"
    )


def test_markdown_table_signed_and_crossing():
    assert markdown_table(["a", "b"], [(1, 2)], "lr") == "| a | b |\n| --- | ---: |\n| 1 | 2 |"
    assert signed(-1.234) == "−1.23" and signed(0.5, 1) == "+0.5"
    assert crossing([1.0, 2.0, 3.0], [-1.0, -0.5, 0.5]) == pytest.approx(2.5)
    assert crossing([1.0, 2.0], [1.0, 2.0]) is None


def test_every_lab_module_imports_without_torch():
    import pkgutil
    import subprocess
    import sys

    import experiments.measure
    import experiments.report
    import experiments.theory

    modules = [m.name for pkg in (experiments.theory, experiments.measure, experiments.report)
               for m in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + ".")]  # fmt: skip
    assert len(modules) >= 15, modules
    code = (
        f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
        "print(any(m == 'torch' or m.startswith('torch.') for m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=True,
    )
    assert out.stdout.strip() == "False"
