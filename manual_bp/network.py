"""The network: forward keeps every z^(l) and a^(l); backward is the δ recursion.

A network is a list of nodes in evaluation order. Each node is a layer followed by an
elementwise activation (identity when there is none):

    z^(l) = layer^(l)(a^(inputs)),        a^(l) = f_l(z^(l))

For an MLP the layer is Linear and this is z^(l) = W^(l) a^(l-1) + b^(l) (Nielsen, "Neural
Networks and Deep Learning", ch. 2). Backward runs the nodes in reverse and writes the
recursion once:

    ∂L/∂a^(l) = Σ over the consumers k of a^(l) of what layer k sends back
    δ^(l)     = f_l′(z^(l)) ⊙ ∂L/∂a^(l)
    layer^(l).backward(δ^(l)) → ∂L/∂a^(inputs), ∂L/∂W^(l) = δ^(l) (a^(l-1))ᵀ, ∂L/∂b^(l) = δ^(l)

which for a chain of Linear layers is δ^(l) = f′(z^(l)) ⊙ (W^(l+1))ᵀ δ^(l+1). The sum
over consumers is the multivariate chain rule (in Mazur's worked example, the two routes
into out_h1): where one value feeds several layers (a residual connection, a concatenation),
its gradient is the sum of theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from manual_bp.ops import Layer, Linear, Shape
from manual_bp.ops.activations import IDENTITY, Activation, get_activation

Array = np.ndarray

INPUT = "input"


def _accumulate(old: Any, new: Any) -> Any:
    """Where a value feeds several consumers, its gradient is the sum of theirs. A tuple (the
    δ of a layer with several outputs) sums entry by entry; None is a zero."""
    if old is None:
        return new
    if new is None:
        return old
    if isinstance(old, tuple):
        return tuple(_accumulate(o, n) for o, n in zip(old, new, strict=True))
    return old + new


def _needs(node: Node | None) -> str | None:
    """What backward reads of a node's own values: "z" (f′ from z), "a" (f′ from a = f(z))
    or None (no activation, or not a node: one of the network's inputs)."""
    if node is None or node.act is IDENTITY:
        return None
    return "z" if node.act.grad_from_output is None else "a"


@dataclass(frozen=True)
class Node:
    """One step of the network: a^(name) = act(layer(a^(inputs)))."""

    name: str
    layer: Layer
    inputs: tuple[str, ...] = ()
    act: Activation = IDENTITY
    #: the name the activation's output goes by, where it differs from `name` (the
    #: qualified name of a torch activation module fused into this node).
    act_name: str | None = None

    def __init__(
        self,
        name: str,
        layer: Layer,
        inputs: tuple[str, ...] = (),
        act: Activation = IDENTITY,
        act_name: str | None = None,
    ) -> None:
        # (frozen: the fields are set once, here, through __dict__, at half the cost of a
        # frozen dataclass's own object.__setattr__ per field; the oracle makes one per op)
        self.__dict__.update(name=name, layer=layer, inputs=inputs, act=act, act_name=act_name)


class _Step(NamedTuple):
    """A node with what a pass reads of the graph around it, worked out once when the network
    is built (a network does not change afterwards)."""

    node: Node
    #: f′ is taken from z (see _needs): forward keeps z without a trace
    keeps_z: bool
    #: the values no later layer reads once this node has run, and backward does not either
    #: (not the output, not an a that f′ is taken from): forward without a trace frees them
    done: tuple[str, ...]
    #: every input of the node is a network input (a leaf, with none, is not)
    fed_by_inputs: bool


def _steps(net: Network) -> tuple[_Step, ...]:
    needs = {n.name: _needs(n) for n in net.nodes}
    last_read: dict[str, int] = {}  # each value's last reader; a node read by none: itself
    for k, node in enumerate(net.nodes):
        last_read[node.name] = k
        for i in node.inputs:
            last_read[i] = k
    done: list[list[str]] = [[] for _ in net.nodes]
    for name, k in last_read.items():
        if name != net.output and needs.get(name) != "a":
            done[k].append(name)
    inputs = set(net.inputs)
    # _Step(node, keeps_z, done, fed_by_inputs), by position (by keyword: +20% of the
    # network's construction, which happens once per recorded call)
    return tuple(
        _Step(
            node,
            needs[node.name] == "z",
            tuple(done[k]),
            bool(node.inputs) and inputs.issuperset(node.inputs),
        )
        for k, node in enumerate(net.nodes)
    )


@dataclass
class Tape:
    """What forward keeps for backward: z, a and each layer's cache, by node name.

    A trace (`trace=True`, the default) keeps every z and a, and backward keeps every δ.
    Without one, forward keeps what backward needs and nothing more (tinygrad's rule): each
    layer's cache, z where f′ is taken from z, a where it is taken from a = f(z), and the
    output; backward then frees each node's entries once it has used them."""

    z: dict[str, Array] = field(default_factory=dict)
    a: dict[str, Array] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)
    trace: bool = True


@dataclass
class Gradients:
    """Backward's result: δ = ∂L/∂z of every node, ∂L/∂θ by node and parameter name, and
    ∂L/∂x of each network input that the loss depends on (when asked for)."""

    deltas: dict[str, Array]
    grads: dict[str, dict[str, Array]]
    dL_dinputs: dict[str, Array] = field(default_factory=dict)
    #: ∂L/∂a of the values a caller asked to keep (Network.backprop)
    kept: dict[str, Array] = field(default_factory=dict)
    #: the inner record of each layer that declares one (Layer.inner_trace: a recurrent
    #: layer's BPTT), by node name; kept by a traced run only
    traces: dict[str, Any] = field(default_factory=dict)

    @property
    def dL_dinput(self) -> Array | None:
        """∂L/∂x of the network's input (the first one, for a network with several)."""
        return next(iter(self.dL_dinputs.values()), None)

    def flat(self) -> dict[str, Array]:
        """Gradients keyed like torch's named_parameters(): "<node>.<param>"."""
        return {f"{n}.{p}": g for n, by_param in self.grads.items() for p, g in by_param.items()}


@dataclass
class Result:
    """Everything one forward/backward pass produced, with the loss it differentiated."""

    loss: float
    output: Array
    tape: Tape
    gradients: Gradients

    @property
    def deltas(self) -> dict[str, Array]:
        return self.gradients.deltas

    @property
    def grads(self) -> dict[str, Array]:
        return self.gradients.flat()


class Network:
    """A directed acyclic graph of nodes; an nn.Sequential is the chain case.

    `inputs` names the network's inputs (one, "input", by default); a node with no inputs is
    a leaf (a model tensor used as an operand, see manual_bp.ops.graph)."""

    def __init__(
        self,
        nodes: Sequence[Node],
        output: str | None = None,
        inputs: Sequence[str] = (INPUT,),
    ) -> None:
        self.nodes = list(nodes)
        self.inputs = tuple(inputs)
        if not self.nodes:
            raise ValueError("a network needs at least one node")
        names = [n.name for n in self.nodes]
        clash = set(names) & set(self.inputs)
        if len(set(names)) != len(names) or clash or len(set(self.inputs)) != len(self.inputs):
            raise ValueError(
                f"node and input names must be unique: nodes {names}, inputs {self.inputs}"
            )
        known = set(self.inputs)
        for node in self.nodes:
            if not known.issuperset(node.inputs) or len(node.inputs) != node.layer.n_inputs:
                missing = [i for i in node.inputs if i not in known]
                raise ValueError(
                    f"node {node.name!r} takes {node.layer.n_inputs} input(s) from earlier "
                    f"nodes, got {node.inputs} (unknown: {missing})"
                )
            known.add(node.name)
        self.output = output or self.nodes[-1].name
        if self.output not in known:
            raise ValueError(f"output {self.output!r} is not a node")
        self._steps = _steps(self)

    @classmethod
    def sequential(cls, layers: Iterable[tuple[str, Layer, Activation | None]]) -> Network:
        """A chain: each (name, layer, act) takes the previous node's output."""
        nodes, prev = [], INPUT
        for name, layer, act in layers:
            nodes.append(Node(name, layer, (prev,), act or IDENTITY))
            prev = name
        return cls(nodes)

    def __repr__(self) -> str:
        lines = [f"{n.name}: {n.layer!r} → {n.act!r}  ← {', '.join(n.inputs)}" for n in self.nodes]
        return "Network(\n  " + "\n  ".join(lines) + "\n)"

    # --- parameters ---------------------------------------------------------------

    def named_parameters(self) -> dict[str, Array]:
        """Parameters keyed "<node>.<param>", as torch's named_parameters() keys them."""
        return {f"{n.name}.{p}": v for n in self.nodes for p, v in n.layer.params.items()}

    def l2_penalty(self, l2: float) -> tuple[float, dict[str, dict[str, Array]]]:
        """(λ/2) Σ ‖W‖² over the weights of Linear and Conv layers, and its gradient λW."""
        value, grads = 0.0, {}
        for node in self.nodes:
            for p in node.layer.decayed:
                W = node.layer.params[p]
                value += 0.5 * l2 * float(np.sum(W * W))
                grads.setdefault(node.name, {})[p] = l2 * W
        return value, grads

    # --- the pass -------------------------------------------------------------------

    def shapes(self, *input_shapes: Shape) -> dict[str, Shape]:
        """Every node's output shape (a tuple of shapes for a layer with several outputs),
        checked before any arithmetic.

        Raises ValueError naming the first layer whose input does not fit it.
        """
        if len(input_shapes) != len(self.inputs):
            raise ValueError(f"expected {len(self.inputs)} input shape(s), got {input_shapes}")
        shapes: dict[str, Shape] = {
            k: tuple(s) for k, s in zip(self.inputs, input_shapes, strict=True)
        }
        for node in self.nodes:
            try:
                shapes[node.name] = tuple(node.layer.shape(*(shapes[i] for i in node.inputs)))
            except ValueError as err:
                raise ValueError(f"layer {node.name!r} ({node.layer!r}): {err}") from None
        return shapes

    def forward(self, *xs: Array, trace: bool = True) -> tuple[Array, Tape]:
        """z^(l) = layer(a^(inputs)), a^(l) = f(z^(l)) for every node; returns the output.

        With trace=False the tape keeps only what backward needs (see Tape)."""
        if len(xs) != len(self.inputs):
            raise ValueError(f"expected {len(self.inputs)} input(s), got {len(xs)}")
        tape = Tape(trace=trace)
        a, zs, caches, identity = tape.a, tape.z, tape.cache, IDENTITY  # (locals: once per node)
        a.update(zip(self.inputs, xs, strict=True))
        for node, keeps_z, done, _ in self._steps:
            name, act, inputs = node.name, node.act, node.inputs
            if len(inputs) == 1:  # (most nodes: no list of arguments to build, ~0.4 µs each)
                z, caches[name] = node.layer.forward(a[inputs[0]])
            else:
                z, caches[name] = node.layer.forward(*[a[i] for i in inputs])
            a[name] = z if act is identity else act(z)
            if trace or keeps_z:
                zs[name] = z
            if not trace:
                for value in done:
                    a.pop(value, None)  # no later layer reads it, backward does not either
        return a[self.output], tape

    def backward(self, tape: Tape, dL_doutput: Array, *, input_grad: bool = True) -> Gradients:
        """The δ recursion, from ∂L/∂(output) back to the inputs.

        With input_grad=False, ∂L/∂x of the network's inputs is not formed (as autograd skips
        it for an input that does not require grad): layers fed by inputs only give ∂L/∂θ.
        A layer that sends no gradient to an input (integer token ids) returns None for it.
        """
        return self.backprop(tape, {self.output: dL_doutput}, input_grad=input_grad)

    def backprop(
        self,
        tape: Tape,
        seeds: dict[str, Any],
        *,
        input_grad: bool = True,
        keep: Collection[str] = (),
    ) -> Gradients:
        """The δ recursion started from ∂L/∂a at chosen values (`seeds`, by node or input
        name): the backward pass is the case seeds = {output: ∂L/∂output}. ∂L/∂a of the
        values named in `keep` is kept in `Gradients.kept` (a vector–Jacobian product of the
        part of the network between them and the seeds)."""
        dL_da: dict[str, Any] = dict(seeds)
        deltas: dict[str, Array] = {}
        grads: dict[str, dict[str, Array]] = {}
        kept: dict[str, Any] = {}
        traces: dict[str, Any] = {}
        trace, output, identity = tape.trace, self.output, IDENTITY
        zs, values, caches = tape.z, tape.a, tape.cache  # (locals: looked up once, not per node)
        for node, _, _, fed_by_inputs in reversed(self._steps):
            name, layer, act = node.name, node.layer, node.act
            if name not in dL_da:  # feeds nothing the loss depends on
                continue
            # δ^(l) = f′(z^(l)) ⊙ ∂L/∂a^(l)
            delta = dL_da.pop(name)
            if name in keep:
                kept[name] = delta
            if act is not identity:
                delta = act.derivative(zs.get(name), values.get(name)) * delta
            if trace:
                deltas[name] = delta
            else:  # what backward needed of this node is used: free it (autograd's rule)
                zs.pop(name, None)
                if name != output:
                    values.pop(name, None)
            cache = caches[name] if trace else caches.pop(name)
            # fed by network inputs only, and no ∂L/∂x asked for: ∂L/∂θ alone
            only_params = fed_by_inputs and not input_grad
            if trace and layer.inner_trace:  # the layer's declared inner record
                dL_dprev, grads[name], traces[name] = layer.backward_trace(
                    delta, cache, input_grad=not only_params
                )
            elif only_params:
                grads[name] = layer.param_grads(delta, cache)
            else:
                # ∂L/∂a^(l-1) = (W^(l))ᵀ δ^(l) (or the layer's own transpose), ∂L/∂θ^(l)
                dL_dprev, grads[name] = layer.backward(delta, cache)
            if only_params:
                continue
            # (one input, most nodes: its one pair without a zip, ~0.3 µs each)
            sent = (
                ((node.inputs[0], dL_dprev),)
                if layer.n_inputs == 1
                else zip(node.inputs, dL_dprev, strict=True)
            )
            for src, g in sent:
                if g is not None:
                    old = dL_da.get(src)
                    dL_da[src] = g if old is None else _accumulate(old, g)
        inputs = {k: dL_da[k] for k in self.inputs if dL_da.get(k) is not None}
        kept.update({k: v for k, v in inputs.items() if k in keep})
        return Gradients(deltas, grads, inputs, kept, traces)

    def loss_and_gradients(
        self,
        x: Array | tuple[Array, ...],
        target: Array,
        loss: Callable[[Array, Array], tuple[float, Array]],
        *,
        l2: float = 0.0,
        input_grad: bool = True,
        trace: bool = True,
    ) -> Result:
        """L = loss(network(x), target) + (λ/2) Σ‖W‖², and ∂L/∂θ for every parameter.

        x: the input, or a tuple of inputs for a network with several. With trace=False
        the result's tape and δ hold only what backward needed (see Tape)."""
        output, tape = self.forward(*(x if isinstance(x, tuple) else (x,)), trace=trace)
        value, dL_doutput = loss(output, target)
        gradients = self.backward(tape, dL_doutput, input_grad=input_grad)
        if l2:
            penalty, penalty_grads = self.l2_penalty(l2)
            value += penalty
            for name, by_param in penalty_grads.items():
                for p, g in by_param.items():
                    by_node = gradients.grads.setdefault(name, {})
                    by_node[p] = by_node[p] + g if p in by_node else g
        return Result(float(value), output, tape, gradients)


def mlp(
    weights: Sequence[Array],
    biases: Sequence[Array | None],
    activation: str | Activation = "relu",
    *,
    output_activation: str | Activation | None = None,
    **act_options: Any,
) -> Network:
    """An MLP named "1".."L": Linear layers with `activation` after every hidden one."""
    if len(weights) != len(biases):
        raise ValueError(f"{len(weights)} weights but {len(biases)} biases")
    act = (
        activation
        if isinstance(activation, Activation)
        else get_activation(activation, **act_options)
    )
    last = output_activation
    if isinstance(last, str):
        last = get_activation(last)
    layers = []
    for l, (W, b) in enumerate(zip(weights, biases, strict=True), start=1):
        layers.append((str(l), Linear(W, b), act if l < len(weights) else last))
    return Network.sequential(layers)
