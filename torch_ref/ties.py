"""Kinks and ties that rounding decided: the replay that tells them from real differences.

A backward that branches on forward values (relu′ on the sign of z, max pooling on which
entry won, L1′ on the sign of y − t) takes a valid subgradient on either side of a kink. When
a value sits on the kink, float64 rounding decides the branch, and torch and NumPy, whose
roundings differ in the last bits, can take different ones: GELU of −20 is −0.0 in torch and
−5.5e-88 here, so a max pool after it sees a tie in torch and a clear winner here.

The manual forward names those entries: every op with a kink reports the entries of its
input within TIE_RTOL of one (manual_bp.ops.base). Where a tensor differs from autograd,
the comparison replays the manual pass with torch's forward values at those entries only —
the branch torch took — and everything else computed as before from them. If the replay matches, the
difference was rounding at a kink (status "tie"); if not, it stays a failure. Entries far
from any kink are never replayed, so a wrong formula cannot hide behind a replay.

torch's forward values are those of the recorded run itself (torch_ref.record): the user's
forward on the float64 twin, the very values autograd's reference differentiated.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from manual_bp.network import Node, Result, Tape
from manual_bp.ops.activations import IDENTITY
from manual_bp.ops.graph import Select
from manual_bp.ops.matrix.factorizations import SVD, Eigh
from manual_bp.ops.shape import Identity


@dataclass
class Replay:
    """The manual result replayed with torch's branch decisions, and where they differed."""

    result: Result
    #: node (or "loss") → how many entries took torch's branch instead of ours
    changed: dict[str, int] = field(default_factory=dict)

    @property
    def entries(self) -> int:
        return sum(self.changed.values())


def torch_values(problem: Any, wanted: Iterable[str]) -> dict[str, np.ndarray]:
    """Node name → the value torch computed for it in the recorded run, in float64, for the
    `wanted` nodes (a value torch changed in place since is left out)."""
    out = {}
    for name in wanted:
        value = problem.rec.torch_value(name)
        if value is not None:
            out[name] = value
    return out


def _z_source(node: Any) -> str | None:
    """The node holding torch's value of z, the input of a node's activation."""
    if node.act_name is not None:  # fused: z is the layer's own output
        return node.name
    if isinstance(node.layer, Identity) and len(node.inputs) == 1:  # a lone activation
        return node.inputs[0]
    return None


def _needed(problem: Any, result: Result) -> tuple[dict[str, Any], set[str]]:
    """The masks of every kink and tie in the manual pass, and the fx values they need."""
    captured, tape = problem.rec, result.tape
    acts = {n.name for n in captured.network.nodes if n.act_name is not None}
    plan: dict[str, Any] = {}
    wanted: set[str] = set()
    for node in captured.network.nodes:
        if node.act.kink is not None:
            mask = node.act.kink(tape.z[node.name])
            source = _z_source(node)
            if mask.any() and source is not None:
                plan[("act", node.name)] = (mask, source)
                wanted.add(source)
        masks = node.layer.ties(*(tape.a[i] for i in node.inputs)) if node.inputs else None
        if masks:
            sources = []
            for i, m in zip(node.inputs, masks, strict=True):
                fused = i in acts  # a fused node's value is its activation's output
                source = (f"{i}.a" if fused else i) if m is not None and m.any() else None
                sources.append((m, source))
                if source is not None:
                    wanted.add(source)
            if any(s is not None for _, s in sources):
                plan[("layer", node.name)] = sources
    return plan, wanted


def replay(problem: Any, result: Result) -> Replay | None:
    """The manual pass again, with torch's values at the entries near kinks and ties (and
    every value downstream following from them, so that a jump of f itself, a threshold or
    a round, carries on as it does in torch); None when the manual pass has no such entry."""
    plan, wanted = _needed(problem, result)
    if not plan:
        return None
    values = torch_values(problem, wanted)
    net = problem.captured.network
    tape = Tape()
    tape.a.update(zip(net.inputs, problem.xs, strict=True))
    changed: dict[str, int] = {}

    def take(name: str, mask: Any, ours: Any, source: str | None) -> Any:
        """ours with torch's values at the masked entries, counting those that differ."""
        theirs = values.get(source) if source is not None else None
        if theirs is None or theirs.shape != np.shape(ours):
            return ours
        n = int(np.count_nonzero(mask & (theirs != ours)))
        if n:
            changed[name] = changed.get(name, 0) + n
        return np.where(mask, theirs, ours)

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for node in net.nodes:
            inputs = [tape.a[i] for i in node.inputs]
            for k, (mask, source) in enumerate(plan.get(("layer", node.name), ())):
                if mask is not None and source is not None:
                    inputs[k] = take(node.name, mask, inputs[k], source)
            z, tape.cache[node.name] = node.layer.forward(*inputs)
            step = plan.get(("act", node.name))
            if step is not None:
                z = take(node.name, step[0], z, step[1])
            tape.z[node.name] = z
            tape.a[node.name] = z if node.act is IDENTITY else node.act(z)
        output = tape.a[net.output]
        step = plan.get(("loss", "loss"))
        if step is not None:
            output = take("loss", step[0], output, step[1])
        if not changed:
            return Replay(result, {})
        loss, dL_doutput = problem.loss(output, problem.y)
        gradients = net.backward(tape, dL_doutput, input_grad=problem.input_grads)
    return Replay(Result(float(loss), output, tape, gradients), changed)


def torch_signs(nodes: list[Node], values: dict[str, Any]) -> list[Node]:
    """The nodes with each SVD and eigh taking the signs of torch's singular vectors and
    eigenvectors (LAPACKs choose them differently; a sign is torch's choice, as a tie is).
    `values`: node name → (torch's tensor, its version when recorded)."""
    if not any(isinstance(n.layer, (SVD, Eigh)) for n in nodes):
        return nodes  # (no decomposition: nothing to sign)

    def torch_value(name: str | None) -> np.ndarray | None:
        found = values.get(name) if name is not None else None
        if found is None or found[0]._version != found[1]:
            return None
        return found[0].detach().to("cpu").double().numpy()

    selected = {(n.inputs[0], n.layer.k): n.name for n in nodes if isinstance(n.layer, Select)}
    out = []
    for n in nodes:
        layer = n.layer
        if isinstance(layer, SVD) and not layer.values_only:
            U, Vh = (torch_value(selected.get((n.name, k))) for k in (0, 2))
            if U is not None or Vh is not None:
                layer = SVD(layer.full_matrices, signs=(U, Vh))  # type: ignore[arg-type]
        elif isinstance(layer, Eigh) and not layer.values_only:
            V = torch_value(selected.get((n.name, 1)))
            if V is not None:
                layer = Eigh(layer.uplo, signs=V)
        out.append(n if layer is n.layer else replace(n, layer=layer))
    return out
