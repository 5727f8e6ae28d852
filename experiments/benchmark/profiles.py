"""Where the time goes: the stages of one oracle call (torch_ref._bench.timed_stages), the
NumPy pass layer by layer, and autograd's own profile by aten op."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from experiments.benchmark.models import (
    Case,
)
from experiments.benchmark.timing import (
    WARMUP,
    _autograd_step,
    _timed,
    threads,
)
from torch_ref import _bench


def stage_profile(call: Callable[[], object], runs: int) -> dict[str, float]:
    """Median over runs of each stage of one oracle call: capture (the recorded run of the
    float64 twin and its loss, autograd's graph built with it), convert + checks (the rest
    of preparing the problem), the NumPy pass, the autograd reference
    (compare_gradients only), and the rest (the loss's checks, collecting and casting the
    gradients, the report), which is the whole call less the stages, never negative."""
    for _ in range(WARMUP):
        call()
    per_run: list[dict[str, float]] = []
    for _ in range(runs):
        with _bench.timed_stages() as ms:
            total, _ = _timed(call)
        per_run.append(
            {
                "total": total,
                "capture": ms.get("capture", 0.0),
                "convert_and_checks": ms.get("prepare", 0.0) - ms.get("capture", 0.0),
                "numpy_pass": ms.get("numpy_pass", 0.0),
                "autograd_reference": ms.get("autograd", 0.0),
                "rest": total
                - ms.get("prepare", 0.0)
                - ms.get("numpy_pass", 0.0)
                - ms.get("autograd", 0.0),
            }
        )
    return {k: statistics.median(r[k] for r in per_run) for k in per_run[0]}


def layer_profile(case: Case, runs: int) -> pd.DataFrame:
    """The NumPy pass layer by layer at one thread: each layer's forward and backward (or
    param_grads), median ms per pass, summed by layer type; and what the pass spends outside
    its layers: the activations and the δ recursion (the network's forward and backward less
    their layers), and the loss (the pass less both)."""
    model, loss_fn, x, t = case.problem()
    problem = _bench.prepare(model, loss_fn, x, t)
    net = problem.captured.network
    times: dict[tuple[str, str], list[float]] = {}
    originals = []
    for node in net.nodes:
        layer = node.layer
        for method in ("forward", "backward", "param_grads"):
            fn = getattr(layer, method)
            originals.append((layer, method))

            def timed(*args: Any, _fn: Any = fn, _key: Any = (node.name, method)) -> Any:
                start = time.perf_counter()
                out = _fn(*args)
                times.setdefault(_key, []).append(time.perf_counter() - start)
                return out

            setattr(layer, method, timed)
    whole: dict[str, list[float]] = {"forward": [], "backward": [], "pass": []}
    for part in ("forward", "backward"):
        fn = getattr(net, part)

        def timed_part(*args: Any, _fn: Any = fn, _part: str = part, **kwargs: Any) -> Any:
            start = time.perf_counter()
            out = _fn(*args, **kwargs)
            whole[_part].append(time.perf_counter() - start)
            return out

        setattr(net, part, timed_part)
    try:
        with threads(1):
            for _ in range(runs):
                start = time.perf_counter()
                with np.errstate(all="ignore"):
                    net.loss_and_gradients(problem.xs, problem.y, problem.loss, input_grad=False)
                whole["pass"].append(time.perf_counter() - start)
    finally:
        for layer, method in originals:
            delattr(layer, method)
        del net.forward, net.backward
    by_type: dict[str, dict[str, float]] = {}
    kinds = {node.name: type(node.layer).__name__ for node in net.nodes}
    for (name, method), ts in times.items():
        ms = 1e3 * statistics.median(ts) * len(ts) / runs
        entry = by_type.setdefault(kinds[name], {"forward": 0.0, "backward": 0.0})
        # backward calls param_grads itself for some layers: count param_grads alone only
        # where backward was not called (the first layer, whose input needs no gradient)
        if method == "forward":
            entry["forward"] += ms
        elif method == "backward" or (name, "backward") not in times:
            entry["backward"] += ms
    frame = pd.DataFrame(
        [
            {"layer": k, "forward_ms": v["forward"], "backward_ms": v["backward"]}
            for k, v in by_type.items()
        ]  # fmt: skip
    )
    median = {k: 1e3 * statistics.median(v) for k, v in whole.items()}
    outside = {
        "layer": "(activations, δ recursion)",
        "forward_ms": max(0.0, median["forward"] - frame["forward_ms"].sum()),
        "backward_ms": max(0.0, median["backward"] - frame["backward_ms"].sum()),
    }
    loss = {
        "layer": "(loss)",
        "forward_ms": max(0.0, median["pass"] - median["forward"] - median["backward"]),
        "backward_ms": 0.0,
    }
    frame = pd.concat([frame, pd.DataFrame([outside, loss])], ignore_index=True)
    frame["total_ms"] = frame["forward_ms"] + frame["backward_ms"]
    frame.insert(0, "case", case.name)
    return frame.sort_values("total_ms", ascending=False)


def torch_profiles(quick: bool, runs: int) -> pd.DataFrame:
    """`torch_profile` of every headline case, in a fresh process: there KINETO_LOG_LEVEL
    keeps the profiler's C++ side from printing its start and stop into our output."""
    env = dict(os.environ, KINETO_LOG_LEVEL="5")
    command = [sys.executable, "-m", "experiments.benchmark", "--profile-worker", str(runs)]
    out = subprocess.run(
        command + (["--quick"] if quick else []),
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
        env=env,
    )
    return pd.DataFrame(json.loads(out.stdout.strip().splitlines()[-1]))


def torch_profile(case: Case, runs: int) -> pd.DataFrame:
    """autograd's self CPU time per aten op at one thread, ms per step (torch.profiler)."""
    model, loss_fn, x, t = case.problem()
    with threads(1):
        for _ in range(WARMUP):
            _autograd_step(model, loss_fn, x, t)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(runs):
                _autograd_step(model, loss_fn, x, t)
    rows = [
        {"case": case.name, "op": e.key, "self_ms": e.self_cpu_time_total / 1e3 / runs}
        for e in prof.key_averages()
        if e.key.startswith("aten::")
    ]
    frame = pd.DataFrame(rows).sort_values("self_ms", ascending=False)
    return frame[frame["self_ms"] > 0]
