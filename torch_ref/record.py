"""Record: the program that runs, op by op, as a manual Network.

The oracle checks the ops that a forward executed on this batch, with the values they saw,
which is what autograd records too. `record(fn, args, kwargs)` calls `fn` (the float64 twin
of the user's model and its loss, or a user's function) under a `TorchFunctionMode`: every
torch call is run as it is, and where its output carries gradient the call is looked up in
the op registry, whose rule builds the manual nodes (torch_ref.capture). Modules with a row
of their own (nn.Linear, nn.LSTM, nn.MultiheadAttention, ...) are recorded whole by forward
hooks: they are the readable formulas, and the names δ is reported under.

What autograd treats as a constant is a constant here, decided the way autograd decides it:

- an output that does not require grad (an op under `no_grad`, `.detach()`, comparisons,
  integer casts, factory calls, anything on tensors that carry no gradient) is a constant
  of the manual network, its value the one torch computed;
- inside a custom `autograd.Function`'s forward (which autograd runs without grad) values
  carry gradient where the Function's inputs do, and the nodes built there are the
  Function's (torch_ref.custom compares them with its backward);
- an in-place op is its out-of-place twin with the written tensor rebound to the result;
  torch's version counters tell when a tensor was changed behind the record's back (through
  a view, or by an op that was not recorded), and such a tensor is refused where it is used.

Casts are float64 in the twin: a floating `dtype` argument (`.to(torch.float32)`,
`softmax(x, dtype=torch.float32)`, `torch.zeros(..., dtype=torch.half)`), `.float()` /
`.half()` / `.bfloat16()`, and floating tensors of another dtype met as operands (a float32
attribute that is not a buffer) all become float64, factory calls without a dtype make
float64, and autocast regions are turned off; each neutralised cast is listed in
`Recording.casts`; `record(..., as_run=True)` (gradcheck's, on float64 inputs) changes none.
A call torch has no float64 kernel for is made of its definition (torch_ref.twin_forms).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import torch
import torch.nn as nn
from torch.nn.utils.rnn import PackedSequence
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree

from manual_bp.network import Network
from manual_bp.ops.base import inverse_permutation
from manual_bp.ops.shape import Identity
from torch_ref import ties
from torch_ref.calls import _AUTOCAST, _call_of, _kind, _tensors
from torch_ref.capture import (
    Probe,
    _Builder,
    _Converter,
    _ours,
    _user_line,
)
from torch_ref.casts import Casts
from torch_ref.errors import NotCovered, NothingToDifferentiate, UnsupportedModuleError
from torch_ref.lowering import lowered
from torch_ref.recording import (
    HookWatch,
    Recording,
    _float64_default,
    _hooks,
    function_calls,
    graph_leaves,
    output_names,
    random_state_kept,
)
from torch_ref.refusals import SECOND_ORDER, Refusals
from torch_ref.regions import Regions
from torch_ref.registry import lookup_method, registry
from torch_ref.registry.core import Param, Ref
from torch_ref.twin import live_parameters, module_walk
from torch_ref.twin_forms import FORMS
from torch_ref.whole_modules import WholeModules

_GETITEM = torch.Tensor.__getitem__
_REGISTER_HOOK = torch.Tensor.register_hook


class _Recorder(WholeModules, Refusals, Casts, Regions, TorchFunctionMode):
    """The mode and the module hooks that turn a run into manual nodes."""

    def __init__(self, converter: _Converter, live_params: set[int], stop: FrameType) -> None:
        super().__init__()
        self.conv = converter
        self.b = converter.b
        #: id(tensor) → (its value in the network, its version when bound)
        self.bound: dict[int, tuple[Ref | Param, int]] = {}
        self.keep: list[torch.Tensor] = []  # bound tensors stay alive: their ids stay unique
        self.live: set[int] = set(live_params)  # ids of tensors that carry gradient
        self.depth = 0  # > 0 inside a module recorded whole
        self.scope: list[tuple[str, nn.Module]] = []
        self.pending: list[Any] = []
        self.names: dict[str, int] = {}
        self.regions: dict[FrameType, tuple[str, list[str | None], list[str]]] = {}
        self.frames: list[FrameType] = []
        self.z_tensors: dict[str, torch.Tensor] = {}
        self.values: dict[str, tuple[torch.Tensor, int]] = {}
        self.casts: list[str] = []
        self.lowered_calls: list[str] = []  # calls recorded through torch's lowering
        self.hooks: list[HookWatch] = []  # Tensor.register_hook on what carries gradient
        self.tensors: dict[str, torch.Tensor] = {}
        #: id(view) → (its base, the index): the indexing views in-place writes go through
        self.views: dict[int, tuple[torch.Tensor, Any]] = {}
        self.calls: dict[str, int] = {}
        self.stop = stop
        #: keep each weighted layer's z as computed (the reference takes δ of it)
        self.keep_z = True
        self.as_run = False  # the caller's run as it is (record(..., as_run=True))

    def release(self) -> None:
        """Drop what only the run needed: every tensor it kept alive, and the frames it held
        (the recorder and this call's frame refer to each other: without this, the run's
        tensors would wait for the garbage collector, through the NumPy pass)."""
        self.keep.clear()
        self.bound.clear()
        self.views.clear()
        self.regions.clear()
        self.frames.clear()
        self.stop = None  # type: ignore[assignment]

    def __exit__(self, *exc: Any) -> None:
        self.step_back()  # (a module recorded whole raised: the mode is back, then leaves)
        super().__exit__(*exc)

    # --- binding torch tensors to manual values ------------------------------------

    def bind(self, t: torch.Tensor, value: Ref | Param, live: bool, bump: int = 0) -> None:
        self.bound[id(t)] = (value, t._version + bump)
        self.keep.append(t)
        if live:
            self.live.add(id(t))
        else:
            self.live.discard(id(t))
        if isinstance(value, Ref):
            self.values.setdefault(value.name, (t, t._version))
            self.tensors[value.name] = t

    def value(self, t: torch.Tensor, what: str) -> Ref | Param:
        """The manual value of a tensor met as an argument: its bound value, a tensor of the
        twin by name, or a constant (its value now)."""
        found = self.bound.get(id(t))
        if found is not None:
            value, version = found
            if t._version == version:
                return value
            if id(t) in self.live:
                raise _ours(
                    UnsupportedModuleError(
                        f"{what}{_user_line()} reads a tensor that was modified in place after "
                        "the record last saw it (through a view of it, or a view it is of, or "
                        "by an op under no_grad); the oracle cannot follow that aliasing: use "
                        "the out-of-place form"
                    )
                )
        name = self.conv.names.get(id(t))
        if name is not None and name not in self.conv.constants:
            return self.conv.model_tensor(t)
        if (  # (what reaches nothing differentiated here is a constant, as in autograd)
            t.requires_grad and t.grad_fn is not None and torch.is_grad_enabled()
        ) and any(id(leaf) in self.live for leaf in graph_leaves(t)):
            fn = type(t.grad_fn).__name__
            raise _ours(
                UnsupportedModuleError(
                    f"{what}{_user_line()} reads a tensor computed where the record cannot see "
                    f"it (made by {fn}: a custom autograd.Function that returns its input or a "
                    "view of it, or a tensor computed before this call and kept); the oracle "
                    "needs every op that carries gradient to run inside the checked call"
                )
            )
        self.refuse_transformed(t, what)
        p = self.constant(t)
        self.bind(t, p, False)
        return p

    def constant(self, t: torch.Tensor) -> Param:
        """A tensor as a constant of the network: its value now."""
        name = f"_oracle_constant_{len(self.conv.constants)}"
        return self.conv.model_tensor(t.detach().clone(), name)

    def values_of(self, obj: Any, what: str) -> Any:
        if isinstance(obj, torch.Tensor):
            return self.value(obj, what)
        if type(obj) is tuple or type(obj) is list:  # (nearly every call: flat arguments)
            values = [
                self.value(v, what)
                if isinstance(v, torch.Tensor)
                else self.values_of(v, what)
                if isinstance(v, (tuple, list, dict))
                else v
                for v in obj
            ]
            return values if type(obj) is list else tuple(values)
        if type(obj) is dict:  # (keyword arguments, as the positional ones)
            return dict(zip(obj, self.values_of(list(obj.values()), what), strict=True))
        if isinstance(obj, PackedSequence):  # (its own __new__ would check the values' devices)
            return PackedSequence._make(self.values_of(v, what) for v in obj)
        if isinstance(obj, (tuple, list)) and not hasattr(obj, "_fields"):
            return type(obj)(self.values_of(v, what) for v in obj)
        if isinstance(obj, tuple):  # a named tuple
            return type(obj)(*(self.values_of(v, what) for v in obj))
        if isinstance(obj, dict):
            return {k: self.values_of(v, what) for k, v in obj.items()}
        return obj

    def is_live(self, *objs: Any) -> bool:
        # (a stale value is live too: value() refuses it where it is read, with the reason)
        live = self.live
        for obj in objs:
            for v in obj if type(obj) is tuple else _tensors(obj):  # (flat arguments: as they are)
                if isinstance(v, torch.Tensor):
                    if id(v) in live:
                        return True
                elif isinstance(v, (tuple, list, dict)) and self.is_live(v):
                    return True
        return False

    def recording(
        self, args: tuple, kwargs: dict, module: nn.Module | None = None
    ) -> tuple[bool, FrameType | None]:
        """Whether a call on these arguments is part of the differentiated program: some
        argument (or the module's own parameter) carries gradient, and grad mode is on or
        the call is inside a custom Function's forward."""
        if not self.is_live(args, kwargs) and not (
            module is not None and any(id(p) in self.live for p in module.parameters())
        ):
            return False, None
        if torch.is_grad_enabled():
            return True, None
        frame = self.function_frame()
        return frame is not None, frame

    # --- the mode --------------------------------------------------------------------

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if torch._C._is_any_autocast_enabled() and any(map(torch.is_autocast_enabled, _AUTOCAST)):
            autocast = [d for d in _AUTOCAST if torch.is_autocast_enabled(d)]
            self.casts.append(f"torch.autocast{_user_line()}")
            with contextlib.ExitStack() as stack:
                for device in autocast:
                    stack.enter_context(torch.autocast(device, enabled=False))
                return self.__torch_function__(func, types, args, kwargs)
        if self.depth:
            return func(*args, **kwargs)
        call = _call_of(func)
        if call.attribute:  # (x.dtype, x.is_nested, ...: read as it is, of the float64 twin)
            if not self.as_run:
                func, args, kwargs = self.float64(func, args, kwargs)
            return self.run(func, args, kwargs)
        if func in SECOND_ORDER:
            self.refuse_second_order(func, args, kwargs)
        if not self.as_run:
            called = func
            func, args, kwargs = self.float64(func, args, kwargs)
            if func in FORMS:  # (no float64 kernel in torch: its definition, op by op)
                if self.is_live((args, kwargs)):
                    self.lowered_calls.append(f"{_call_of(func).what}{_user_line()}")
                with self:
                    return FORMS[func](*args, **kwargs)
            if func is not called:  # (a cast made Tensor.double)
                call = _call_of(func)
        if call.entry is not None and call.entry.family == "sizes" and not call.inplace:
            # x.size(), x.dim(): numbers, recorded or not (whether the call is part of the
            # differentiated program matters only for an output that carries gradient)
            out = self.run(func, args, kwargs)
            if not self.carries(out) or not self.recording(args, kwargs)[0]:
                return out
            self.conv.call(None, f"{call.what}{self.where()}", _user_line, "", (), {})
        on, frame = self.recording(args, kwargs)
        if func is _REGISTER_HOOK and on and len(args) == 2:  # (autograd's backward runs it)
            self.hooks.append(HookWatch(args[1], f"Tensor.register_hook{_user_line()}"))
            args = (args[0], self.hooks[-1])
        if not on:
            out = self.run(func, args, kwargs)
            if func is _GETITEM and isinstance(out, torch.Tensor) and out._base is not None:
                self.views[id(out)] = (args[0], args[1] if len(args) > 1 else None)
                self.keep.append(out)  # (a view of a constant: a write through it is followed)
            return out
        if call.inplace and args and isinstance(args[0], torch.Tensor):
            self.refuse_leaf_write(args[0], call.what)
        if call.entry is None:  # torch's lowering of it, op by op (torch_ref.lowering)
            return lowered(self, func, call.what, args, kwargs, frame)
        what = f"{call.what}{self.where()}"
        if "out" in kwargs and kwargs["out"] is not None:
            raise _ours(
                UnsupportedModuleError(
                    f"{what}{_user_line()} writes into out=; use the returned tensor"
                )
            )
        name = self.node_name(call.base)
        before = len(self.b.nodes)
        scope = self.scope[-1][0] if self.scope else ""
        target = f"fn:{name}"
        try:  # the rule first: its checks say what is wrong before torch's do
            vargs = self.values_of(args, what)
            vkwargs = self.values_of(kwargs, what) if kwargs else {}
            if call.swap:
                vargs = (vargs[1], vargs[0], *vargs[2:])
            if call.adapt is not None:
                vargs = call.adapt(tuple(vargs))
            result = self.conv.call(
                call.entry, what, _user_line, name, tuple(vargs), vkwargs, None,
                Probe("function", target, 0) if self.keep_z else None, scope,
            )  # fmt: skip
        except (UnsupportedModuleError, ValueError) as refusal:
            if isinstance(refusal, NotCovered):  # (a form the row's formula does not cover)
                return lowered(self, func, call.what, args, kwargs, frame, refusal)
            try:
                out = self.run(func, args, kwargs)
            except ValueError:
                raise refusal from None  # (torch refuses it too: the rule says why)
            if self.carries(out) or (call.inplace and self.carries(args[:1])):
                raise  # (in place: what the written tensor carries now counts too)
            return out  # (a refusal of a call that carries no gradient is no refusal)
        out = self.run(func, args, kwargs)
        written = args[0] if call.inplace and args and isinstance(args[0], torch.Tensor) else None
        if written is not None:  # in place: the written tensor is the value (setitem: None)
            if not self.carries(written):
                return out
            self.tag(frame, before)
            self.bind_output(written, result, call.what, torch.is_grad_enabled(), copy=False)
            self.write_back(written, call.what)
            return out
        if not self.carries(out):
            return out  # nothing here carries gradient: constants where they are used
        self.tag(frame, before)
        out = self.inner_deltas(target, out)
        out = self.bind_output(out, result, call.what, torch.is_grad_enabled())
        if call.base == "getitem" and isinstance(out, torch.Tensor) and out._base is not None:
            self.views[id(out)] = (args[0], args[1] if len(args) > 1 else None)
        return out

    def write_back(self, view: torch.Tensor, what: str, bump: int = 0) -> None:
        """An in-place write through an indexing view (`H[..., -1, -1] += 1`) changes its base
        too: the base is rebound to base[idx] = view (torch's CopySlices). Other views whose
        base is written are left to the version check, which refuses them where read."""
        found = self.views.get(id(view))
        if found is None:
            return
        base, index = found
        entry = lookup_method("__setitem__")
        if entry is None:
            return
        bound = self.bound.get(id(base))
        # a constant written through (a cache): its value now, the write over it
        vbase = self.constant(base) if bound is None else bound[0]
        vview = self.bound[id(view)][0]
        index = self.values_of(index, what)
        result = self.conv.call(
            entry, what, _user_line, self.node_name("setitem"), (vbase, index, vview), {}
        )
        self.bind(base, result, True, bump)
        self.write_back(base, what, bump)

    def inner_deltas(self, target: str, out: Any) -> Any:
        """A composite's weighted layers (nn.MultiheadAttention's out_proj): δ is taken of
        output `index` of the call, which is that layer's z up to a reshape (once permuted
        by the probe's dims: a copy so laid out is taken, the output a permuted copy of
        it); the forward goes on with a copy of it. (Without a reference, keep_z off, no
        call is probed and this is the output as it is.)"""
        probes = self.b.probes
        for node in self.b.probed.get(target, ()):
            index, dims = probes[node].index, probes[node].dims
            if index is None or node in self.z_tensors:
                continue
            many = isinstance(out, (tuple, list))
            inner = out[index] if many else out
            if not isinstance(inner, torch.Tensor) or not inner.requires_grad:
                continue
            if dims is not None:  # (its z, as torch lays it out, in the graph)
                inner = inner.permute(dims).clone()
                carried = inner.permute(inverse_permutation(dims))
            else:
                carried = inner
            self.z_tensors[node] = inner
            if many:
                items = list(out)
                items[index] = carried.clone()
                out = type(out)(*items) if hasattr(out, "_fields") else type(out)(items)
            else:
                out = carried.clone()
        return out

    def run(self, func: Any, args: tuple, kwargs: dict) -> Any:
        """The call as torch makes it; an error names the call, your line and the shapes."""
        try:
            return func(*args, **kwargs)
        except Exception as err:
            if getattr(err, "oracle", False) or isinstance(err, AssertionError):
                raise  # (ours, or a check of the user's: torch._assert)
            shapes = [tuple(t.shape) for t in _tensors((args, kwargs))]
            raise _ours(
                ValueError(
                    f"{_call_of(func).what}{self.where()}{_user_line()} failed in the twin's "
                    f"run on tensors of shapes {shapes} ({type(err).__name__}: {err})"
                )
            ) from None

    @staticmethod
    def carries(out: Any) -> bool:
        grad = torch.is_grad_enabled()
        if isinstance(out, torch.Tensor):  # (nearly every call: one tensor)
            return out.requires_grad if grad else out.is_floating_point()
        return any(t.requires_grad if grad else t.is_floating_point() for t in _tensors(out))

    def where(self) -> str:
        if not self.scope:
            return ""
        path, module = self.scope[-1]
        return f" in module {path or '(the model)'!r} ({type(module).__name__})"

    def node_name(self, base: str) -> str:
        k = self.names.get(base, 0)
        self.names[base] = k + 1
        return base if k == 0 else f"{base}_{k}"

    def bind_output(
        self, out: Any, result: Any, what: str, grad: bool, copy: bool = True, bump: int = 0
    ) -> Any:
        """Bind each output tensor that carries gradient to its manual value; hand the
        forward a copy of a weighted layer's z (δ is taken of the original, which a later
        in-place op must not change)."""
        if isinstance(out, torch.Tensor):
            if not isinstance(result, (Ref, Param)):
                raise AssertionError(f"{what}: the rule returned {result!r} for one tensor")
            if out.shape != tuple(result.shape):  # (a torch.Size is a tuple)
                raise _ours(
                    UnsupportedModuleError(
                        f"{what}{_user_line()}: the oracle's rule computes shape "
                        f"{tuple(result.shape)} where torch computed {tuple(out.shape)}"
                    )
                )
            carries = out.requires_grad if grad else out.is_floating_point()
            if not carries:
                return out
            if copy and self.keep_z and isinstance(result, Ref) and self.reports_delta(result.name):
                self.z_tensors[result.name] = out
                self.values[result.name] = (out, out._version)
                out = out.clone()
            self.bind(out, result, True, bump)
            return out
        if isinstance(out, (tuple, list)) and isinstance(result, (tuple, list)):
            items = [self.bind_output(o, r, what, grad) for o, r in zip(out, result, strict=True)]
            if hasattr(out, "_fields"):
                return type(out)(*items)
            return type(out)(items)
        if _tensors(out):
            raise AssertionError(f"{what}: the rule returned {result!r} for {type(out)}")
        return out

    def reports_delta(self, node: str) -> bool:
        for n in reversed(self.b.nodes):
            if n.name == node:
                return bool(n.layer.reports_delta)
        return False


def record(
    fn: Callable[..., Any],
    args: tuple,
    kwargs: dict,
    *,
    model: nn.Module | None,
    inputs: dict[str, torch.Tensor],
    live_inputs: bool,
    what: str,
    modules: tuple[tuple[str, nn.Module], ...] = (),
    caller: dict[str, torch.Tensor] | None = None,
    keep_z: bool = True,
    as_run: bool = False,
    walk: list[tuple[str, nn.Module]] | None = None,
) -> Recording:
    """Run `fn(*args, **kwargs)` once, recording it as a manual network.

    `model`: the twin whose parameters and buffers are the model tensors (by qualified name)
    and whose modules with a registry row are recorded whole (and those of `modules`, such
    as a loss module, by their given names); `caller`: the caller's own parameters by name,
    met where a loss closes over the model (a penalty on model.parameters()); `inputs`: the
    tensors among the arguments that are the network's inputs, by name (integer ones too);
    `live_inputs`: whether the floating inputs carry gradient (∂L/∂x is wanted); `keep_z`:
    hand the forward a copy of each weighted layer's z and keep the original, for a reference
    that takes δ of it (a pass without a reference saves the copies, and the probes that find
    a composite's inner z); `as_run`: the caller's run as it is (no float64 twin; its random
    draws are constants of it, and stay drawn); `walk`: module_walk(model), where the caller
    has it."""
    registry()
    b = _Builder({n: (tuple(t.shape), _kind(t)) for n, t in inputs.items()})
    if walk is None:
        walk = module_walk(model) if model is not None else []
    conv = _Converter(model if model is not None else nn.Module(), b, walk)
    live_params = live_parameters(model, walk) if model is not None else set()
    for name, t in (caller or {}).items():  # the caller's own tensors, by the same names
        conv.names.setdefault(id(t), name)
        if t.requires_grad:
            live_params.add(id(t))
    recorder = _Recorder(conv, live_params, sys._getframe(0))
    recorder.keep_z = keep_z
    recorder.as_run = as_run
    for n, t in inputs.items():
        live = (live_inputs or t.requires_grad) and t.is_floating_point()
        recorder.bind(t, Ref(n, tuple(t.shape), _kind(t)), live)
    with (
        contextlib.nullcontext() if as_run else random_state_kept(what),
        contextlib.nullcontext() if as_run else _float64_default(),
        _hooks(walk + [w for prefix, m in modules for w in module_walk(m, prefix)], recorder),
        recorder,
    ):
        result = fn(*args, **kwargs)
    for prefix, _ in modules:  # a loss module is not one of the model's modules
        for key in [k for k in b.module_outputs if k == prefix or k.startswith(prefix + ".")]:
            del b.module_outputs[key]
    outputs = output_names(recorder, result)
    names = [n for n in pytree.tree_leaves(outputs) if n is not None]
    if not names:
        raise _ours(
            NothingToDifferentiate(
                f"{what} returned no tensor that carries gradient (got "
                f"{[tuple(t.shape) for t in _tensors(result)] or type(result).__name__}): "
                "nothing to differentiate "
                "(no parameter that requires grad reaches it; pass input_grads=True to "
                "differentiate with respect to the inputs)"
            )
        )
    first = names[0]
    if first in inputs:  # the input itself (an eval-mode dropout)
        b.add("output", Identity(), (Ref(first, b.shapes[first], "float"),))
        first = "output"
    region_of = {n: f for f in recorder.frames for n in recorder.regions[f][2]}
    nodes, renamed, fused = b.fuse(first, region_of)
    nodes = ties.torch_signs(nodes, recorder.values)  # (singular vectors' signs: torch's)
    network = Network(nodes, output=renamed.get(first, first), inputs=tuple(inputs))
    outputs = pytree.tree_map(lambda n: renamed.get(n, n) if n is not None else None, outputs)
    module_outputs = {m: renamed.get(n, n) for m, n in b.module_outputs.items()}
    delta_nodes = [n.name for n in network.nodes if n.layer.reports_delta]
    values = dict(recorder.values)
    for src, act in fused.items():  # a fused node's a is the activation's value
        if act in values:
            values[src + ".a"] = values[act]
    recording = Recording(
        network,
        b.params,
        module_outputs,
        delta_nodes,
        b.shapes,
        function_calls(recorder.frames, recorder.regions, network),
        outputs,
        result,
        recorder.z_tensors,
        values,
        recorder.casts,
        {renamed.get(n, n): t for n, t in recorder.tensors.items()},
        recorder.lowered_calls,
        recorder.hooks,
    )
    recorder.release()
    return recording


__all__ = ["NothingToDifferentiate", "Recording", "record", "random_state_kept"]
