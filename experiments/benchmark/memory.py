"""Peak memory of manual_gradients over loss.backward()'s, each side alone in a fresh process."""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

import torch_ref
from experiments.benchmark.models import (
    Case,
    cnn,
    images,
)
from experiments.benchmark.timing import (
    _autograd_step,
    row,
)


def _status_kb(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field_name} not in /proc/self/status")


def memory_case(quick: bool) -> Case:
    if quick:
        return Case("cnn-b32-3x32x32", lambda: cnn(32), images(32, 32))  # a few MB: measurable
    return Case("cnn-b256-3x64x64", lambda: cnn(64), images(256, 64))


def _peak_worker(side: str, quick: bool) -> None:
    """In this fresh process: one side of the memory case, its peak resident-set growth.

    A first call warms up (lazy imports, caches); then the kernel's high-water mark is reset
    to the current RSS (/proc/self/clear_refs, 5) and the second call's peak is read."""
    model, loss_fn, x, t = memory_case(quick).problem()

    def once() -> None:
        if side == "manual":
            torch_ref.manual_gradients(model, loss_fn, x, t)
        else:
            _autograd_step(model, loss_fn, x, t)
            model.zero_grad(set_to_none=True)

    once()
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kb("VmRSS")
    once()
    print(json.dumps({"peak_mb": (_status_kb("VmHWM") - before) / 1024.0}))


def peak_mb(side: str, quick: bool) -> float:
    """Peak memory of one side, in a fresh process whose malloc returns freed memory to the
    system at once (so that the measured call grows the resident set again)."""
    env = dict(os.environ, MALLOC_TRIM_THRESHOLD_="0", MALLOC_MMAP_THRESHOLD_="65536")
    command = [sys.executable, "-m", "experiments.benchmark", "--peak-worker", side]
    out = subprocess.run(
        command + (["--quick"] if quick else []),
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
        env=env,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"])


def memory(runs: int, quick: bool) -> dict[str, Any]:
    """Peak memory of manual_gradients over loss.backward()'s, `runs` fresh processes each."""
    manual, autograd = [], []
    for _ in range(runs):
        manual.append(peak_mb("manual", quick))
        autograd.append(peak_mb("autograd", quick))
    ratios = np.asarray(manual) / np.asarray(autograd)
    return row(
        "memory",
        memory_case(quick).name,
        f"{torch.get_num_threads()} threads",
        "manual_gradients",
        "loss.backward()",
        a_mb=statistics.median(manual),
        b_mb=statistics.median(autograd),
        ratio=float(np.median(ratios)),
        ratio_min=float(ratios.min()),
        ratio_max=float(ratios.max()),
        pairs=runs,
    )
