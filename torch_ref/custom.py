"""Custom autograd Functions: where a hand-written backward differs from its forward's.

The autograd side of the comparison runs the user's own model, so a custom
`torch.autograd.Function` contributes its own `backward`; the manual side differentiates the
Function's `forward`, op by op, like any other code. When the gradients differ, this module
says which Function is responsible: for every call, the vector–Jacobian product of the
Function's forward (the manual backward over the nodes its forward built, seeded with the
∂L/∂output torch's graph handed to the custom backward) against what the custom backward
returned ("yours"), input by input.

Every call is found in the recorded run itself (torch_ref.record): its nodes, the values it
was called with, and its outputs, whose `grad_fn` is the Function's backward node in the
autograd graph of that same run. Nothing is keyed by `id()` and nothing runs twice.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from manual_bp.network import Network
from torch_ref.recording import autograd_grads
from torch_ref.report import Row, compare


def _numpy(t: Any) -> np.ndarray | None:
    if t is not None and t._is_zerotensor():
        return np.zeros(tuple(t.shape))
    return None if t is None else t.detach().to("cpu", torch.float64).numpy()


def _backward_node(problem: Any, call: Any) -> tuple[Any, dict[str, int]]:
    """The Function's backward node, and the output index of each of its output values."""
    node, index = None, {}
    for name in call.outputs:
        t = problem.rec.tensors.get(name)
        fn = getattr(t, "grad_fn", None)
        if fn is None or getattr(fn, "_forward_cls", None) is None:
            continue
        if node is None:
            node = fn
        if fn is node:
            index[name] = t.output_nr
    return node, index


def explain(problem: Any, rtol: float, atol: float) -> tuple[list[Row], list[str]]:
    """Rows comparing each custom Function's backward with its forward's derivative, and a
    sentence for each one that differs. Empty where the model calls no custom Function."""
    rec = problem.rec
    if not rec.functions:
        return [], []
    found = [(call, *_backward_node(problem, call)) for call in rec.functions]
    found = [(call, node, index) for call, node, index in found if node is not None]
    if not found:
        return [], []
    seen: dict[Any, tuple[tuple, tuple]] = {}

    def keeper(node: Any) -> Any:
        def hook(grad_inputs: tuple, grad_outputs: tuple) -> None:
            seen[node] = (grad_inputs, grad_outputs)

        return hook

    handles = [node.register_hook(keeper(node)) for _, node, _ in found]
    try:
        wrt = [p for p in problem.twin_params.values() if p.requires_grad]
        wrt += [t for t in problem.twin_inputs.values() if t.requires_grad]
        autograd_grads(rec.result, wrt, rec)
    finally:
        for h in handles:
            h.remove()
    net = rec.network
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        _, tape = net.forward(*problem.xs)
    rows: list[Row] = []
    notes: list[str] = []
    taken: dict[str, int] = {}
    for call, node, index in found:
        k = taken.get(call.cls, 0)
        taken[call.cls] = k + 1
        if node not in seen:
            continue
        grad_inputs, grad_outputs = seen[node]
        seeds = {
            name: _numpy(grad_outputs[i])
            for name, i in index.items()
            if i < len(grad_outputs) and grad_outputs[i] is not None
        }
        tensor_args = [n for n in call.inputs if n is not None]  # one grad per tensor argument
        wanted = [n for n in tensor_args if n]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            kept = _own(net, call).backprop(tape, seeds, keep=wanted).kept
        differs = []
        for j, (name, theirs) in enumerate(zip(tensor_args, grad_inputs, strict=False)):
            if not name:
                continue
            ref = _numpy(theirs)
            shape = rec.shapes.get(name, np.shape(ref))
            ours = kept.get(name, np.zeros(shape))
            if ref is None:
                ref = np.zeros(np.shape(ours))
            # the subject is the Function's backward (yours); the oracle, its forward's VJP
            row = compare("function", f"{call.cls}#{k} input {j}", ours, ref, rtol, atol)
            if not row.ok:
                zero = not np.any(ours) and bool(np.any(ref))
                row = _with_note(row, zero)
                differs.append((j, zero))
            rows.append(row)
        if differs:
            notes.append(_sentence(call.cls, k, differs))
    return rows, notes


def _own(net: Network, call: Any) -> Network:
    """The Function's own nodes as a network whose inputs are the values it reads from
    outside: the VJP of its forward stops at its inputs (an input it shares with an earlier
    call gets no gradient through that call)."""
    inside = set(call.nodes)
    nodes = [n for n in net.nodes if n.name in inside]
    outside = list(dict.fromkeys(i for n in nodes for i in n.inputs if i not in inside))
    return Network(nodes, output=nodes[-1].name, inputs=outside)


def _with_note(row: Row, zero: bool) -> Row:
    note = "yours (the Function's backward) differs from the oracle (its forward's derivative)"
    if zero:
        note += " (its forward has zero derivative here: a straight-through estimator?)"
    return replace(row, note=note)


def _sentence(cls: str, k: int, differs: list[tuple[int, bool]]) -> str:
    inputs = ", ".join(str(j) for j, _ in differs)
    sentence = (
        f"custom autograd.Function {cls} (call {k}): its backward differs from the derivative "
        f"of its forward (yours against the oracle) for input {inputs}, given the same "
        "∂L/∂output"
    )
    if any(zero for _, zero in differs):
        sentence += (
            "; its forward has zero derivative there (round, sign, a threshold): a "
            "straight-through estimator is a deliberate surrogate, not the gradient"
        )
    return sentence
