"""How much of PyTorch's own test databases the oracle covers, op by op and module by module.

    python -m experiments.coverage [--ops] [--modules] [--samples 3] [--only NAME ...]
                                   [--out docs/coverage.md]

Every entry of `torch.testing._internal.common_methods_invocations.op_db` that supports
autograd in float64 on the CPU (one entry per name and variant), and every entry of
`common_modules.module_db` that runs in float64, is run through `torch_ref.compare_gradients`
with input gradients, at the oracle's default tolerances (rtol 1e-7, atol 1e-10), against
torch.autograd on the same float64 call:

- an op sample is a model whose inputs are the sample's tensors that require grad (∂L/∂x
  checked for each); its other tensors (indices, masks, targets) are buffers of the model;
  the loss is Σ ⟨out_k, c_k⟩ over the floating outputs with fixed random cotangents c_k;
- a module sample is the module built by its constructor input, in eval mode, called on the
  forward input (its integer tensors are inputs too: token ids); the same loss, the
  module's parameters and the inputs checked; a lazy module is materialised by a dry run
  first, as torch's docs ask;
- an op is called through its OpInfo's `gradcheck_wrapper` and its output passed through
  the sample's `output_process_fn_grad`, as torch's own gradcheck tests do (eigh's input
  made symmetric, its eigenvectors taken up to sign).

Each sample ends as `match`, `mismatch` (the report is not ok: a bug), `refused`
(UnsupportedModuleError, or a ValueError/TypeError that says what the oracle expected) or
`crash` (any other exception: a bug). An op or module takes the worst verdict over its
samples, in that order: crash, mismatch, refused, match. Samples are subsampled: at most
`--samples` per entry (default 3), evenly spaced over torch's list, so that the whole
database runs in minutes. Samples outside the oracle's contract (a 0-d or empty input: no
batch) and samples torch itself cannot differentiate (no input requires grad, complex
outputs, an output torch refuses to differentiate) are skipped, and an entry with none left
is counted as `no sample`.

Writes the summary counts, a per-family table and every refusal reason to --out (Markdown,
deterministic: no timings) and prints the counts.
"""

from __future__ import annotations

import argparse
import copy
import functools
import re
import sys
import types
import unittest
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils import _pytree as pytree

import torch_ref
from experiments import core_aten
from experiments.report.io import atomic_write

DEFAULT_OUT = Path("docs/coverage.md")
DEFAULT_SAMPLES = 3
VERDICTS = ("crash", "mismatch", "refused", "match")  # worst first
REFUSED = (torch_ref.UnsupportedModuleError, ValueError, TypeError)


def _databases() -> tuple[list[Any], list[Any]]:
    """op_db and module_db. torch's test helpers import `expecttest` for its TestCase only;
    where it is not installed, a stand-in module holding unittest.TestCase is used."""
    if "expecttest" not in sys.modules:
        try:
            import expecttest  # noqa: F401
        except ImportError:
            stub = types.ModuleType("expecttest")
            stub.TestCase = unittest.TestCase  # type: ignore[attr-defined]
            sys.modules["expecttest"] = stub
    from torch.testing._internal.common_methods_invocations import op_db
    from torch.testing._internal.common_modules import module_db

    return op_db, module_db


# --- one sample as a model -------------------------------------------------------------


class CallModel(nn.Module):
    """`fn(*args, **kwargs)` with the tensors that require grad as the model's inputs (in
    order) and every other tensor a buffer: `call` is the sample's pytree of arguments with
    each tensor replaced by ("input", k) or ("buffer", name)."""

    def __init__(self, fn: Callable[..., Any], call: Any, buffers: dict[str, torch.Tensor]):
        super().__init__()
        self.fn = fn
        self.call = call
        for name, t in buffers.items():
            self.register_buffer(name, t)

    def forward(self, *xs: torch.Tensor) -> Any:
        def fill(leaf: Any) -> Any:
            if isinstance(leaf, _Slot):
                return xs[leaf.index] if leaf.kind == "input" else getattr(self, leaf.name)
            return leaf

        args, kwargs = pytree.tree_map(fill, self.call)
        return self.fn(*args, **kwargs)


@dataclass(frozen=True)
class _Composed:
    """post(fn(*args, **kwargs)): the sample's output_process_fn_grad after the op, as torch's
    gradcheck tests apply it (eigenvectors and singular vectors up to their sign)."""

    post: Callable[[Any], Any]
    fn: Callable[..., Any]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.post(self.fn(*args, **kwargs))


@dataclass(frozen=True)
class _Slot:
    kind: str  # "input" or "buffer"
    index: int = 0
    name: str = ""


def _split(
    args: Any, kwargs: Any, *, int_inputs: bool = False
) -> tuple[Any, list[torch.Tensor], dict[str, torch.Tensor]]:
    """(call with slots, inputs, buffers) of a sample's arguments: the floating tensors that
    require grad are inputs (with `int_inputs`, integer tensors too: token ids), the rest
    buffers."""
    inputs: list[torch.Tensor] = []
    buffers: dict[str, torch.Tensor] = {}

    def slot(leaf: Any) -> Any:
        if not isinstance(leaf, torch.Tensor):
            return leaf
        if (leaf.requires_grad and leaf.is_floating_point()) or (
            int_inputs and not leaf.is_floating_point() and not leaf.is_complex()
        ):
            inputs.append(leaf.detach().clone())
            return _Slot("input", len(inputs) - 1)
        name = f"b{len(buffers)}"
        buffers[name] = leaf.detach().clone()
        return _Slot("buffer", name=name)

    call = pytree.tree_map(slot, (tuple(args), dict(kwargs)))
    return call, inputs, buffers


def _floating_outputs(out: Any) -> list[torch.Tensor]:
    return [o for o in pytree.tree_leaves(out) if isinstance(o, torch.Tensor) and o.requires_grad]


class InnerProductLoss:
    """Σ_k ⟨out_k, c_k⟩ over the outputs that carry gradient (the c_k are the target)."""

    def __init__(self, keep: list[int]):
        self.keep = keep

    def __call__(self, out: Any, cotangents: tuple[torch.Tensor, ...]) -> torch.Tensor:
        leaves = [o for o in pytree.tree_leaves(out) if isinstance(o, torch.Tensor)]
        total = 0.0
        for k, c in zip(self.keep, cotangents, strict=True):
            total = total + (leaves[k] * c).sum()
        return total


def _problem(model: nn.Module, inputs: list[torch.Tensor]) -> tuple[Any, Any] | None:
    """(loss_fn, cotangents) for a model torch can differentiate on these inputs, else None."""
    twin = copy.deepcopy(model)
    xs = [x.clone().requires_grad_(x.is_floating_point()) for x in inputs]
    with torch.enable_grad():
        out = twin(*xs)
    leaves = [o for o in pytree.tree_leaves(out) if isinstance(o, torch.Tensor)]
    keep = [k for k, o in enumerate(leaves) if o.requires_grad and o.is_floating_point()]
    if not keep or any(leaves[k].is_complex() for k in keep):
        return None
    g = torch.Generator().manual_seed(0)
    cots = tuple(torch.randn(leaves[k].shape, generator=g, dtype=leaves[k].dtype) for k in keep)
    loss = InnerProductLoss(keep)(out, cots)
    params = [p for p in twin.parameters() if p.requires_grad]
    try:
        torch.autograd.grad(loss, [x for x in xs if x.requires_grad] + params, allow_unused=True)
    except RuntimeError:  # torch itself has no derivative here
        return None
    return InnerProductLoss(keep), cots


def verdict(model: nn.Module, inputs: list[torch.Tensor]) -> tuple[str, str] | None:
    """(verdict, reason) of one model on its inputs; None where torch cannot differentiate."""
    try:
        problem = _problem(model, inputs)
    except Exception:  # torch refuses its own sample (a sample meant to raise)
        return None
    if problem is None:
        return None
    loss_fn, cots = problem
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = torch_ref.compare_gradients(
                model, loss_fn, tuple(inputs), cots, input_grads=True
            )
    except REFUSED as e:
        return "refused", f"{type(e).__name__}: {_first_line(e)}"
    except Exception as e:  # a foreign exception: a bug of ours
        return "crash", f"{type(e).__name__}: {_first_line(e)}"
    if not report.ok:
        worst = max((r for r in report.rows if not r.ok), key=lambda r: r.max_rel_err)
        return "mismatch", f"{worst.kind} {worst.name}: max rel err {worst.max_rel_err:.1e}"
    return "match", ""


def _first_line(e: BaseException) -> str:
    """The message without where it happened (the wrapper model, this file's line)."""
    text = " ".join(str(e).split())
    where = (
        r" in module '[^']*' \(\w+\)( at File \"[^\"]*\", line \d+, in \w+: .*?(?= is not|: |$))?"
    )
    text = re.sub(where, "", text)
    return text[:200]


def _batch(inputs: list[torch.Tensor]) -> bool:
    """The oracle's contract: inputs hold a non-empty batch (no 0-d, no empty tensor)."""
    return bool(inputs) and all(x.ndim >= 1 and x.numel() > 0 for x in inputs)


def _spaced(items: list[Any], k: int) -> list[Any]:
    """The items in the order they are tried: k evenly spaced ones (the first and the last
    included), then the rest in torch's order (where some cannot be differentiated)."""
    picked = sorted({round(i * (len(items) - 1) / max(k - 1, 1)) for i in range(k)})
    picked = [i for i in picked if i < len(items)]
    return [items[i] for i in picked] + [x for i, x in enumerate(items) if i not in picked]


# --- the databases ---------------------------------------------------------------------


@dataclass
class Entry:
    name: str
    family: str
    verdict: str
    reason: str = ""
    samples: int = 0


def _worst(results: list[tuple[str, str]]) -> tuple[str, str]:
    return min(results, key=lambda r: VERDICTS.index(r[0]))


def op_entries(op_db: list[Any]) -> list[Any]:
    """op_db's entries that autograd supports in float64 on the CPU."""
    return [
        op
        for op in op_db
        if op.supports_autograd and torch.float64 in op.supported_backward_dtypes("cpu")
    ]


def _op_family(op: Any) -> str:
    name = op.name
    for prefix in ("linalg", "special", "fft", "nn.functional", "_refs", "masked", "sparse"):
        if name.startswith(prefix + "."):
            return prefix
    return "torch"


def run_op(op: Any, k: int) -> Entry:
    name = op.name + (f" ({op.variant_test_name})" if op.variant_test_name else "")
    torch.manual_seed(0)
    try:
        samples = list(op.sample_inputs("cpu", torch.float64, requires_grad=True))
    except Exception as e:
        return Entry(name, _op_family(op), "crash", f"sample_inputs: {_first_line(e)}")
    calls = [(*_split((s.input, *s.args), s.kwargs), s.output_process_fn_grad) for s in samples]
    results = []
    for call, inputs, buffers, post in _spaced([c for c in calls if _batch(c[1])], k):
        if len(results) >= k:
            break
        fn = _Composed(post, functools.partial(op.gradcheck_wrapper, op.op))
        got = verdict(CallModel(fn, call, buffers), inputs)
        if got is not None:
            results.append(got)
    if not results:
        return Entry(name, _op_family(op), "no sample")
    v, why = _worst(results)
    return Entry(name, _op_family(op), v, why, len(results))


def module_entries(module_db: list[Any]) -> list[Any]:
    return [m for m in module_db if torch.float64 in m.dtypes]


def _module_model(module: nn.Module, call: Any, buffers: dict[str, torch.Tensor]) -> nn.Module:
    model = CallModel(module, call, buffers)
    model.add_module("module", module)  # its parameters are the model's
    return model


def run_module(info: Any, k: int) -> Entry:
    name = info.module_cls.__name__
    family = info.module_cls.__module__.rsplit(".", 1)[-1]
    torch.manual_seed(0)
    try:
        samples = list(
            info.module_inputs_func(
                info, device="cpu", dtype=torch.float64, requires_grad=True, training=False
            )
        )
    except Exception as e:
        return Entry(name, family, "crash", f"module_inputs_func: {_first_line(e)}")
    results = []
    for s in samples:
        if len(results) >= k:
            break
        if s.forward_input is None:
            continue
        cargs, ckwargs = s.constructor_input.args, s.constructor_input.kwargs
        try:
            torch.manual_seed(0)
            module = info.module_cls(*cargs, **ckwargs).to(torch.float64).eval()
        except Exception:
            continue
        call, inputs, buffers = _split(
            s.forward_input.args, s.forward_input.kwargs, int_inputs=True
        )
        if inputs and not _batch(inputs):
            continue
        if isinstance(module, nn.modules.lazy.LazyModuleMixin):  # materialised by a dry run,
            with torch.no_grad():  # as torch's docs ask
                CallModel(module, call, buffers)(*inputs)
        got = verdict(_module_model(module, call, buffers), inputs)
        if got is not None:
            results.append(got)
    if not results:
        return Entry(name, family, "no sample")
    v, why = _worst(results)
    return Entry(name, family, v, why, len(results))


# --- the report ------------------------------------------------------------------------


def counts(entries: Iterable[Entry]) -> Counter:
    return Counter(e.verdict for e in entries)


def _summary(title: str, entries: list[Entry]) -> list[str]:
    c = counts(entries)
    cols = (*VERDICTS, "no sample")
    lines = [
        f"## {title}",
        "",
        f"{len(entries)} entries: " + ", ".join(f"{c[v]} {v}" for v in cols) + ".",
        "",
        "| family | " + " | ".join(cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for family in sorted({e.family for e in entries}):
        fc = counts(e for e in entries if e.family == family)
        lines.append(f"| {family} | " + " | ".join(str(fc[v]) for v in cols) + " |")
    for v in ("crash", "mismatch", "refused"):
        bad = sorted((e for e in entries if e.verdict == v), key=lambda e: e.name)
        if bad:
            lines += ["", f"### {v} ({len(bad)})", "", "| entry | reason |", "|---|---|"]
            lines += [f"| `{e.name}` | {e.reason.replace('|', '/')} |" for e in bad]
    return lines + [""]


def markdown(ops: list[Entry] | None, modules: list[Entry] | None, k: int) -> str:
    lines = [
        "# Coverage of PyTorch's own test databases",
        "",
        "Generated by `python -m experiments.coverage` "
        "([its docstring](../experiments/coverage.py) says how): each "
        "entry run through `torch_ref.compare_gradients` with input gradients against "
        f"torch.autograd in float64, at most {k} samples per entry, evenly spaced over "
        f"torch's list. torch {torch.__version__.split('+')[0]}.",
        "",
    ]
    if ops is not None:
        lines += _summary("op_db (float64 autograd on the CPU)", ops)
    if modules is not None:
        lines += _summary("module_db (float64)", modules)
    return "\n".join(lines) + "\n\n" + core_aten.markdown()


def _run_all(entries: list[Any], run: Callable[[Any, int], Entry], k: int) -> Iterator[Entry]:
    for i, entry in enumerate(entries):
        result = run(entry, k)
        print(f"[{i + 1}/{len(entries)}] {result.name}: {result.verdict} {result.reason}"[:160])
        yield result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", action="store_true", help="run op_db (default: both)")
    parser.add_argument("--modules", action="store_true", help="run module_db (default: both)")
    parser.add_argument(
        "--samples", type=int, default=DEFAULT_SAMPLES, help="samples per entry at most"
    )
    parser.add_argument("--only", nargs="*", default=None, help="entries by name")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="'-' writes nothing")
    args = parser.parse_args(argv)
    both = not args.ops and not args.modules
    op_db, module_db = _databases()
    wanted = set(args.only) if args.only else None
    ops = modules = None
    if args.ops or both:
        chosen = [o for o in op_entries(op_db) if wanted is None or o.name in wanted]
        ops = list(_run_all(chosen, run_op, args.samples))
    if args.modules or both:
        chosen = [
            m
            for m in module_entries(module_db)
            if wanted is None or m.module_cls.__name__ in wanted
        ]
        modules = list(_run_all(chosen, run_module, args.samples))
    for title, entries in (("op_db", ops), ("module_db", modules)):
        if entries is not None:
            c = counts(entries)
            print(f"{title}: {len(entries)} entries, " + ", ".join(f"{c[v]} {v}" for v in c))
    if str(args.out) != "-":
        atomic_write(args.out, markdown(ops, modules, args.samples))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
