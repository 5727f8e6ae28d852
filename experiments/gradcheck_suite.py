"""A real project's own gradcheck tests, run with torch's gradcheck and torch_ref.gradcheck side
by side: every call's two verdicts, the refusals and the times.

    python -m experiments.gradcheck_suite /tmp/kornia-src [-k gradcheck] [--jobs 1]
    python -m experiments.gradcheck_suite --render       # the report again from the records

The project's tests (kornia's: `git archive <tag> tests testing conftest.py pyproject.toml`
of github.com/kornia/kornia at the installed version) run under pytest in a subprocess, on
the CPU, with `--dtype float64`, with this module as a pytest plugin (`-p
experiments.gradcheck_suite`). The plugin replaces torch's gradcheck wherever the tests can
reach it (`torch.autograd.gradcheck` and every imported module's global `gradcheck` bound to
it, such as kornia's `testing.base`) by a wrapper that, for every call:

1. copies the inputs (tensors detached and cloned, `requires_grad` kept);
2. runs torch's gradcheck on the test's own inputs, as the test asked (its verdict and its
   exception are what the test sees: the test runs as it would without the plugin);
3. runs torch_ref.gradcheck on the copies with the same arguments, the random state reset to
   what torch's call started from (a function that draws random numbers draws the same);
4. appends one JSON line: the test, the call's index in it, the function, fast_mode, both
   verdicts and both wall times.

Every test starts from the random seed 0 (kornia's tests draw their inputs unseeded), so a
rerun sees the same inputs. Verdicts: torch's `pass`, `fail` (GradcheckError, or False with
raise_exception=False) or `error <Type>`; ours `pass`, `fail`, `refused`
(UnsupportedModuleError, ValueError or TypeError: the reason is kept) or `foreign <Type>`
(any other exception: a bug of ours). The report (docs/gradcheck_suite.md) tabulates the
verdict pairs, lists the refusals by reason and every disagreement, and gives the median
speed-up over the calls both passed; docs/gradcheck_suite.csv has one row per call
(deterministic), docs/gradcheck_suite_times.csv its wall times (which are not).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RECORDS = Path(tempfile.gettempdir()) / "gradcheck_suite.jsonl"  # one line per call (the plugin)
DOC = ROOT / "docs" / "gradcheck_suite.md"
TABLE = ROOT / "docs" / "gradcheck_suite.csv"
TIMES = ROOT / "docs" / "gradcheck_suite_times.csv"
_ENV = "TORCH_REF_GRADCHECK_SUITE"  # the records' path, set for the pytest subprocess
_SHOW = "TORCH_REF_GRADCHECK_SUITE_SHOW"  # set: our whole failure or refusal, on stderr
_torch_module = sys.modules["torch.autograd.gradcheck"]
_TORCH_GRADCHECK = _torch_module.gradcheck


# --- the pytest plugin: both gradchecks on every call --------------------------------------

_current = {"test": "", "calls": 0}


def _copy(inputs: Any) -> Any:
    """The inputs with every tensor detached and cloned (requires_grad kept)."""
    if isinstance(inputs, torch.Tensor):
        return inputs.detach().clone().requires_grad_(inputs.requires_grad)
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(_copy(x) for x in inputs)
    if isinstance(inputs, dict):
        return {k: _copy(v) for k, v in inputs.items()}
    return inputs


def _first_line(err: BaseException, lines: int = 1) -> str:
    """The message's first lines, without addresses and the site-packages prefix of paths."""
    kept = [line.strip() for line in str(err).splitlines() if line.strip()][:lines]
    text = re.sub(r"0x[0-9a-fA-F]+", "0x…", " ".join(kept))
    return re.sub(r"File \"[^\"]*?(site-packages|kornia-src)/", 'File "', text)[:400]


def _torch_verdict(func: Any, inputs: Any, kwargs: dict) -> tuple[str, Any, BaseException | None]:
    try:
        result = _TORCH_GRADCHECK(func, inputs, **kwargs)
    except _torch_module.GradcheckError as err:
        return "fail", None, err
    except Exception as err:  # noqa: BLE001 (the test sees it, as without the plugin)
        return f"error {type(err).__name__}", None, err
    return ("pass" if result else "fail"), result, None


def _our_verdict(func: Any, inputs: Any, kwargs: dict) -> tuple[str, str]:
    import torch_ref

    kwargs = {**kwargs, "raise_exception": True}
    try:
        result = torch_ref.gradcheck(func, inputs, **kwargs)
    except Exception as err:  # noqa: BLE001
        if os.environ.get(_SHOW):  # (pytest -s: our whole message, to look into one test)
            print(f"\n{type(err).__name__}: {err}", file=sys.stderr)
        return _verdict_of(err)
    return ("pass" if result else "fail"), ""


def _verdict_of(err: Exception) -> tuple[str, str]:
    """fail (the worst block's line), refused (the reason) or foreign (a bug of ours)."""
    import torch_ref

    if isinstance(err, _torch_module.GradcheckError):
        lines = [line for line in str(err).splitlines() if line.strip()]
        return "fail", _first_line(Exception(lines[1] if len(lines) > 1 else str(err)))
    if isinstance(err, (torch_ref.UnsupportedModuleError, ValueError, TypeError)):
        return "refused", f"{type(err).__name__}: {_first_line(err)}"
    return f"foreign {type(err).__name__}", _first_line(err)


def _name(func: Any) -> str:
    from torch_ref.gradchecks.common import name_of

    return re.sub(r"0x[0-9a-fA-F]+", "0x…", name_of(func))


def both_gradchecks(func: Callable[..., Any], inputs: Any, **kwargs: Any) -> Any:
    """torch's gradcheck (returned or raised, as the test expects) and ours on copies."""
    ours_inputs = _copy(inputs)
    state = torch.get_rng_state()
    t0 = time.perf_counter()
    theirs, result, err = _torch_verdict(func, inputs, kwargs)
    t1 = time.perf_counter()
    after = torch.get_rng_state()
    torch.set_rng_state(state)
    ours, reason = _our_verdict(func, ours_inputs, kwargs)
    t2 = time.perf_counter()
    torch.set_rng_state(after)
    _current["calls"] += 1
    row = {
        "test": _current["test"], "call": _current["calls"], "func": _name(func),
        "fast_mode": bool(kwargs.get("fast_mode", False)), "torch": theirs, "ours": ours,
        "reason": reason, "torch_s": t1 - t0, "ours_s": t2 - t1,
        "torch_error": _first_line(err) if err is not None and theirs != "fail" else "",
    }  # fmt: skip
    with open(os.environ[_ENV], "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    if err is not None:
        raise err
    return result


def _install() -> None:
    """both_gradchecks wherever torch's gradcheck is reachable by name from the tests."""
    torch.autograd.gradcheck = both_gradchecks  # (the function torch.autograd re-exports)
    for module in list(sys.modules.values()):
        space = getattr(module, "__dict__", None)
        if module is _torch_module or not isinstance(space, dict):
            continue
        if space.get("gradcheck") is _TORCH_GRADCHECK:
            space["gradcheck"] = both_gradchecks


def pytest_collection_finish(session: Any) -> None:
    if os.environ.get(_ENV):
        _install()


def pytest_runtest_setup(item: Any) -> None:
    _current.update(test=item.nodeid, calls=0)
    if os.environ.get(_ENV):  # (kornia's tests draw unseeded inputs: the same on every run)
        torch.manual_seed(0)
        np.random.seed(0)
        random.seed(0)


def pytest_runtest_teardown(item: Any) -> None:
    if os.environ.get(_ENV) and _current["calls"] == 0:  # (a test that made no call: skipped)
        with open(os.environ[_ENV], "a", encoding="utf-8") as f:
            f.write(json.dumps({"test": item.nodeid, "call": 0}) + "\n")


# --- the run and the report -----------------------------------------------------------------


def run(source: Path, keyword: str, jobs: int, extra: list[str]) -> None:
    """kornia's tests matching `keyword` under pytest with the plugin; records to RECORDS."""
    RECORDS.parent.mkdir(parents=True, exist_ok=True)
    RECORDS.unlink(missing_ok=True)
    env = {
        **os.environ, _ENV: str(RECORDS), "PYTHONPATH": os.pathsep.join([str(ROOT), str(source)]),
        "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "KORNIA_TEST_IN_SUBPROCESS": "1",
    }  # fmt: skip
    command = [
        sys.executable, "-m", "pytest", "tests", "-k", keyword, "-p", "experiments.gradcheck_suite",
        "-p", "no:cacheprovider", "--dtype", "float64", "--device", "cpu", "-q", "--color=no",
        "--continue-on-collection-errors", "-o", "addopts=",
        *(["-n", str(jobs)] if jobs > 1 else []), *extra,
    ]  # fmt: skip
    subprocess.run(command, cwd=source, env=env, check=False)


def load(path: Path = RECORDS) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return sorted(rows, key=lambda r: (r["test"], r["call"]))  # (call 0: a test without one)


#: disagreements looked into: where the test's id contains the key, why (and the test of ours
#: that reproduces it small, in tests/test_gradcheck_suite_fixes.py)
FINDINGS = {
    "LAF": "torch's false failure: the LAFs put the sampling points on pixel centres, a kink "
    "of bilinear interpolation in the point's coordinates; torch's central differences fail "
    "there at every eps and pass with the points moved 1e-3 off the grid "
    "(test_bilinear_sampling_on_the_pixel_grid_torch_fails_at_its_kinks)",
    "get_laf_descriptors": "the same kink as the LAF tests: points on pixel centres",
    "TestHardNet::": "a real difference torch's fast mode misses: HardNet normalises each "
    "patch by its mean and standard deviation detached, so autograd's gradient is not the "
    "function's derivative (about 2% off); torch's slow gradcheck fails it with the test's "
    "own tolerances (eps 1e-4, atol 1e-4), its fast mode's one scalar vᵀJu passes it, and "
    "ours compares three whole gradient vectors "
    "(test_a_detached_normalisation_is_caught_where_torchs_fast_mode_misses_it)",
}


def _finding(r: dict) -> str:
    found = [why for key, why in FINDINGS.items() if key in r["test"] or key == r["func"]]
    return f" — {found[0]}" if found else ""


#: a disagreement: our verdict differs from torch's where torch decided (pass or fail)
def _disagrees(r: dict) -> bool:
    if r["ours"].startswith("foreign"):
        return True
    if r["torch"] in ("pass", "fail"):
        return r["ours"] in ("pass", "fail") and r["ours"] != r["torch"]
    return r["ours"] in ("pass", "fail")  # torch raised, ours decided


def _op_reason(reason: str) -> str:
    """A refusal's reason without the function's own name (refusals group by the op)."""
    return re.sub(r"^(\w+: \w+ of )\S+?: ", r"\1…: ", reason)


def _most(item: tuple[Any, int]) -> tuple[int, Any]:
    return -item[1], item[0]


def render(rows: list[dict], source: str = "") -> str:
    """The report: verdict pairs, refusals by reason, every disagreement (deterministic)."""
    calls = [r for r in rows if r["call"]]
    silent = sorted({r["test"] for r in rows if not r["call"]})
    pairs = Counter((r["torch"], r["ours"]) for r in calls)
    lines = [
        "# kornia's gradcheck tests: torch's gradcheck and torch_ref.gradcheck",
        "",
        "Written by `python -m experiments.gradcheck_suite` "
        "([experiments/gradcheck_suite.py](../experiments/gradcheck_suite.py), whose docstring "
        "says how): every `gradcheck` call of kornia's own tests run with torch's gradcheck and "
        "with torch_ref.gradcheck on copies of the same inputs, on the CPU, inputs in float64. "
        "One row per call: [gradcheck_suite.csv](gradcheck_suite.csv); their wall times: "
        "[gradcheck_suite_times.csv](gradcheck_suite_times.csv). What each finding became is "
        "tested small in [tests/test_gradcheck_suite_fixes.py]"
        "(../tests/test_gradcheck_suite_fixes.py).",
        "",
        f"- source: {source or 'kornia tests'}; torch {torch.__version__}",
        f"- {len(calls)} gradcheck calls in {len({r['test'] for r in calls})} tests; "
        f"{len(silent)} selected tests made no call (skipped, or no gradcheck in them)",
        "",
        "## Verdicts (torch's, ours)",
        "",
        "| torch | ours | calls |",
        "|---|---|---|",
        *(f"| {t} | {o} | {n} |" for (t, o), n in sorted(pairs.items(), key=_most)),
        "",
    ]
    refused = Counter(_op_reason(r["reason"]) for r in calls if r["ours"] == "refused")
    lines += ["## Refusals by reason", ""]
    lines += [f"- {n} × {why}" for why, n in sorted(refused.items(), key=_most)]
    lines += ["" if refused else "none", ""]
    bad = [r for r in calls if _disagrees(r)]
    lines += [f"## Disagreements ({len(bad)})", ""]
    lines += [
        f"- `{r['test']}` call {r['call']} ({r['func']}, fast_mode={r['fast_mode']}): torch "
        f"{r['torch']}{(' (' + r['torch_error'] + ')') if r['torch_error'] else ''}, ours "
        f"{r['ours']}{(': ' + r['reason']) if r['reason'] else ''}{_finding(r)}"
        for r in bad
    ]
    lines += ["" if bad else "none", ""]
    return "\n".join(lines)


def speed(rows: list[dict]) -> list[str]:
    """The median speed-up (torch's time / ours) over the calls both passed, by fast_mode."""
    out = []
    for fast in (True, False):
        both = [r for r in rows if r["call"] and r["fast_mode"] == fast]
        both = [r for r in both if r["torch"] == r["ours"] == "pass"]
        if both:
            ratio = np.median([r["torch_s"] / r["ours_s"] for r in both])
            total = sum(r["torch_s"] for r in both), sum(r["ours_s"] for r in both)
            out.append(
                f"- fast_mode={fast}: {len(both)} calls both passed, median speed-up "
                f"{ratio:.2f}× (torch's time / ours; in all, torch {total[0]:.1f} s, ours "
                f"{total[1]:.1f} s)"
            )
    return out


def write(rows: list[dict], source: str) -> None:
    speeds = [
        "## Speed",
        "",
        "Wall times of this run (they move with the machine's load; every call's pair is in "
        "docs/gradcheck_suite_times.csv):",
        "",
        *speed(rows),
    ]
    DOC.write_text(render(rows, source) + "\n".join(speeds) + "\n", encoding="utf-8")
    calls = [r for r in rows if r["call"]]
    keys = ["test", "call", "func", "fast_mode", "torch", "ours", "reason", "torch_error"]
    with open(TABLE, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(keys)
        w.writerows([r[k] for k in keys] for r in calls)
    with open(TIMES, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["test", "call", "torch_s", "ours_s"])
        w.writerows(
            [r["test"], r["call"], f"{r['torch_s']:.4f}", f"{r['ours_s']:.4f}"] for r in calls
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, help="kornia's source (tests/, testing/)")
    parser.add_argument("-k", default="gradcheck", help="pytest -k expression (gradcheck)")
    parser.add_argument("--jobs", type=int, default=1, help="pytest-xdist workers (1)")
    parser.add_argument("--render", action="store_true", help="only the report, from the records")
    parser.add_argument("--source-name", default="", help="what the report names as the source")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args(argv)
    if not args.render:
        if args.source is None:
            parser.error("the path to kornia's source is needed (or --render)")
        run(args.source.resolve(), args.k, args.jobs, args.pytest_args)
    rows = load()
    write(rows, args.source_name)
    print(DOC.read_text(encoding="utf-8").split("## Refusals")[0])
    print("\n".join(speed(rows)))


if __name__ == "__main__":
    main()
