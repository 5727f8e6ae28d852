"""Custom autograd Functions: where a hand-written backward differs from its forward's.

The autograd side of the comparison runs the user's own model, so a custom
`torch.autograd.Function` contributes its own `backward`; the manual side differentiates the
Function's `forward`, op by op, like any other code. When the gradients differ, this module
says which Function is responsible: for every call, the vector–Jacobian product of the
Function's forward (the manual backward over the nodes its forward built, seeded with the
∂L/∂output torch's graph handed to the custom backward) against what the custom backward
returned, input by input.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from torch_ref.capture import capture
from torch_ref.report import Row, compare


@dataclass
class _Call:
    cls: str
    grad_inputs: tuple[Any, ...] = ()
    grad_outputs: tuple[Any, ...] = ()


def _custom_nodes(loss: torch.Tensor) -> list[Any]:
    """The autograd graph's custom-Function nodes, in the order they were called."""
    seen, stack, found = set(), [loss.grad_fn], []
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if getattr(node, "_forward_cls", None) is not None:
            found.append(node)
        stack.extend(n for n, _ in node.next_functions)
    return sorted(found, key=lambda n: n._sequence_nr())


def _reference_calls(problem: Any) -> list[_Call]:
    """Run the user's model (a float64 copy) once more, keeping what each custom backward
    received and returned."""
    from torch_ref.oracle import _float64, _float64_loss  # (the oracle imports this module)

    twin = copy.deepcopy(problem.model).to(torch.float64)
    device = next((p.device for p in problem.model.parameters()), problem.inputs[0].device)
    inputs = tuple(
        x.detach().to(device, torch.float64).requires_grad_(True)
        if x.is_floating_point()
        else x.detach().to(device)
        for x in problem.inputs
    )
    with torch.enable_grad():
        out = twin(*inputs)
        loss = _float64_loss(problem.loss_fn)(out, _float64(problem.target.detach().to(device)))
        nodes = _custom_nodes(loss)
        if not nodes:
            return []
        calls = [_Call(n._forward_cls.__name__) for n in nodes]
        for node, call in zip(nodes, calls, strict=True):
            node.register_hook(_keeper(call))
        wrt = [p for p in twin.parameters() if p.requires_grad] + [
            x for x in inputs if x.is_floating_point()
        ]
        torch.autograd.grad(loss, wrt, allow_unused=True)
    return calls


def _keeper(call: _Call) -> Any:
    def hook(grad_inputs: tuple[Any, ...], grad_outputs: tuple[Any, ...]) -> None:
        call.grad_inputs, call.grad_outputs = grad_inputs, grad_outputs

    return hook


def _numpy(t: Any) -> np.ndarray | None:
    return None if t is None else t.detach().to("cpu", torch.float64).numpy()


def explain(problem: Any, rtol: float, atol: float) -> tuple[list[Row], list[str]]:
    """Rows comparing each custom Function's backward with its forward's derivative, and a
    sentence for each one that differs. Empty where the model calls no custom Function."""
    calls = _reference_calls(problem)
    if not calls:
        return [], []
    kinds = [(tuple(x.shape), "float" if x.is_floating_point() else "int") for x in problem.inputs]
    tagged = capture(problem.model, kinds, tag_functions=True)
    net = tagged.network
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        _, tape = net.forward(*problem.xs)
    rows: list[Row] = []
    notes: list[str] = []
    taken: dict[str, int] = {}
    for call in calls:
        k = taken.get(call.cls, 0)
        taken[call.cls] = k + 1
        ours = [f for f in tagged.functions if f.cls == call.cls]
        if k >= len(ours) or len(ours[k].outputs) != len(call.grad_outputs):
            continue
        mine = ours[k]
        seeds = {
            name: _numpy(g)
            for name, g in zip(mine.outputs, call.grad_outputs, strict=True)
            if g is not None
        }
        wanted = [n for n in mine.inputs if n is not None]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            kept = net.backprop(tape, seeds, keep=wanted).kept
        differs = []
        for j, (name, theirs) in enumerate(zip(mine.inputs, call.grad_inputs, strict=False)):
            if name is None:
                continue
            ref = _numpy(theirs)
            shape = tagged.shapes.get(name, np.shape(ref))
            ours_g = kept.get(name, np.zeros(shape))
            if ref is None:
                ref = np.zeros(np.shape(ours_g))
            row = compare("function", f"{call.cls}#{k} input {j}", ours_g, ref, rtol, atol)
            if not row.ok:
                zero = not np.any(ours_g) and np.any(ref)
                row = _with_note(row, zero)
                differs.append((j, zero))
            rows.append(row)
        if differs:
            notes.append(_sentence(call.cls, k, differs))
    return rows, notes


def _with_note(row: Row, zero: bool) -> Row:
    from dataclasses import replace

    note = "the custom backward differs from the derivative of its forward"
    if zero:
        note += " (its forward has zero derivative here: a straight-through estimator?)"
    return replace(row, note=note)


def _sentence(cls: str, k: int, differs: list[tuple[int, bool]]) -> str:
    inputs = ", ".join(str(j) for j, _ in differs)
    sentence = (
        f"custom autograd.Function {cls} (call {k}): its backward differs from the derivative "
        f"of its forward for input {inputs}, given the same ∂L/∂output"
    )
    if any(zero for _, zero in differs):
        sentence += (
            "; its forward has zero derivative there (round, sign, a threshold): a "
            "straight-through estimator is a deliberate surrogate, not the gradient"
        )
    return sentence
