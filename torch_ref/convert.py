"""From a torch model to a manual_bp Network: torch.fx capture, then tables of converters.

The model is traced with torch.fx (torch.nn modules stay whole; the user's own modules are
traced through), and each graph node is looked up in a table:

- `MODULE_CONVERTERS[type(module)](module) -> Layer | Activation` for call_module nodes;
- `FUNCTION_CONVERTERS[fn](*args, **kwargs) -> Op | value` for call_function nodes and
  `METHOD_CONVERTERS[name](self, *args, **kwargs)` for Tensor methods.

Adding a layer is adding a row. Tensor arguments arrive as `Ref`s (a value of the manual
network); everything else (ints, tuples, the result of `x.size(0)`) is a plain value,
computed here from the input shape, so every shape is checked before any arithmetic.

Converted parameters are float64 NumPy copies: nothing the caller owns is touched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from manual_bp.activations import Activation, get_activation
from manual_bp.layers import Flatten, Identity, Layer, Linear, LogSoftmax, Softmax
from manual_bp.network import INPUT, Network, Node
from torch_ref.errors import UnsupportedModuleError

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Ref:
    """A tensor value of the manual network under construction: a node's output."""

    name: str


@dataclass
class Op:
    """What a function converter returns: the layer, its tensor inputs, its parameters' origins."""

    layer: Layer | Activation
    inputs: tuple[Ref, ...]
    origins: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class Converted:
    """A manual Network and how its pieces map back onto the torch model."""

    network: Network
    #: (node, param) → the torch tensor the parameter was copied from
    origins: dict[tuple[str, str], torch.Tensor]
    #: leaf-module qualified name → ("z" | "a", node): where its forward output lives
    module_outputs: dict[str, tuple[str, str]]
    #: nodes whose δ = ∂L/∂z a trace reports (Linear and Conv), in graph order
    delta_nodes: list[str]
    #: manual node name → fx node name (to find the same value in torch)
    fx_names: dict[str, str]
    graph: fx.Graph
    shapes: dict[str, Shape]


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A float64 NumPy copy of a parameter or buffer (the oracle checks them finite first)."""
    return np.array(t.detach().to(device="cpu", dtype=torch.float64).numpy(), copy=True)


# --- module converters ---------------------------------------------------------------


def _linear(m: nn.Linear, name: str) -> Layer:
    return Linear(to_numpy(m.weight), None if m.bias is None else to_numpy(m.bias))


def _dropout(m: nn.Module, name: str) -> Layer:
    if m.training and m.p > 0:
        raise ValueError(
            f"{type(m).__name__} {name!r} is in training mode (p={m.p}): its mask is random, so "
            "no reference gradient exists; expected model.eval() (or p=0)"
        )
    return Identity()


def _activation(act_name: str, *options: str) -> Callable[[nn.Module, str], Activation]:
    def convert(m: nn.Module, name: str) -> Activation:
        return get_activation(act_name, **{o: getattr(m, o) for o in options})

    return convert


MODULE_CONVERTERS: dict[type, Callable[[Any, str], Layer | Activation]] = {
    nn.Linear: _linear,
    nn.Identity: lambda m, name: Identity(),
    nn.Flatten: lambda m, name: Flatten(m.start_dim, m.end_dim),
    nn.Dropout: _dropout,
    nn.Dropout1d: _dropout,
    nn.Dropout2d: _dropout,
    nn.LogSoftmax: lambda m, name: LogSoftmax(m.dim),
    nn.Softmax: lambda m, name: Softmax(m.dim),
    nn.ReLU: _activation("relu"),
    nn.LeakyReLU: _activation("leaky_relu", "negative_slope"),
    nn.Sigmoid: _activation("sigmoid"),
    nn.Tanh: _activation("tanh"),
    nn.ELU: _activation("elu", "alpha"),
    nn.GELU: _activation("gelu", "approximate"),
    nn.SiLU: _activation("silu"),
    nn.Softplus: _activation("softplus", "beta", "threshold"),
    nn.Hardtanh: _activation("hardtanh", "min_val", "max_val"),
    nn.ReLU6: _activation("relu6"),
}


# --- function and method converters --------------------------------------------------


def _act_fn(act_name: str, **defaults: Any) -> Callable[..., Op]:
    """F.relu(x), torch.tanh(x), x.sigmoid(), F.leaky_relu(x, 0.2), ... as an activation."""
    names = list(defaults)

    def convert(x: Ref, *args: Any, inplace: bool = False, **kwargs: Any) -> Op:
        options = dict(defaults)
        options.update(zip(names, args))
        options.update({k: v for k, v in kwargs.items() if k in defaults})
        unknown = set(kwargs) - set(defaults)
        if unknown:
            raise UnsupportedModuleError(f"{act_name}: unsupported option(s) {sorted(unknown)}")
        return Op(get_activation(act_name, **options), (x,))

    return convert


def _f_linear(x: Ref, weight: Any, bias: Any = None) -> Op:
    if not isinstance(weight, torch.Tensor) or not (bias is None or isinstance(bias, torch.Tensor)):
        raise UnsupportedModuleError(
            "F.linear: the weight and bias must be parameters or buffers of the model"
        )
    origins = {"weight": weight} | ({} if bias is None else {"bias": bias})
    layer = Linear(to_numpy(weight), None if bias is None else to_numpy(bias))
    return Op(layer, (x,), origins)


def _f_dropout(x: Ref, p: float = 0.5, training: bool = True, inplace: bool = False) -> Op:
    if training and p > 0:
        raise ValueError(
            f"F.dropout is called with training=True (p={p}): its mask is random, so no reference "
            "gradient exists; expected training=False (e.g. training=self.training and model.eval())"
        )
    return Op(Identity(), (x,))


def _flatten_fn(x: Ref, start_dim: int = 0, end_dim: int = -1) -> Op:
    return Op(Flatten(start_dim, end_dim), (x,))


def _softmax_fn(cls: type[Layer]) -> Callable[..., Op]:
    def convert(x: Ref, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Op:
        if dtype is not None:
            raise UnsupportedModuleError(f"{cls.__name__}: the dtype option is not supported")
        return Op(cls(dim), (x,))

    return convert


FUNCTION_CONVERTERS: dict[Any, Callable[..., Any]] = {
    F.relu: _act_fn("relu"),
    torch.relu: _act_fn("relu"),
    F.sigmoid: _act_fn("sigmoid"),
    torch.sigmoid: _act_fn("sigmoid"),
    F.tanh: _act_fn("tanh"),
    torch.tanh: _act_fn("tanh"),
    F.leaky_relu: _act_fn("leaky_relu", negative_slope=0.01),
    F.elu: _act_fn("elu", alpha=1.0),
    F.gelu: _act_fn("gelu", approximate="none"),
    F.silu: _act_fn("silu"),
    F.softplus: _act_fn("softplus", beta=1.0, threshold=20.0),
    F.hardtanh: _act_fn("hardtanh", min_val=-1.0, max_val=1.0),
    F.relu6: _act_fn("relu6"),
    F.linear: _f_linear,
    F.dropout: _f_dropout,
    torch.flatten: _flatten_fn,
    F.log_softmax: _softmax_fn(LogSoftmax),
    F.softmax: _softmax_fn(Softmax),
}

METHOD_CONVERTERS: dict[str, Callable[..., Any]] = {
    "relu": _act_fn("relu"),
    "sigmoid": _act_fn("sigmoid"),
    "tanh": _act_fn("tanh"),
    "flatten": _flatten_fn,
    "log_softmax": _softmax_fn(LogSoftmax),
    "softmax": _softmax_fn(Softmax),
}


def _supported() -> str:
    modules = sorted(f"nn.{t.__name__}" for t in MODULE_CONVERTERS)
    return ", ".join(modules)


def _fn_name(target: Any) -> str:
    module = getattr(target, "__module__", None) or ""
    short = {"torch.nn.functional": "F", "torch": "torch", "_operator": "operator"}.get(module, module)
    return f"{short}.{getattr(target, '__name__', repr(target))}".lstrip(".")


def _where(node: fx.Node) -> str:
    trace = (node.stack_trace or "").strip().splitlines()
    frames = [line.strip() for line in trace if line.strip().startswith("File ")]
    return f" at {frames[-1]}" if frames else ""


# --- the tracer and the builder ------------------------------------------------------


class _Tracer(fx.Tracer):
    """torch.nn modules stay whole (supported or not); the user's own modules are traced."""

    def __init__(self) -> None:
        super().__init__()
        self.record_stack_traces = True

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return type(m) in MODULE_CONVERTERS or super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module) -> fx.Graph:
    """The fx graph of `model`, or UnsupportedModuleError saying why it cannot be traced."""
    try:
        return _Tracer().trace(model)
    except Exception as err:  # fx raises TraceError, TypeError, RuntimeError, ...
        raise UnsupportedModuleError(
            f"{type(model).__name__} cannot be traced by torch.fx ({type(err).__name__}: {err}); "
            "the oracle needs a forward() without data-dependent control flow"
        ) from err


class _Builder:
    """Collects manual nodes, checking each one's shape as it is added."""

    def __init__(self, input_shape: Shape) -> None:
        self.nodes: list[Node] = []
        self.shapes: dict[str, Shape] = {INPUT: tuple(input_shape)}
        self.origins: dict[tuple[str, str], torch.Tensor] = {}
        self.module_outputs: dict[str, tuple[str, str]] = {}
        self.fx_names: dict[str, str] = {}
        self.last_fx: dict[str, fx.Node] = {}  # manual node → fx node holding its output

    def unique(self, name: str) -> str:
        taken = {n.name for n in self.nodes} | {INPUT}
        candidate, k = name, 1
        while candidate in taken:
            candidate, k = f"{name}#{k}", k + 1
        return candidate

    def add(self, name: str, layer: Layer, inputs: tuple[Ref, ...], fx_node: fx.Node) -> Ref:
        name = self.unique(name)
        try:
            shape = layer.shape(*(self.shapes[r.name] for r in inputs))
        except ValueError as err:
            raise ValueError(f"layer {name!r} ({layer!r}): {err}") from None
        self.shapes[name] = tuple(shape)
        self.nodes.append(Node(name, layer, tuple(r.name for r in inputs)))
        self.fx_names[name] = fx_node.name
        self.last_fx[name] = fx_node
        return Ref(name)

    def activate(self, x: Ref, act: Activation, name: str, fx_node: fx.Node) -> Ref:
        """Fuse f into the node that made x when x feeds f alone; else a node of its own."""
        i = next((k for k, n in enumerate(self.nodes) if n.name == x.name), None)
        if i is not None:
            node = self.nodes[i]
            producer = self.last_fx[node.name]
            if node.act_name is None and node.act.name == "identity" and len(producer.users) == 1:
                self.nodes[i] = dataclasses.replace(node, act=act, act_name=name)
                self.last_fx[node.name] = fx_node
                return x
        ref = self.add(name, Identity(), (x,), fx_node)
        self.nodes[-1] = dataclasses.replace(self.nodes[-1], act=act, act_name=ref.name)
        return ref


def convert(model: nn.Module, input_shape: Shape) -> Converted:
    """The manual twin of `model` for inputs of `input_shape`.

    Raises UnsupportedModuleError for a module, function or method with no converter,
    and ValueError for a shape that does not fit a layer, naming the layer.
    """
    graph = trace(model)
    modules = dict(model.named_modules())
    b = _Builder(input_shape)
    env: dict[fx.Node, Any] = {}
    output: Any = None
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise UnsupportedModuleError(
            f"{type(model).__name__}.forward takes {len(placeholders)} inputs "
            f"({', '.join(p.name for p in placeholders)}); the oracle supports exactly one"
        )

    def value(arg: Any) -> Any:
        return fx.node.map_arg(arg, lambda n: env[n])

    for node in graph.nodes:
        if node.op == "placeholder":
            env[node] = Ref(INPUT)
        elif node.op == "get_attr":
            env[node] = _get_attr(model, node.target)
        elif node.op == "call_module":
            env[node] = _call_module(b, modules[node.target], node, value(node.args), value(node.kwargs))
        elif node.op in ("call_function", "call_method"):
            env[node] = _call_function(b, node, value(node.args), value(node.kwargs))
        elif node.op == "output":
            output = value(node.args[0])
    if not isinstance(output, Ref) or output.name == INPUT:
        raise UnsupportedModuleError(
            f"{type(model).__name__}.forward must return one tensor computed from its input, "
            f"got {type(output).__name__}"
        )
    network = Network(b.nodes, output=output.name)
    delta_nodes = [n.name for n in network.nodes if n.layer.reports_delta]
    return Converted(network, b.origins, b.module_outputs, delta_nodes, b.fx_names, graph, b.shapes)


def _get_attr(model: nn.Module, target: str) -> Any:
    obj: Any = model
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _call_module(b: _Builder, module: nn.Module, node: fx.Node, args: tuple, kwargs: dict) -> Ref:
    name = node.target
    convert_module = MODULE_CONVERTERS.get(type(module))
    if convert_module is None:
        raise UnsupportedModuleError(
            f"module {name!r} ({type(module).__name__}) is not supported; "
            f"supported modules: {_supported()}"
        )
    if len(args) != 1 or kwargs or not isinstance(args[0], Ref):
        raise UnsupportedModuleError(
            f"module {name!r} ({type(module).__name__}) must be called on one tensor"
        )
    converted = convert_module(module, name)
    if isinstance(converted, Activation):
        ref = b.activate(args[0], converted, name, node)
        b.module_outputs[name] = ("a", ref.name)
        return ref
    ref = b.add(name, converted, (args[0],), node)
    for p in converted.params:
        b.origins[(ref.name, p)] = getattr(module, p)
    b.module_outputs[name] = ("z", ref.name)
    return ref


def _call_function(b: _Builder, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    if node.op == "call_method":
        convert_fn = METHOD_CONVERTERS.get(node.target)
        what = f"Tensor.{node.target}"
    else:
        convert_fn = FUNCTION_CONVERTERS.get(node.target)
        what = _fn_name(node.target)
    if convert_fn is None:
        raise UnsupportedModuleError(
            f"node {node.name!r} ({node.op} {what}){_where(node)} is not supported; supported "
            f"functions: {', '.join(sorted({_fn_name(f) for f in FUNCTION_CONVERTERS}))}; "
            f"Tensor methods: {', '.join(sorted(METHOD_CONVERTERS))}"
        )
    try:
        result = convert_fn(*args, **kwargs)
    except TypeError as err:
        raise UnsupportedModuleError(f"node {node.name!r} ({what}){_where(node)}: {err}") from None
    if not isinstance(result, Op):
        return result  # a plain value: a size, a shape, a number
    if isinstance(result.layer, Activation):
        return b.activate(result.inputs[0], result.layer, node.name, node)
    ref = b.add(node.name, result.layer, result.inputs, node)
    for p, t in result.origins.items():
        b.origins[(ref.name, p)] = t
    return ref

