"""Capture: from a torch model to a manual_bp Network, traced with known shapes.

The model is traced by torch.fx with a tracer that knows the shape of every value. Each call
(a module, a function, a Tensor method) is looked up in the op registry the moment it is
recorded; its rule builds the manual nodes, and sizes come back to your code as plain
Python values. So `x.view(x.size(0), -1)` traces to a Reshape of known sizes, and
`torch._assert(x.shape[1] == C, ...)`, `assert x.ndim == 4` or `if x.shape[-1] != C: raise`
are evaluated here: a failing one is a ValueError naming your line, before any arithmetic.

torch.nn modules with a registry row stay whole (they are the nodes the trace reports δ
and outputs for); your own modules, and torch.nn modules without a row, are traced through.
An nn.Sequential of modules that all have rows needs no tracing at all: its children are
converted in order.

Values are `Ref` (a tensor computed from the inputs), `Param` (a tensor of the model, by its
qualified name: parameters, buffers, and constants created in forward()) and plain values.
Nothing the caller owns is changed: parameters are read into float64 copies, and tensors
created in forward() are kept here rather than stored on the model as fx would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import linecache
import operator
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx import _symbolic_trace

import manual_bp
from manual_bp.network import Network, Node
from manual_bp.ops.activations import IDENTITY, Activation
from manual_bp.ops.graph import Constant, Parameter, Select
from manual_bp.ops.shape import Identity
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry import (
    lookup_function,
    lookup_method,
    lookup_module,
    registry,
    supported_modules,
    torch_name,
)
from torch_ref.registry.core import Op, OpEntry, Param, Ref, Shape
from torch_ref.registry.sizes import PLAIN_ATTRIBUTES, attribute

INPUT = "input"


@dataclass(frozen=True)
class Probe:
    """Where the autograd side finds the value a manual node computed, in the user's own
    model: output `index` of the `call`-th call (0-based) of the leaf module `target`
    (kind "module"), or of the torch function `target` (kind "function")."""

    kind: str
    target: Any
    call: int
    index: int | None = None


@dataclass
class Captured:
    """A manual Network and how its pieces map back onto the torch model."""

    network: Network
    #: (node, layer parameter) → the model's qualified parameter/buffer name
    params: dict[tuple[str, str], str]
    #: leaf-module qualified name (with #k for a later call) → the node whose a is its output
    module_outputs: dict[str, str]
    #: nodes whose δ = ∂L/∂z a trace reports (weighted layers), in graph order
    delta_nodes: list[str]
    #: manual node → where its output is found in the user's model (for the autograd side)
    probes: dict[str, Probe]
    #: manual node → the fx node computing the same value (its a; for a fused node, `z_fx`)
    value_fx: dict[str, str]
    #: fused node → the fx node computing its z (the layer's output before the activation)
    z_fx: dict[str, str]
    graph: fx.Graph
    #: tensors created in forward(), by the get_attr target the graph uses for them
    constants: dict[str, torch.Tensor]
    shapes: dict[str, Any]
    #: the custom autograd.Function calls, in call order (with `tag_functions` only)
    functions: list[Any] = field(default_factory=list)


# --- where in the user's code --------------------------------------------------------

_OURS = tuple(
    os.path.dirname(p) + os.sep
    for p in (torch.__file__, manual_bp.__file__, __file__, fx.__file__, inspect.__file__)
)


def _is_user_file(filename: str) -> bool:
    return not filename.startswith(_OURS) and not filename.startswith("<")


def _format_frame(filename: str, lineno: int, name: str) -> str:
    code = linecache.getline(filename, lineno).strip()
    where = f'File "{filename}", line {lineno}, in {name}'
    return f" at {where}: {code}" if code else f" at {where}"


def _user_line(frame: FrameType | None = None) -> str:
    """' at File "model.py", line 12, in forward: return torch.exp(x)', the innermost frame of
    the user's code on the current stack (or '')."""
    f = frame or sys._getframe(1)
    while f is not None:
        if _is_user_file(f.f_code.co_filename):
            return _format_frame(f.f_code.co_filename, f.f_lineno, f.f_code.co_name)
        f = f.f_back
    return ""


def _user_line_of(err: BaseException) -> str:
    """The innermost user frame of an exception's traceback."""
    for fs in reversed(traceback.extract_tb(err.__traceback__)):
        if _is_user_file(fs.filename):
            return _format_frame(fs.filename, fs.lineno or 0, fs.name)
    return ""


@contextlib.contextmanager
def raw_getattr() -> Any:
    """Module attributes as they are (fx's tracing hands out proxies for parameters)."""
    patched = nn.Module.__getattr__
    if patched is _symbolic_trace._orig_module_getattr:  # not tracing: nothing to undo
        yield
        return
    # NOTE: setting a class attribute of nn.Module costs ~0.1 ms (every subclass's cache)
    nn.Module.__getattr__ = _symbolic_trace._orig_module_getattr  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.__getattr__ = patched  # type: ignore[method-assign]


# --- the builder: manual nodes from Ops ------------------------------------------------


class _Builder:
    """Collects manual nodes, checking each one's shape as it is added."""

    def __init__(self, inputs: dict[str, tuple[Shape, str]]) -> None:
        self.nodes: list[Node] = []
        self.shapes: dict[str, Any] = {k: shape for k, (shape, _) in inputs.items()}
        self.inputs = tuple(inputs)
        self.params: dict[tuple[str, str], str] = {}
        self.module_outputs: dict[str, str] = {}
        self.probes: dict[str, Probe] = {}
        self.value_fx: dict[str, str] = {}
        self.leaves: dict[str, Ref] = {}  # model tensor name → its leaf node
        self.taken: set[str] = set(inputs)

    def unique(self, name: str) -> str:
        candidate, k = name, 1
        while candidate in self.taken:
            candidate, k = f"{name}#{k}", k + 1
        self.taken.add(candidate)
        return candidate

    def add(
        self,
        name: str,
        layer: Any,
        inputs: tuple[Ref, ...],
        act: Activation = IDENTITY,
        dtype: str | None = None,
    ) -> Ref:
        """A node; its value is floating unless every input is integer and it has no
        parameters (indexing or reshaping token ids keeps them integer)."""
        if dtype is None and getattr(layer, "output_dtype", None):
            dtype = layer.output_dtype
        if dtype is None:
            floating = layer.params or not inputs or any(r.dtype == "float" for r in inputs)
            dtype = "float" if floating or act is not IDENTITY else inputs[0].dtype
        if layer.params and not getattr(layer, "integer_inputs", False):
            bad = [r for r in inputs if r.dtype != "float"]  # (torch's weighted layers refuse)
            if bad:
                raise ValueError(
                    f"{layer!r} expects floating inputs, got {bad[0].dtype} values of shape "
                    f"{bad[0].shape} (integer inputs are token ids and indices: for Embedding, "
                    "indexing and shape ops)"
                )
        name = self.unique(name)
        try:
            shape = layer.shape(*(self.shapes[r.name] for r in inputs))
        except ValueError as err:
            raise ValueError(f"layer {name!r} ({layer!r}): {err}") from None
        shape = tuple(shape) if not _is_multi(shape) else tuple(tuple(s) for s in shape)
        self.shapes[name] = shape
        self.nodes.append(Node(name, layer, tuple(r.name for r in inputs), act))
        return Ref(name, shape, dtype)

    def leaf(self, p: Param) -> Ref:
        """The model tensor `p` as a value of the network (one leaf per tensor)."""
        if p.name not in self.leaves:
            value = p.array()
            if p.trainable and np.issubdtype(value.dtype, np.floating):
                ref = self.add(p.name, Parameter(value), ())
                self.params[(ref.name, "value")] = p.name
            else:
                ref = self.add(p.name, Constant(value), (), dtype=_kind(value.dtype))
            self.leaves[p.name] = ref
        return self.leaves[p.name]

    def emit(
        self,
        op: Op,
        name: str,
        built: dict[int, Any] | None = None,
        scope: str = "",
        probe: Any = None,
    ) -> Any:
        """The Op as nodes (its Op inputs first, as "<name>.<k>", or "<scope>.<op.name>" for
        a named one); a Ref, or for a layer with several outputs the structure `op.outputs`
        makes of one Select node per output. An Op whose `probe` is k gets the call's probe
        for output k (its value is that output, up to a reshape)."""
        built = {} if built is None else built
        if id(op) in built:
            return built[id(op)]
        if op.name is not None:
            name = f"{scope}.{op.name}" if scope else op.name
        inputs = []
        for k, i in enumerate(op.inputs):
            if isinstance(i, Op):
                i = self.emit(i, f"{name}.{k}", built, scope, probe)
            elif isinstance(i, Param):
                i = self.leaf(i)
            if not isinstance(i, Ref):
                raise UnsupportedModuleError(f"{name}: input {k} is not a tensor: {i!r}")
            inputs.append(i)
        if isinstance(op.layer, Activation):
            result = self.add(name, Identity(), tuple(inputs), act=op.layer)
        else:
            result = self.add(name, op.layer, tuple(inputs))
            for p, qualified in op.params.items():
                self.params[(result.name, p)] = qualified
            k_out = getattr(op.layer, "n_outputs", 1)
            if k_out > 1:
                kinds = getattr(op.layer, "output_dtypes", None) or (None,) * k_out
                outs = tuple(
                    self.add(f"{result.name}[{k}]", Select(k), (result,), dtype=kinds[k])
                    for k in range(k_out)
                )
                result = op.outputs(outs) if op.outputs else outs
        if probe is not None and op.probe is not None and isinstance(result, Ref):
            self.probes[result.name] = dataclasses.replace(probe, index=op.probe)
        built[id(op)] = result
        return result

    def fuse(self, output: str) -> tuple[list[Node], dict[str, str], dict[str, str]]:
        """Fuse each activation into the node that made its input when that node feeds it
        alone: a^(l) = f(layer(a^(l−1))), the notes' node. Returns the nodes, the renames
        (activation node → the node it joined) and the z map (fused node → its own name)."""
        consumers: dict[str, int] = {}
        for node in self.nodes:
            for i in node.inputs:
                consumers[i] = consumers.get(i, 0) + 1
        consumers[output] = consumers.get(output, 0) + 1
        by_name = {n.name: n for n in self.nodes}
        renamed: dict[str, str] = {}
        fused: dict[str, str] = {}
        out: list[Node] = []
        for node in self.nodes:
            node = dataclasses.replace(node, inputs=tuple(renamed.get(i, i) for i in node.inputs))
            is_act = isinstance(node.layer, Identity) and node.act is not IDENTITY
            if is_act and len(node.inputs) == 1:
                src = node.inputs[0]
                prev = by_name.get(src)
                if (
                    prev is not None
                    and out
                    and out[-1].name == src
                    and out[-1].act is IDENTITY
                    and prev.layer.n_inputs > 0
                    and getattr(prev.layer, "n_outputs", 1) == 1
                    and not isinstance(prev.layer, Select)
                    and consumers.get(src, 0) == 1
                ):
                    out[-1] = dataclasses.replace(out[-1], act=node.act, act_name=node.name)
                    renamed[node.name] = src
                    fused[src] = node.name
                    continue
            out.append(node)
        return out, renamed, fused


def _is_multi(shape: Any) -> bool:
    return isinstance(shape, tuple) and len(shape) > 0 and all(isinstance(s, tuple) for s in shape)


def _kind(dtype: Any) -> str:
    if np.issubdtype(dtype, np.floating):
        return "float"
    return "bool" if dtype == np.bool_ else "int"


def _traced_through(target: Any) -> bool:
    """A plain Python function outside torch with no registry row (one that torch.fx.wrap
    keeps whole, as torchvision's stochastic_depth): traced through instead."""
    if lookup_function(target) is not None or not inspect.isfunction(target):
        return False
    module = getattr(target, "__module__", "") or ""
    return not (module == "torch" or module.startswith(("torch.", "torch_ref", "manual_bp")))


def _mutated(kind: str, target: Any, args: tuple, kwargs: dict, module: Any) -> Any:
    """The proxy an in-place op writes into (x.add_(y), F.relu(x, inplace=True),
    nn.ReLU(inplace=True)), or None."""
    name = target if isinstance(target, str) else getattr(target, "__name__", "")
    inplace = (
        (name.endswith("_") and not name.endswith("__"))
        or kwargs.get("inplace") is True
        or (module is not None and getattr(module, "inplace", False) is True)
    )
    if kind == "call_function" and target in (
        operator.iadd,
        operator.isub,
        operator.imul,
        operator.itruediv,
    ):
        inplace = True
    if inplace and args and isinstance(args[0], fx.Proxy):
        return args[0]
    return None


def _first_ref(value: Any) -> Ref | None:
    if isinstance(value, Ref):
        return value
    if isinstance(value, (tuple, list)):
        return next((r for r in map(_first_ref, value) if r is not None), None)
    return None


def _has_op(value: Any) -> bool:
    if isinstance(value, Op):
        return True
    return isinstance(value, (tuple, list)) and any(_has_op(v) for v in value)


def _has_tensor(value: Any) -> bool:
    if isinstance(value, (Ref, Param, Op)):
        return True
    if isinstance(value, (tuple, list)):
        return any(_has_tensor(v) for v in value)
    if isinstance(value, dict):
        return any(_has_tensor(v) for v in value.values())
    return False


def _ours(err: Exception) -> Exception:
    """Mark an error as the oracle's own (worded for the user), not one raised by torch's
    code that the trace ran through."""
    err.oracle = True  # type: ignore[attr-defined]
    return err


# --- the conversion of one call ------------------------------------------------------


class _Converter:
    """Looks a call up in the registry, runs its rule, and turns its Op into nodes."""

    def __init__(self, model: nn.Module, builder: _Builder) -> None:
        self.model = model
        self.b = builder
        self.names: dict[int, str] = {}  # id(tensor) → qualified name (first of tied names)
        for name, p in model.named_parameters(remove_duplicate=False):
            self.names.setdefault(id(p), name)
        for name, t in model.named_buffers(remove_duplicate=False):
            self.names.setdefault(id(t), name)
        self.constants: dict[str, torch.Tensor] = {}
        self.calls: dict[Any, int] = {}  # probe counters
        #: a context in which module attributes read as they are (the tracer sets its own)
        self.raw_attributes: Callable[[], Any] = raw_getattr

    def model_tensor(self, t: torch.Tensor, fallback: str | None = None) -> Param:
        name = self.names.get(id(t))
        if name is None:  # a tensor created in forward(), or a plain tensor attribute
            name = fallback or f"_oracle_constant_{len(self.constants)}"
            self.names[id(t)] = name
            self.constants[name] = t  # (held here: its id stays unique while we trace)
        if name in self.constants:
            return Param(name, t, False)
        return Param(name, t, bool(t.requires_grad) and isinstance(t, nn.Parameter))

    def tensors_to_params(self, value: Any, fallback: str) -> Any:
        if isinstance(value, torch.Tensor):
            return self.model_tensor(value, fallback)
        if isinstance(value, (tuple, list)):
            return type(value)(self.tensors_to_params(v, fallback) for v in value)
        return value

    def call(
        self,
        entry: OpEntry | None,
        what: str,
        where: Callable[[], str],
        name: str,
        args: tuple,
        kwargs: dict,
        module: nn.Module | None = None,
        probe: Probe | None = None,
        scope: str = "",
        in_torch_module: bool = False,
    ) -> Any:
        """Run `entry`'s rule on the call and build its nodes; errors name the call and line.
        `scope`: the module the call sits in (named nodes of a composite go under it);
        `in_torch_module`: that module is a torch.nn module with no row (its refusal lists
        the modules that have one)."""
        if entry is None:
            modules = f"; supported modules: {supported_modules()}" if in_torch_module else ""
            raise _ours(
                UnsupportedModuleError(
                    f"{what}{where()} is not supported (no registry row); see the README's "
                    f"'What is supported' table{modules}"
                )
            )
        try:
            if module is not None:
                with self.raw_attributes():
                    module_kwargs = entry.module_kwargs(module)
                extra = {
                    k: self.tensors_to_params(v, f"{name}.{k}") for k, v in module_kwargs.items()
                }
                result = entry.rule(*args, **kwargs, **extra)
            else:
                result = entry.rule(*args, **kwargs)
            return self.build(result, name, probe, scope)
        except UnsupportedModuleError as err:
            raise _ours(UnsupportedModuleError(f"{what}{where()}: {err}")) from None
        except TypeError as err:  # an option the rule does not take
            raise _ours(
                UnsupportedModuleError(f"{what}{where()}: unsupported arguments ({err})")
            ) from None
        except ValueError as err:
            raise _ours(ValueError(f"{what}{where()}: {err}")) from None

    def build(
        self,
        result: Any,
        name: str,
        probe: Probe | None,
        scope: str = "",
        built: dict[int, Any] | None = None,
    ) -> Any:
        """Nodes for an Op (and for Ops inside a structure, sharing what they share); Refs,
        Params and plain values as they are. A named Op inside a rule's composite is named
        "<scope>.<op name>" (nn.MultiheadAttention's "attn.out_proj")."""
        built = {} if built is None else built
        if isinstance(result, Op):
            ref = self.b.emit(result, name, built, scope, probe)
            if probe is not None:
                self._probe(ref, probe)
            return ref
        if isinstance(result, (tuple, list)) and _has_op(result):
            out = []
            for k, r in enumerate(result):
                if isinstance(r, Op):
                    ref = self.b.emit(r, f"{name}.{k}", built, scope, probe)
                    if probe is not None:
                        self._probe(ref, dataclasses.replace(probe, index=k))
                    out.append(ref)
                else:
                    out.append(
                        self.build(r, f"{name}.{k}", None, scope, built) if _has_op(r) else r
                    )
            return type(result)(out)
        return result

    def _probe(self, value: Any, probe: Probe, index: int | None = None) -> None:
        if isinstance(value, Ref):
            self.b.probes.setdefault(value.name, dataclasses.replace(probe, index=index))
        elif isinstance(value, (tuple, list)):
            for k, v in enumerate(value):
                self._probe(v, probe, k if index is None else index)

    def next_call(self, kind: str, target: Any) -> Probe:
        k = self.calls.get((kind, target), 0)
        self.calls[(kind, target)] = k + 1
        return Probe(kind, target, k)


# --- the tracer ----------------------------------------------------------------------


class _Proxy(fx.Proxy):
    """A traced tensor whose sizes are known: x.shape, x.ndim, x.dtype are plain values."""

    def __getattr__(self, k: str) -> Any:
        if k in PLAIN_ATTRIBUTES:
            value = self.tracer.values.get(self.node)  # type: ignore[attr-defined]
            if isinstance(value, Ref) and k == "dtype" and value.dtype == "float":
                return self.tracer.float_dtype  # type: ignore[attr-defined]
            if isinstance(value, (Ref, Param)):
                return attribute(value, k)
        return super().__getattr__(k)

    def __len__(self) -> int:
        value = self.tracer.values.get(self.node)  # type: ignore[attr-defined]
        if isinstance(value, (Ref, Param)) and value.ndim:
            return value.shape[0]
        raise TypeError("len() of a 0-d tensor")


class _Tracer(fx.Tracer):
    """fx tracing that converts each call as it is recorded (see the module docstring)."""

    def __init__(self, converter: _Converter, inputs: Sequence[Ref], tag_functions: bool) -> None:
        super().__init__(autowrap_functions=())
        self.conv = converter
        self.inputs = list(inputs)
        self.values: dict[fx.Node, Any] = {}
        self.placeholders = 0
        #: values that share memory with another (views, ops handing back their input)
        self.aliased: set[str] = set()
        #: what x.dtype says of a floating value: the dtype your model computes in
        self.float_dtype = torch.float32
        self.concrete: dict[str, Any] = {}
        self.tag_functions = tag_functions
        self.fn_regions: dict[int, tuple[str, list[str | None], list[str]]] = {}
        self.raw = False  # True: fx's attribute hook hands out attributes as they are
        converter.raw_attributes = self.raw_attributes

    @contextlib.contextmanager
    def raw_attributes(self) -> Any:
        """Module attributes as they are while tracing, by a flag in fx's own getattr hook
        (cheaper than restoring nn.Module.__getattr__, which costs ~0.1 ms a time)."""
        was, self.raw = self.raw, True
        try:
            yield
        finally:
            self.raw = was

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict) -> Any:
        return attr_val if self.raw else super().getattr(attr, attr_val, parameter_proxy_cache)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return lookup_module(type(m)) is not None

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        """A torch.nn module without a row is traced through; if its forward cannot be, the
        error names it."""
        if lookup_module(type(m)) is not None or not type(m).__module__.startswith("torch.nn"):
            return super().call_module(m, forward, args, kwargs)
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception as err:
            if getattr(err, "oracle", False):
                raise
            name = self.path_of_module(m)
            raise _ours(
                UnsupportedModuleError(
                    f"module {name!r} ({type(m).__name__}){_user_line()} is not supported: it "
                    f"has no registry row, and its forward could not be traced through "
                    f"({type(err).__name__}: {err}); supported modules: {supported_modules()}"
                )
            ) from None

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _Proxy(node, self)

    def create_arg(self, a: Any) -> Any:
        # NOTE: fx would store a tensor created in forward() on the model itself (setattr
        # on the root); keep it here instead: the caller's model is never changed.
        if isinstance(a, torch.Tensor):
            p = self.conv.model_tensor(a)
            if p.name in self.conv.constants:
                return self.create_node("get_attr", p.name, (), {})
        return super().create_arg(a)

    def _value(self, a: Any) -> Any:
        if isinstance(a, fx.Proxy):
            return self.values[a.node]
        if isinstance(a, torch.Tensor):
            return self.conv.model_tensor(a)
        if isinstance(a, (tuple, list)) and not hasattr(a, "_fields"):
            return type(a)(self._value(v) for v in a)
        if isinstance(a, dict):
            return {k: self._value(v) for k, v in a.items()}
        return a

    def _scope(self) -> str:
        path, cls = self.scope.module_path, self.scope.module_type
        if cls is None:
            return ""
        return f" in module {path or '(the model)'!r} ({cls.__name__})"

    def create_proxy(
        self,
        kind: str,
        target: Any,
        args: tuple,
        kwargs: dict,
        name: str | None = None,
        type_expr: Any = None,
        proxy_factory_fn: Any = None,
    ) -> Any:
        if kind == "placeholder":
            proxy = super().create_proxy(
                kind, target, args, kwargs, name, type_expr, proxy_factory_fn
            )
            if self.placeholders < len(self.inputs):
                self.values[proxy.node] = self.inputs[self.placeholders]
            else:  # an argument left at its default (fx names it "<name>_<k>")
                self.values[proxy.node] = self.concrete.get(target.rsplit("_", 1)[0])
            self.placeholders += 1
            return proxy
        if kind == "get_attr":
            proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, None)
            with self.raw_attributes():
                obj: Any = self.root
                for part in target.split("."):
                    obj = getattr(obj, part)
            self.values[proxy.node] = self.conv.model_tensor(obj, target)
            return proxy
        if kind not in ("call_function", "call_method", "call_module"):
            return super().create_proxy(
                kind, target, args, kwargs, name, type_expr, proxy_factory_fn
            )
        vargs, vkwargs = self._value(args), self._value(kwargs)
        if kind == "call_function" and not _has_tensor((vargs, vkwargs)):
            return target(*vargs, **vkwargs)  # sizes and numbers: computed here
        if kind == "call_function" and _traced_through(target):
            return target(*args, **kwargs)  # a function of yours that torch.fx.wrap kept whole
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        node = proxy.node
        if kind == "call_module":
            module = self.root.get_submodule(target)
            what = f"module {target!r} ({type(module).__name__})"
            entry, probe = lookup_module(type(module)), self.conv.next_call("module", target)
            node_name = target
        else:
            module = None
            entry = lookup_method(target) if kind == "call_method" else lookup_function(target)
            what = f"{torch_name(target)} (node {node.name!r}){self._scope()}"
            probe = self.conv.next_call("function", target) if kind == "call_function" else None
            node_name = node.name
        before = len(self.conv.b.nodes)
        mutated = _mutated(kind, target, args, kwargs, module)
        scope = target if kind == "call_module" else self.scope.module_path
        torch_module = (self.scope.module_type or object).__module__.startswith("torch.nn")
        result = self.conv.call(
            entry, what, _user_line, node_name, vargs, vkwargs, module, probe, scope, torch_module
        )
        if mutated is not None and result is self.values.get(mutated.node):
            mutated = None  # the op wrote nothing (in-place dropout in evaluation mode)
        if mutated is not None:
            self._check_mutation(mutated, what)
        if not _has_tensor(result):
            self.graph.erase_node(node)
            return result
        if kind == "call_module":
            self._module_outputs(target, result)
        if self.tag_functions:
            self._tag(node, before)
        self._track_views(entry, vargs, result)
        if mutated is not None and isinstance(result, Ref):
            self.values[mutated.node] = result  # later uses of the mutated tensor see this
        return self._bind(proxy, result)

    def _track_views(self, entry: OpEntry | None, args: tuple, result: Any) -> None:
        """Remember which values alias which: views (reshape, transpose, slicing, ...) and
        ops that hand back their input itself (x.contiguous(), nn.Identity)."""
        outs = (
            [result]
            if isinstance(result, Ref)
            else [r for r in result if isinstance(r, Ref)]
            if isinstance(result, (tuple, list))
            else []
        )
        ins = [a for a in args if isinstance(a, Ref)]
        for out in outs:
            if any(out.name == a.name for a in ins) or (entry is not None and entry.view):
                self.aliased.add(out.name)
                self.aliased.update(a.name for a in ins)

    def _check_mutation(self, mutated: fx.Proxy, what: str) -> None:
        """An in-place op is its out-of-place twin, the mutated tensor rebound to the result;
        refused where that is not what torch computes: the mutated tensor is your input or
        a model tensor, or it shares memory with another value (a view, or itself)."""
        value = self.values.get(mutated.node)
        if isinstance(value, Param) or (isinstance(value, Ref) and value in self.inputs):
            name = value.name
            raise _ours(
                UnsupportedModuleError(
                    f"{what}{_user_line()} modifies {name!r} in place (an input or a tensor of "
                    "the model); use the out-of-place form"
                )
            )
        if isinstance(value, Ref) and value.name in self.aliased:
            raise _ours(
                UnsupportedModuleError(
                    f"{what}{_user_line()} modifies in place a tensor that shares memory with "
                    "another value (a view such as reshape/transpose/slicing, or the same "
                    "tensor handed back); the oracle cannot follow that aliasing: use the "
                    "out-of-place form"
                )
            )

    def _module_outputs(self, target: str, result: Any) -> None:
        outputs = self.conv.b.module_outputs
        key, k = target, 1
        while key in outputs:
            key, k = f"{target}#{k}", k + 1
        first = _first_ref(result)  # a module returning a tuple: its first output
        if first is not None:
            outputs[key] = first.name

    def _bind(self, proxy: fx.Proxy, result: Any) -> Any:
        """The proxy for a Ref; for a structure of Refs, a structure of proxies (one getitem
        node per entry) that your code can index and unpack."""
        if isinstance(result, (Ref, Param)):
            self.values[proxy.node] = result
            if isinstance(result, Ref):
                self.conv.b.value_fx.setdefault(result.name, proxy.node.name)
            return proxy
        if isinstance(result, (tuple, list)):
            self.values[proxy.node] = result
            items = []
            for k, r in enumerate(result):
                if _has_tensor(r):
                    item = super().create_proxy("call_function", operator.getitem, (proxy, k), {})
                    items.append(self._bind(item, r))
                else:
                    items.append(r)
            return type(result)(items)
        return result

    def _tag(self, node: fx.Node, before: int) -> None:
        """Record the nodes built inside a custom autograd.Function's forward, and (at its
        first op) the values it was called with."""
        f = sys._getframe(2)
        while f is not None:
            ctx = f.f_locals.get("ctx") if f.f_code.co_name == "forward" else None
            cls = getattr(type(ctx), "_forward_cls", None) if ctx is not None else None
            if cls is not None:
                if id(ctx) not in self.fn_regions:
                    self.fn_regions[id(ctx)] = (cls.__name__, self._arguments(f), [])
                self.fn_regions[id(ctx)][2].extend(n.name for n in self.conv.b.nodes[before:])
                return
            f = f.f_back

    def _arguments(self, frame: FrameType) -> list[str | None]:
        """The value names a Function's forward(ctx, *args) was called with (None for an
        argument that is not a tensor)."""
        code = frame.f_code
        names = list(code.co_varnames[1 : code.co_argcount])
        values = [frame.f_locals.get(n) for n in names]
        if code.co_flags & inspect.CO_VARARGS:
            values.extend(frame.f_locals.get(code.co_varnames[code.co_argcount], ()))
        out: list[str | None] = []
        for v in values:
            value = self.values.get(v.node) if isinstance(v, fx.Proxy) else None
            if isinstance(value, Param):
                value = self.conv.b.leaf(value)
            out.append(value.name if isinstance(value, Ref) else None)
        return out


@dataclass(frozen=True)
class FunctionCall:
    """A call of a custom autograd.Function in the forward: its class, the values it was
    called with (None for a non-tensor argument), the nodes its forward built, and the
    values it returned (those nodes' values read outside it, or the network's output)."""

    cls: str
    inputs: tuple[str | None, ...]
    nodes: tuple[str, ...]
    outputs: tuple[str, ...]


# --- entry points --------------------------------------------------------------------

_HOOKS = ("_forward_pre_hooks", "_forward_hooks", "_backward_pre_hooks", "_backward_hooks")


def refuse_hooks(model: nn.Module) -> None:
    """A hook can change what a module computes or what its backward returns, and the trace
    does not run hooks: the oracle would answer for another function. Refuse."""
    import torch.nn.modules.module as module_globals

    for kind in _HOOKS:
        if getattr(module_globals, f"_global{kind}"):
            raise UnsupportedModuleError(
                f"a global module hook is registered ({kind.strip('_').replace('_', ' ')}); "
                "the oracle cannot see what hooks do: remove it for the check"
            )
    for name, m in model.named_modules():
        for kind in _HOOKS:
            if getattr(m, kind, None):
                raise UnsupportedModuleError(
                    f"module {name or type(model).__name__!r} ({type(m).__name__}) has "
                    f"{kind.strip('_').replace('_', ' ')}; the oracle cannot see what hooks do: "
                    "remove them for the check"
                )


def _concrete_args(model: nn.Module, n_inputs: int) -> dict[str, Any]:
    """forward()'s arguments beyond the inputs given take their defaults."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return {}
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        return {}
    extra = params[n_inputs:]
    missing = [p.name for p in extra if p.default is inspect.Parameter.empty]
    if missing or len(params) < n_inputs:
        names = ", ".join(p.name for p in params)
        raise ValueError(
            f"{type(model).__name__}.forward({names}) takes {len(params) - len(extra)}"
            f"{'+' if extra else ''} tensor inputs without defaults, got {n_inputs} "
            f"(missing: {', '.join(missing) or 'none'})"
        )
    return {p.name: p.default for p in extra}


def _sequential_children(model: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """An nn.Sequential whose children all have registry rows: convertible without tracing."""
    if type(model) is not nn.Sequential:
        return None
    children = list(model.named_children())
    if not children or any(lookup_module(type(m)) is None for _, m in children):
        return None
    return children


def capture(
    model: nn.Module,
    inputs: Sequence[tuple[Shape, str]],
    *,
    tag_functions: bool = False,
) -> Captured:
    """The manual twin of `model` for inputs of these (shape, dtype kind) — dtype kind
    "float", "int" or "bool".

    Raises UnsupportedModuleError for a call with no registry row (naming it, the module it
    sits in and your line), and ValueError for a shape that does not fit or a failing check.
    With `tag_functions`, records which nodes each custom autograd.Function call built.
    """
    refuse_hooks(model)
    names = [INPUT] if len(inputs) == 1 else [f"{INPUT}.{k}" for k in range(len(inputs))]
    b = _Builder({n: (tuple(s), kind) for n, (s, kind) in zip(names, inputs, strict=True)})
    conv = _Converter(model, b)
    refs = [Ref(n, tuple(s), kind) for n, (s, kind) in zip(names, inputs, strict=True)]
    children = None if tag_functions else _sequential_children(model)
    regions: dict[int, tuple[str, list[str | None], list[str]]] = {}
    if children is not None:
        graph, output = _capture_sequential(conv, children, refs[0])
    else:
        if isinstance(model, nn.Sequential) and len(model) == 0:
            raise ValueError(
                "expected a model with at least one layer, got an empty nn.Sequential() "
                "(nothing to differentiate)"
            )
        tracer = _Tracer(conv, refs, tag_functions)
        tracer.concrete = _concrete_args(model, len(refs))
        tracer.float_dtype = next(
            (p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32
        )
        rng = torch.get_rng_state()
        try:
            with _recorded_whole(tracer):
                graph = tracer.trace(model, concrete_args=tracer.concrete or None)
        except Exception as err:
            raise _traced_error(model, refs, err) from None
        finally:
            drew = not torch.equal(rng, torch.get_rng_state())
            torch.set_rng_state(rng)  # the caller's random state, as it was
        if drew:
            raise ValueError(
                f"{type(model).__name__}.forward draws random numbers (dropout or stochastic "
                "depth written by hand, torch.rand, bernoulli_, ... in training mode): the "
                "manual pass and autograd would see different draws, so no reference gradient "
                "exists; expected model.eval() or a forward without random draws"
            )
        out_node = next(n for n in graph.nodes if n.op == "output")
        output = fx.node.map_arg(out_node.args[0], lambda n: tracer.values.get(n))
        regions = tracer.fn_regions
    if isinstance(output, Ref) and output.name in names:  # the input itself (eval dropout)
        output = b.add("output", Identity(), (output,))
    if not isinstance(output, Ref):
        raise UnsupportedModuleError(
            f"{type(model).__name__}.forward must return one tensor computed from its input, "
            f"got {type(output).__name__}"
        )
    if tag_functions:  # keep every node as built: a Function's nodes stay its own
        nodes, renamed, fused = list(b.nodes), {}, {}
    else:
        nodes, renamed, fused = b.fuse(output.name)
    network = Network(nodes, output=renamed.get(output.name, output.name), inputs=names)
    module_outputs = {m: renamed.get(n, n) for m, n in b.module_outputs.items()}
    value_fx = {renamed.get(n, n): f for n, f in b.value_fx.items() if n not in fused}
    z_fx = {n: b.value_fx[n] for n in fused if n in b.value_fx}
    for n, act in fused.items():  # the fused node's a is the activation's value
        if act in b.value_fx:
            value_fx[n] = b.value_fx[act]
    probes: dict[str, Probe] = {}
    for n, p in b.probes.items():  # a fused node keeps its layer's probe (its z)
        probes.setdefault(renamed.get(n, n), p)
    delta_nodes = [n.name for n in network.nodes if n.layer.reports_delta]
    functions = [
        FunctionCall(cls, tuple(ins), tuple(region), _region_outputs(region, network))
        for cls, ins, region in regions.values()
    ]
    return Captured(
        network,
        b.params,
        module_outputs,
        delta_nodes,
        probes,
        value_fx,
        z_fx,
        graph,
        conv.constants,
        b.shapes,
        functions,
    )


#: torch's private helpers that nn.MultiheadAttention's forward calls on its masks: recorded
#: as one call each while tracing (traced into, they would test a Proxy's type)
_WHOLE = ((F, "_canonical_mask"), (F, "_none_or_dtype"))


@contextlib.contextmanager
def _recorded_whole(tracer: fx.Tracer) -> Any:
    """While tracing, the _WHOLE functions called on traced values become one call each."""
    registry()  # (loaded first: its rows and names must hold the functions themselves)
    torch_name(F._canonical_mask)
    originals = [(module, name, getattr(module, name)) for module, name in _WHOLE]

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        def recorded(*args: Any, **kwargs: Any) -> Any:
            found: list[bool] = []
            fx.node.map_aggregate((args, kwargs), lambda a: found.append(isinstance(a, fx.Proxy)))
            if any(found):
                return tracer.create_proxy("call_function", fn, args, kwargs)
            return fn(*args, **kwargs)

        return recorded

    for module, name, fn in originals:
        setattr(module, name, wrap(fn))
    try:
        yield
    finally:
        for module, name, fn in originals:
            setattr(module, name, fn)


def _traced_error(model: nn.Module, refs: list[Ref], err: Exception) -> Exception:
    """An error raised while tracing, worded for the user: ours as they are; a failing check
    in the forward (assert, torch._assert, raise ValueError) as a ValueError naming the
    line; anything else (data-dependent control flow, ...) as UnsupportedModuleError."""
    if getattr(err, "oracle", False) or isinstance(err, UnsupportedModuleError):
        return err
    line, name = _user_line_of(err), type(model).__name__
    shapes = [r.shape for r in refs]
    if isinstance(err, AssertionError) or (
        isinstance(err, ValueError) and not isinstance(err, fx.proxy.TraceError)
    ):
        detail = f": {err}" if str(err) else ""
        return ValueError(
            f"a check in {name}.forward failed{line}{detail} (evaluated on the input "
            f"shapes {shapes})"
        )
    return UnsupportedModuleError(
        f"{name} cannot be traced by torch.fx{line} ({type(err).__name__}: {err}); the "
        "oracle needs a forward() without data-dependent control flow"
    )


def _region_outputs(region: list[str], network: Network) -> tuple[str, ...]:
    """A Function's outputs: its values read outside it, or the network's output."""
    inside = set(region)
    used_outside = {i for n in network.nodes if n.name not in inside for i in n.inputs}
    return tuple(n for n in region if n in used_outside or n == network.output)


def _capture_sequential(
    conv: _Converter, children: list[tuple[str, nn.Module]], x: Ref
) -> tuple[fx.Graph, Any]:
    """The fast path: the children in order, no tracing; the fx graph written directly."""
    graph = fx.Graph()
    node = graph.placeholder("input")
    value: Any = x
    for name, module in children:
        what = f"module {name!r} ({type(module).__name__})"
        probe = conv.next_call("module", name)
        entry = lookup_module(type(module))
        value = conv.call(entry, what, lambda: "", name, (value,), {}, module, probe)
        if not isinstance(value, Ref):
            raise UnsupportedModuleError(f"{what} must return one tensor in an nn.Sequential")
        node = graph.call_module(name, (node,))
        conv.b.module_outputs[name] = value.name
        conv.b.value_fx.setdefault(value.name, node.name)
    graph.output(node)
    return graph, value
