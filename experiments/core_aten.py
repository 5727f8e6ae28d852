"""How the record reaches every op of PyTorch's Core ATen opset (the ~190 overloads tagged
`torch.Tag.core` that every exported model lowers to): a section of docs/coverage.md.

    python -m experiments.core_aten [--out FILE]

Each overload is looked up the way torch_ref.lowering looks up an ATen op it meets inside a
call without a registry row: a registry row (by the torch function or method of its name,
or an ATen spelling), an ATen spelling chosen by its arguments, a constant (no gradient),
torch._decomp's decomposition, or torch's own composite kernel. What is left is said by
reason: no gradient (integer outputs, factories, and resize_, which autograd refuses on a
tensor that requires grad), a random draw (refused: the manual pass and autograd would see
different draws), a backward op (met only when differentiating a backward), or complex
values (refused: the oracle is real float64).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch._decomp import decomposition_table

from torch_ref.lowering import _CHOSEN, _CONSTANT, _entry

ROUTES = (
    "registry row",
    "row chosen by its arguments",
    "constant",
    "torch._decomp decomposition",
    "torch's composite kernel",
    "no gradient (integer outputs, factories, resize_)",
    "random draw (refused)",
    "backward op (refused)",
    "complex values (refused)",
)


def core_overloads() -> list[Any]:
    """Every ATen overload tagged core (from the dispatcher's list of every registered
    operator, so the answer does not depend on what has been imported)."""
    out = []
    for qualified in torch._C._dispatch_get_all_op_names():
        if not qualified.startswith("aten::"):
            continue
        name, _, overload = qualified.removeprefix("aten::").partition(".")
        op = getattr(getattr(torch.ops.aten, name), overload or "default")
        if torch.Tag.core in op.tags:
            out.append(op)
    return sorted(out, key=str)


def route(op: Any) -> str:
    name = op._schema.name.split("::", 1)[1]
    if name in _CHOSEN:
        return "row chosen by its arguments"
    if _entry(op)[0] is not None:
        return "registry row"
    if name in _CONSTANT:
        return "constant"
    if op in decomposition_table:
        return "torch._decomp decomposition"
    if op._can_decompose():
        return "torch's composite kernel"
    if torch.Tag.nondeterministic_seeded in op.tags:
        return "random draw (refused)"
    if name.endswith("_backward"):
        return "backward op (refused)"
    if name.startswith("_fft"):
        return "complex values (refused)"
    return "no gradient (integer outputs, factories, resize_)"


def markdown() -> str:
    ops = core_overloads()
    by: dict[str, list[str]] = defaultdict(list)
    for op in ops:
        by[route(op)].append(str(op).removeprefix("aten."))
    lines = [
        "## Core ATen",
        "",
        f"The {len(ops)} overloads tagged `torch.Tag.core` in torch "
        f"{torch.__version__.split('+')[0]}, by how the record reaches each "
        "(`python -m experiments.core_aten`; the route torch_ref.lowering takes for an ATen "
        "op met inside a call without a registry row).",
        "",
        "| route | overloads | |",
        "|---|---|---|",
    ]
    for r in ROUTES:
        names = by.get(r, [])
        shown = ", ".join(f"`{n}`" for n in names) if len(names) <= 12 else ""
        lines.append(f"| {r} | {len(names)} | {shown} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=None, help="write the section to this file (default: print)"
    )
    out = parser.parse_args(argv).out
    if out is None:
        print(markdown(), end="")
    else:
        out.write_text(markdown())


if __name__ == "__main__":
    main()
