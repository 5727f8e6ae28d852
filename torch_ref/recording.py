"""A recorded run (`Recording`), and the state a run is made in: every random generator kept,
float64 as the default dtype, the recorder's hooks on the modules (torch_ref.record)."""

from __future__ import annotations

import contextlib
import ctypes
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.nn.modules import module as _torch_module
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from manual_bp.network import Network
from torch_ref.calls import _not_float64
from torch_ref.capture import FunctionCall, _ours
from torch_ref.registry.core import Param


class HookWatch:
    """A gradient hook the twin's forward registered (`where`: its line), run as it is;
    `changed` once it has returned a tensor (a hook that only reads returns None)."""

    def __init__(self, hook: Any, where: str) -> None:
        self.hook, self.where, self.changed = hook, where, False

    def __call__(self, grad: torch.Tensor) -> Any:
        out = self.hook(grad)
        self.changed |= out is not None
        return out


@dataclass
class Recording:
    """A recorded run: the manual network, and how its values map onto torch's."""

    network: Network
    #: (node, layer parameter) → the twin's qualified parameter/buffer name
    params: dict[tuple[str, str], str]
    #: leaf-module qualified name (with #k for a later call) → the node whose a is its output
    module_outputs: dict[str, str]
    #: nodes whose δ = ∂L/∂z a trace reports (weighted layers), in graph order
    delta_nodes: list[str]
    shapes: dict[str, Any]
    #: the custom autograd.Function calls, in call order
    functions: list[FunctionCall]
    #: the structure fn returned, with the node name of each output that carries gradient
    #: (None for one that does not)
    outputs: Any
    #: what fn returned (torch's values, in the twin's autograd graph)
    result: Any
    #: δ node → torch's tensor of its z (kept as computed: the forward went on with a copy)
    z_tensors: dict[str, torch.Tensor]
    #: node → torch's value of it, with its version when recorded (for the tie replay)
    values: dict[str, tuple[torch.Tensor, int]]
    #: the casts that were made float64, as "Tensor.float at <line>"
    casts: list[str] = field(default_factory=list)
    #: node → the tensor the forward went on with (for a custom Function's output: the
    #: tensor whose grad_fn is the Function's backward)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    #: the calls without a row, recorded through torch's lowering, as "F.pdist at <line>"
    lowered: list[str] = field(default_factory=list)
    #: gradient hooks the forward put on tensors that carry gradient (Tensor.register_hook):
    #: they act in autograd's backward only, which says whether one changed a gradient
    hooks: list[HookWatch] = field(default_factory=list)

    def torch_value(self, node: str) -> np.ndarray | None:
        """torch's value of a node as it was computed (None if torch changed it since)."""
        found = self.values.get(node)
        if found is None or found[0]._version != found[1]:
            return None
        return found[0].detach().to("cpu", torch.float64).numpy()


def function_calls(
    frames: list[Any], regions: dict[Any, Any], network: Network
) -> list[FunctionCall]:
    """Each custom Function's call: its class, the values it was called with, the nodes its
    forward built, and those of them used outside it (its outputs)."""
    out = []
    for frame in frames:
        cls, ins, region = regions[frame]
        inside = set(region)
        used = {i for n in network.nodes if n.name not in inside for i in n.inputs}
        outs = tuple(n for n in region if n in used or n == network.output)
        out.append(FunctionCall(cls, tuple(ins), tuple(region), outs))
    return out


def output_names(recorder: Any, result: Any) -> Any:
    """The run's result with each tensor that carries gradient as its node's name (None
    for any other leaf)."""

    def name(t: Any) -> str | None:
        if not isinstance(t, torch.Tensor) or id(t) not in recorder.live:
            return None
        value = recorder.bound[id(t)][0]
        if isinstance(value, Param):
            return recorder.b.leaf(value).name
        return value.name

    if type(result) is torch.Tensor:  # (its own only leaf: no pytree walk)
        return name(result)
    leaves, spec = pytree.tree_flatten(result)
    return pytree.tree_unflatten([name(t) for t in leaves], spec)


@contextlib.contextmanager
def _hooks(walk: list[tuple[str, nn.Module]], recorder: Any) -> Iterator[None]:
    """The recorder's enter and leave around every call of a module of `walk` ((path, module)
    pairs, a shared module under its first path), taken away afterwards.

    A module with forward hooks (its own or global ones) gets the recorder's pre-hook, after
    its own, and hook, before its own, written into its hook tables as
    register_forward_(pre_)hook(..., with_kwargs=True) writes them, under a key of ours: the
    recorder sees the arguments the forward gets and the output it returns. torch runs the
    global forward hooks before a module's own, so where there are any, the recorder's hook is
    the first of them for the run instead. Every other module keeps torch's call without hooks
    (hooks cost ~3 µs a call): its call is wrapped, as nn.Module's __call__ calls an instance's
    `_compiled_call_impl` where it has one. The copy or pickle of a module leaves that out
    (nn.Module.__getstate__): a copy made in the run is called as torch calls it, its torch
    calls recorded one by one. A module given hooks of its own in the run is hooked at its next
    call."""
    paths: dict[int, str] = {}
    modules: list[nn.Module] = []
    for path, m in walk:
        if id(m) not in paths:
            paths[id(m)] = path
            modules.append(m)
    key = _HookKey()
    hooked: list[nn.Module] = []

    def pre(module: nn.Module, args: tuple, kwargs: dict) -> None:
        with torch._C.DisableTorchFunction():  # (our own tensor calls are not the run's)
            recorder.enter(paths[id(module)], module, args, kwargs)

    def post(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        with torch._C.DisableTorchFunction():
            return recorder.leave(paths[id(module)], module, output)

    def first_global(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        return post(module, args, kwargs, output) if id(module) in paths else None

    global_forward = bool(_torch_module._global_forward_hooks)

    def hook(m: nn.Module) -> None:
        hooked.append(m)
        m._forward_pre_hooks[key] = pre
        m._forward_pre_hooks_with_kwargs[key] = True
        if not global_forward:
            m._forward_hooks[key] = post
            m._forward_hooks.move_to_end(key, last=False)
            m._forward_hooks_with_kwargs[key] = True

    def wrap(m: nn.Module) -> Callable[..., Any]:
        call_impl = type(m)._call_impl

        def call(*args: Any, **kwargs: Any) -> Any:
            if m._forward_pre_hooks or m._forward_hooks or _global_forward_hooks():
                del m.__dict__["_compiled_call_impl"]  # (hooks given in the run: join them)
                hook(m)
                return call_impl(m, *args, **kwargs)
            pre(m, args, kwargs)
            output = call_impl(m, *args, **kwargs)
            new = post(m, args, kwargs, output)
            return output if new is None else new

        return call

    wrapped: list[nn.Module] = []
    any_global = _global_forward_hooks()
    try:
        if global_forward:
            _torch_module._global_forward_hooks[key] = first_global
            _torch_module._global_forward_hooks.move_to_end(key, last=False)
            _torch_module._global_forward_hooks_with_kwargs[key] = True
        for m in modules:
            if (
                any_global
                or m._forward_pre_hooks
                or m._forward_hooks
                or "_compiled_call_impl" in m.__dict__
            ):
                hook(m)
            else:
                m.__dict__["_compiled_call_impl"] = wrap(m)
                wrapped.append(m)
        yield
    finally:
        _torch_module._global_forward_hooks.pop(key, None)
        _torch_module._global_forward_hooks_with_kwargs.pop(key, None)
        for m in wrapped:
            m.__dict__.pop("_compiled_call_impl", None)
        for m in hooked:
            for table in (
                m._forward_pre_hooks,
                m._forward_pre_hooks_with_kwargs,
                m._forward_hooks,
                m._forward_hooks_with_kwargs,
            ):
                table.pop(key, None)


def _global_forward_hooks() -> bool:
    """Forward hooks registered for every module (register_module_forward_(pre_)hook)."""
    return bool(_torch_module._global_forward_pre_hooks or _torch_module._global_forward_hooks)


class _HookKey:
    """A key of the module hook tables that no RemovableHandle id can equal."""


@contextlib.contextmanager
def _float64_default() -> Iterator[None]:
    was = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(was)


class _Float64Again(TorchDispatchMode):
    """The casts of the twin's forward made float64 again where autograd runs part of that
    forward a second time (torch.utils.checkpoint's recompute, in backward): below autograd,
    a floating dtype or tensor other than float64 in an ATen call becomes float64."""

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        leaves = pytree.tree_leaves((args, kwargs))
        if any(map(_not_float64, leaves)):
            args, kwargs = pytree.tree_map(_as_float64, (args, kwargs))
        return func(*args, **kwargs)


def _as_float64(a: Any) -> Any:
    if isinstance(a, torch.Tensor) and _not_float64(a):
        return a.double()
    return torch.float64 if _not_float64(a) else a


@contextlib.contextmanager
def twin_backward() -> Iterator[None]:
    """Around autograd's backward of the twin's recorded run: what it recomputes of the
    forward is float64, as the run was."""
    with _float64_default(), _Float64Again():
        yield


def autograd_grads(loss: torch.Tensor, wrt: list[torch.Tensor], rec: Recording) -> tuple[Any, ...]:
    """torch.autograd.grad(loss, wrt) of the twin's recorded run. A non-reentrant
    torch.utils.checkpoint recomputes part of the forward in backward: where its check finds
    the recompute's dtypes not the run's (a float32 cast the record made float64), the
    backward runs again in twin_backward (only then: that mode costs every ATen op of the
    backward a Python call). Where the run went through a reentrant checkpoint
    (`use_reentrant=True`, its default), whose backward accumulates into `.grad`
    (autograd.grad would see nothing of it, or refuse): loss.backward() as users run it, in
    twin_backward, the gradients read from `.grad` (kept for the non-leaf tensors), and every
    leaf's `.grad` as it was afterwards."""
    with torch.enable_grad():
        if not any(f.cls == "CheckpointFunction" for f in rec.functions):
            try:
                return torch.autograd.grad(loss, wrt, allow_unused=True, retain_graph=True)
            except RuntimeError as err:
                if "torch.utils.checkpoint: Recomputed values" not in str(err):
                    raise
            with twin_backward():
                return torch.autograd.grad(loss, wrt, allow_unused=True, retain_graph=True)
    with torch.enable_grad(), twin_backward():
        leaves = graph_leaves(loss) | {t for t in wrt if t.is_leaf}
        kept = {t: t.grad for t in leaves}
        try:
            for t in leaves:
                t.grad = None
            for t in wrt:
                if not t.is_leaf:
                    t.retain_grad()
                    t.grad = None
            loss.backward(retain_graph=True)
            return tuple(t.grad for t in wrt)
        finally:
            for t, g in kept.items():
                t.grad = g


def graph_leaves(t: torch.Tensor) -> set[torch.Tensor]:
    """The leaf tensors autograd accumulates into from `t`."""
    seen, stack, out = set(), [t.grad_fn], set()
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if hasattr(fn, "variable"):
            out.add(fn.variable)
        stack.extend(f for f, _ in fn.next_functions)
    return out


def _mersenne_state() -> bytes | None:
    """NumPy's global Mersenne Twister state, its key and position, read in place through its
    ctypes interface (~0.5 µs; get_state copies the key entry by entry, ~30 µs); None where the
    global generator is another."""
    generator = np.random.get_bit_generator()
    if type(generator) is not np.random.MT19937:
        return None
    return ctypes.string_at(generator.ctypes.state_address, _MERSENNE_BYTES)


#: mt19937_state: uint32_t key[624]; int pos
_MERSENNE_BYTES = 624 * 4 + ctypes.sizeof(ctypes.c_int)


@contextlib.contextmanager
def random_state_kept(what: str) -> Iterator[None]:
    """Every generator a run could draw from is as it was afterwards; a run that drew is
    refused (the manual pass and autograd would see different draws)."""
    torch_state = torch.get_rng_state()
    cuda = torch.cuda.is_initialized()
    cuda_states = torch.cuda.get_rng_state_all() if cuda else None
    np_state = np.random.get_state()  # (to set back; NumPy copies its key entry by entry)
    np_raw = _mersenne_state()
    py_state = random.getstate()
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        drew = not torch.equal(torch_state, torch.get_rng_state())
        if drew:
            torch.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
        if np_raw is None or np_state[3] or _mersenne_state() != np_raw:
            np_now = np.random.get_state()
            drew_np = np_now[2:] != np_state[2:] or not np.array_equal(np_now[1], np_state[1])
        else:  # the same key and position, and no cached Gaussian a draw takes without moving
            drew_np = False  # them: nothing drawn (a state set_state wrote back aside)
        if drew_np:
            np.random.set_state(np_state)
        drew_py = random.getstate() != py_state
        if drew_py:
            random.setstate(py_state)
        if not failed and (drew or drew_np or drew_py):
            raise _ours(
                ValueError(
                    f"{what} draws random numbers (dropout or stochastic depth in training mode, "
                    "torch.rand, bernoulli_, NumPy or Python random, ...): the manual pass and "
                    "autograd would see different draws, so no reference gradient exists; "
                    "expected model.eval() or a forward without random draws"
                )
            )
