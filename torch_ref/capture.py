"""Capture: the pieces that turn recorded torch calls into a manual_bp Network.

`torch_ref.record` runs the program (the float64 twin of the model and its loss, or a
function) and hands each call that carries gradient to the `_Converter` here: it looks the
call up in the op registry, runs the row's rule on the call's arguments as the registry
sees them (`Ref` for a tensor computed in the run, `Param` for a tensor of the model by its
qualified name, plain values), and the `_Builder` turns the rule's Op into nodes, checking
each node's shape as it is added. Errors name the call, the module it sits in and the
user's line.

`capture(model, inputs)` records a model alone on inputs of given shapes (or given tensors)
and returns its network: what tests and tools use to look at the nodes a model becomes.
Nothing the caller owns is changed: the model recorded is a float64 deep copy.
"""

from __future__ import annotations

import dataclasses
import inspect
import linecache
import os
import sys
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from types import FrameType
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn as nn

import manual_bp
from manual_bp.network import Node
from manual_bp.ops.activations import IDENTITY, Activation
from manual_bp.ops.graph import Constant, Parameter, Select
from manual_bp.ops.shape import Identity
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry import (
    supported_modules,
)
from torch_ref.registry.core import Op, OpEntry, Param, Ref, Shape
from torch_ref.twin import module_walk, named_members

INPUT = "input"

#: the types of a module's arguments that hold no tensor (a rule takes them as they are)
_PLAIN = frozenset({int, float, bool, str, type(None)})


class Probe(NamedTuple):
    """Where the autograd side finds the value a manual node computed, in the user's own
    model: output `index` of the `call`-th call (0-based) of the leaf module `target`
    (kind "module"), or of the torch function `target` (kind "function"). (A named tuple:
    one is made for every call the record sees.)"""

    kind: str
    target: Any
    call: int
    index: int | None = None
    #: the output permuted by these dims is the node's value, up to a reshape
    dims: tuple[int, ...] | None = None


# --- where in the user's code --------------------------------------------------------

_OURS = tuple(
    os.path.dirname(p) + os.sep
    for p in (torch.__file__, manual_bp.__file__, __file__, inspect.__file__)
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
        self.probed: dict[Any, list[str]] = {}  # probe target → its nodes, in order
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
        params = layer.params
        if dtype is None:
            dtype = getattr(layer, "output_dtype", None) or None
        if dtype is None:
            kinds = [r.dtype for r in inputs]
            floating = params or not inputs or "float" in kinds
            dtype = "float" if floating or act is not IDENTITY else kinds[0]
        if params and not getattr(layer, "integer_inputs", False):
            bad = [r for r in inputs if r.dtype != "float"]  # (torch's weighted layers refuse)
            if bad:
                raise ValueError(
                    f"{layer!r} expects floating inputs, got {bad[0].dtype} values of shape "
                    f"{bad[0].shape} (integer inputs are token ids and indices: for Embedding, "
                    "indexing and shape ops)"
                )
        if name in self.taken:
            name = self.unique(name)
        else:
            self.taken.add(name)
        names = tuple([r.name for r in inputs])
        shapes = self.shapes
        try:
            shape = layer.shape(*[shapes[n] for n in names])
        except ValueError as err:
            raise ValueError(f"layer {name!r} ({layer!r}): {err}") from None
        if type(shape) is not tuple or (shape and isinstance(shape[0], tuple)):  # (rarely)
            shape = tuple(shape) if not _is_multi(shape) else tuple(tuple(s) for s in shape)
        shapes[name] = shape
        self.nodes.append(Node(name, layer, names, act))
        return Ref(name, shape, dtype)

    def probe(
        self,
        node: str,
        probe: Probe,
        index: int | None,
        replace: bool = True,
        dims: tuple[int, ...] | None = None,
    ) -> None:
        """Where the autograd side finds node's value: output `index` of `probe`'s call
        (permuted by `dims`)."""
        if node in self.probes:
            if not replace:
                return
        else:
            self.probed.setdefault(probe.target, []).append(node)
        if probe.index != index or probe.dims != dims:
            probe = Probe(probe.kind, probe.target, probe.call, index, dims)
        self.probes[node] = probe

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
            self.probe(result.name, probe, op.probe, dims=op.probe_dims)
        built[id(op)] = result
        return result

    def fuse(
        self, output: str, region_of: dict[str, Any] | None = None
    ) -> tuple[list[Node], dict[str, str], dict[str, str]]:
        """Fuse each activation into the node that made its input when that node feeds it
        alone: a^(l) = f(layer(a^(l−1))), the textbook node. Returns the nodes, the renames
        (activation node → the node it joined) and the z map (fused node → its own name)."""
        consumers = Counter(chain.from_iterable(node.inputs for node in self.nodes))
        consumers[output] += 1
        renamed: dict[str, str] = {}
        fused: dict[str, str] = {}
        out: list[Node] = []
        for node in self.nodes:
            if renamed and not renamed.keys().isdisjoint(node.inputs):
                node = dataclasses.replace(
                    node, inputs=tuple(renamed.get(i, i) for i in node.inputs)
                )
            is_act = isinstance(node.layer, Identity) and node.act is not IDENTITY
            if is_act and len(node.inputs) == 1 and out and out[-1].name == node.inputs[0]:
                src, prev = node.inputs[0], out[-1]  # (its input made just before it)
                if (
                    prev.act is IDENTITY
                    and prev.layer.n_inputs > 0
                    and getattr(prev.layer, "n_outputs", 1) == 1
                    and not isinstance(prev.layer, Select)
                    and consumers.get(src, 0) == 1
                    and (region_of or {}).get(src) is (region_of or {}).get(node.name)
                ):
                    out[-1] = dataclasses.replace(prev, act=node.act, act_name=node.name)
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


def _has_op(value: Any) -> bool:
    if isinstance(value, Op):
        return True
    return isinstance(value, (tuple, list)) and any(_has_op(v) for v in value)


def _ours(err: Exception) -> Exception:
    """Mark an error as the oracle's own (worded for the user), not one raised by torch's
    code that the trace ran through."""
    err.oracle = True  # type: ignore[attr-defined]
    return err


# --- the conversion of one call ------------------------------------------------------


class _Converter:
    """Looks a call up in the registry, runs its rule, and turns its Op into nodes."""

    def __init__(
        self,
        model: nn.Module,
        builder: _Builder,
        modules: list[tuple[str, nn.Module]] | None = None,
    ) -> None:
        """`modules`: module_walk(model), where the caller has it already."""
        self.model = model
        self.b = builder
        self.names: dict[int, str] = {}  # id(tensor) → qualified name (first of tied names)
        modules = module_walk(model) if modules is None else modules
        for table in ("_parameters", "_buffers"):  # (named_parameters(), then named_buffers())
            for name, t in named_members(model, modules, table):
                self.names.setdefault(id(t), name)
        self.constants: dict[str, torch.Tensor] = {}

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
            return type(value)([self.tensors_to_params(v, fallback) for v in value])
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
        module_kwargs: dict[str, Any] | None = None,
    ) -> Any:
        """Run `entry`'s rule on the call and build its nodes; errors name the call and line.
        `scope`: the module the call sits in (named nodes of a composite go under it);
        `in_torch_module`: that module is a torch.nn module with no row (its refusal lists
        the modules that have one); `module_kwargs`: the module's arguments to the rule, where
        the caller has taken them already."""
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
                if module_kwargs is None:
                    module_kwargs = entry.module_kwargs(module)
                extra = {
                    k: v  # (eps, num_heads, ...: as they are)
                    if type(v) in _PLAIN
                    else self.tensors_to_params(v, f"{name}.{k}")
                    for k, v in module_kwargs.items()
                }
                result = entry.rule(*args, **kwargs, **extra)
            else:
                result = entry.rule(*args, **kwargs)
            return self.build(result, name, probe, scope)
        except UnsupportedModuleError as err:  # (NotCovered stays NotCovered: see record)
            raise _ours(type(err)(f"{what}{where()}: {err}")) from None
        except TypeError as err:  # an option the rule does not take
            if getattr(err, "oracle", False):
                raise
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
                        self._probe(ref, Probe(probe.kind, probe.target, probe.call, k))
                    out.append(ref)
                else:
                    out.append(
                        self.build(r, f"{name}.{k}", None, scope, built) if _has_op(r) else r
                    )
            return type(result)(out)
        return result

    def _probe(self, value: Any, probe: Probe, index: int | None = None) -> None:
        if isinstance(value, Ref):
            self.b.probe(value.name, probe, index, replace=False)
        elif isinstance(value, (tuple, list)):
            for k, v in enumerate(value):
                self._probe(v, probe, k if index is None else index)


@dataclass(frozen=True)
class FunctionCall:
    """A call of a custom autograd.Function in the forward: its class, the values it was
    called with (None for a non-tensor argument), the nodes its forward built, and the
    values it returned (those nodes' values read outside it, or the network's output)."""

    cls: str
    inputs: tuple[str | None, ...]
    nodes: tuple[str, ...]
    outputs: tuple[str, ...]


# --- a model's network, for tests and tools ---------------------------------------------


def capture(model: nn.Module, inputs: Sequence[Any]) -> Any:
    """The recorded network of `model` alone (its output the network's output) on these
    inputs: tensors, or (shape, kind) pairs — kind "float" (drawn N(0, 1), seeded), "int" or
    "bool" (zeros). Returns a torch_ref.record.Recording."""
    from torch_ref.problem import twin_of, unwrap
    from torch_ref.record import record

    g = torch.Generator().manual_seed(0)
    xs = []
    for x in inputs:
        if isinstance(x, torch.Tensor):
            xs.append(x.detach().to(torch.float64) if x.is_floating_point() else x.detach())
            continue
        shape, kind = x
        if kind == "float":
            xs.append(torch.randn(tuple(shape), generator=g, dtype=torch.float64))
        else:
            xs.append(torch.zeros(tuple(shape), dtype=torch.bool if kind == "bool" else torch.long))
    twin = twin_of(unwrap(model))
    names = [INPUT] if len(xs) == 1 else [f"{INPUT}.{k}" for k in range(len(xs))]
    twins = {
        n: x.clone().requires_grad_(x.is_floating_point()) for n, x in zip(names, xs, strict=True)
    }
    with torch.enable_grad():
        return record(
            twin, tuple(twins.values()), {}, model=twin, inputs=twins, live_inputs=True,
            what=f"{type(model).__name__}.forward",
        )  # fmt: skip
