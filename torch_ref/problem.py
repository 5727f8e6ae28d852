"""The prepared problem: a model, a loss and a batch, checked, with their float64 twin run once.

    L = loss_fn(model(inputs), target) + (l2/2) Σ ‖W‖²

`prepare` checks what the caller handed over, builds the float64 twin of the model (once,
torch_ref.twin: a deep copy, floating parameters and buffers float64, on the model's device),
and records one run of `loss_fn(twin(inputs), target)` (torch_ref.record). That run is both
sides of the comparison: the manual network is built from the ops it executed, and
autograd's graph of the same run gives the reference (torch_ref.oracle). The tie replay reads
torch's values from it and the custom-Function explanation its Function calls; nothing
rebuilds anything.

The caller's model is never run or touched: its forward runs on the twin, exactly as the
caller calls it (positional inputs, a dict of keyword inputs, defaults bound by Python, a
decorated or instance-level forward, a `__call__` override), and what the forward does to
Python attributes, caches and counters happens to the twin.
"""

from __future__ import annotations

import functools
import inspect
import math
import types
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils import _pytree as pytree

from manual_bp.ops.loss import NetworkLoss
from torch_ref.capture import INPUT, _ours, _user_line_of
from torch_ref.errors import UnsupportedModuleError
from torch_ref.record import Recording, record
from torch_ref.twin import (
    copy_module,
    lists_as_nn_module,
    module_walk,
    modules_of,
    named_members,
    twin_and_walk,
    twin_of,  # noqa: F401 (gradchecks and capture import it from here)
)

LossFn = Callable[..., torch.Tensor]


@dataclass
class Problem:
    """Everything the oracle's stages share, built once by `prepare`."""

    model: nn.Module  # the caller's (never run)
    loss_fn: Any
    inputs: Any  # as given
    target: Any
    twin: nn.Module
    rec: Recording
    #: the network's inputs as float64 (or integer) arrays, in `rec.network.inputs` order
    xs: tuple[np.ndarray, ...]
    #: the twin's input tensors by network input name (floating ones require grad when
    #: input gradients are asked for)
    twin_inputs: dict[str, torch.Tensor]
    l2: float
    params: dict[str, nn.Parameter]  # the caller's named_parameters() that require grad
    input_grads: bool
    #: how the inputs were given: "tensor", "tuple" or "dict"
    form: str
    loss: NetworkLoss
    y: Any = None

    def release(self) -> None:
        """Drop torch's side of the run (its values, autograd's graph, the twin's inputs) where
        no reference is taken: the NumPy pass then never holds both at once."""
        self.rec.values.clear()
        self.rec.z_tensors.clear()
        self.rec.tensors.clear()
        self.rec.result = None
        self.twin_inputs = {}

    @property
    def captured(self) -> Recording:
        return self.rec

    @property
    def twin_params(self) -> dict[str, torch.Tensor]:
        prefix = "_orig_mod." if hasattr(self.model, "_orig_mod") else ""
        return {prefix + n: p for n, p in self.twin.named_parameters()}

    @property
    def decayed(self) -> list[str]:
        """Qualified names of the weights in the L2 penalty, each once (a tied weight is one
        parameter, one term)."""
        prefix = "_orig_mod." if hasattr(self.model, "_orig_mod") else ""
        names = (
            self.rec.params.get((node.name, p))
            for node in self.rec.network.nodes
            for p in node.layer.decayed
        )
        return list(dict.fromkeys(prefix + n for n in names if n is not None))


# --- checks --------------------------------------------------------------------------


def check_finite(name: str, t: torch.Tensor, what: str) -> None:
    if not t.is_floating_point():
        return
    t = t.detach()
    # a NaN or Inf anywhere makes the sum NaN or Inf (math's test of the number: torch's of a
    # 0-d tensor is three ops, ~4 µs)
    if math.isfinite(t.sum().item()):
        return
    if not bool(torch.isfinite(t).all()):  # (a finite sum can also overflow: look closer)
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{what} {name!r} holds {bad} NaN/Inf value(s); expected finite values")


def check_initialised(name: str, t: torch.Tensor, what: str = "parameter") -> None:
    """A lazy module's parameter or buffer (nn.LazyLinear, ...) has no shape or values until
    the module's first forward, which draws them."""
    if isinstance(t, nn.parameter.UninitializedTensorMixin):
        raise ValueError(
            f"{what} {name!r} is not initialised yet (a lazy module: nn.LazyLinear, "
            "nn.LazyConv2d, ...); its first forward draws it at random, so run the model once "
            "on a batch before the check"
        )


def check_all_finite(named: list[tuple[str, torch.Tensor]], what: str) -> None:
    """check_finite of each tensor, a few at a time: small floating tensors of one dtype
    and device are looked at together (one sum), each alone only where that sum is not
    finite (a NaN or Inf, or an overflow)."""
    groups: dict[tuple[Any, Any], list[tuple[str, torch.Tensor]]] = {}
    for name, t in named:
        if t.is_floating_point() and t.numel() <= _TOGETHER:
            groups.setdefault((t.device, t.dtype), []).append((name, t))
        else:
            check_finite(name, t, what)
    for items in groups.values():
        with torch.no_grad():  # (as t.detach() each; torch.cat of each one flat, in one call)
            flat = torch._utils._flatten_dense_tensors([t for _, t in items])
        if not math.isfinite(flat.sum().item()):  # (as check_finite looks first)
            for name, t in items:
                check_finite(name, t, what)


#: tensors up to this many entries are checked together (their copy is cheap)
_TOGETHER = 1 << 16


def check_layout(name: str, t: torch.Tensor, kind: str = "") -> None:
    """Sparse, meta and quantised tensors hold no plain values to read. (`kind`: the tensor is
    called "{kind} {name!r}" where given, else `name`.)"""
    if t.layout == torch.strided and not t.is_meta and not t.is_quantized:
        return
    what = f"{f'{kind} {name!r}' if kind else name} of shape {tuple(t.shape)}"
    if t.layout != torch.strided:
        raise ValueError(f"expected a dense (strided) tensor, got {what} as {t.layout}")
    if t.is_meta:
        raise ValueError(f"expected real values, got {what} on the meta device (no values)")
    if t.is_quantized:
        raise ValueError(f"expected a float or integer tensor, got {what} quantized ({t.dtype})")


def _check_input(name: str, x: torch.Tensor) -> None:
    check_layout(name, x)
    if x.is_complex():
        raise ValueError(
            f"{name} of shape {tuple(x.shape)} is complex ({x.dtype}); expected real values"
        )
    if x.ndim == 0 or x.numel() == 0:
        raise ValueError(f"{name} must hold a non-empty batch, got shape {tuple(x.shape)}")
    check_finite(name, x, "the input tensor")


def split_inputs(inputs: Any) -> tuple[str, tuple, dict, dict[str, torch.Tensor]]:
    """(form, positional args, keyword args, the tensors among them by network input name):
    a tensor, a tuple/list of positional inputs, or a dict of keyword inputs."""
    if isinstance(inputs, torch.Tensor):
        _check_input("inputs", inputs)
        return "tensor", (inputs,), {}, {INPUT: inputs}
    if isinstance(inputs, dict):
        if not inputs:
            raise ValueError("inputs is an empty dict; expected keyword inputs of the forward")
        named = {}
        for k, x in inputs.items():
            if isinstance(x, torch.Tensor):
                _check_input(f"inputs[{k!r}]", x)
                named[f"{INPUT}.{k}"] = x
        return "dict", (), dict(inputs), named
    if isinstance(inputs, (tuple, list)):
        if not inputs:
            raise ValueError("inputs is an empty tuple; expected a tensor or a tuple of tensors")
        named = {}
        for k, x in enumerate(inputs):
            name = "inputs" if len(inputs) == 1 else f"inputs[{k}]"
            if isinstance(x, (list, tuple, np.ndarray)):
                raise TypeError(
                    f"{name} must be a torch.Tensor (or a tuple of them), got {type(x).__name__}"
                )
            if isinstance(x, torch.Tensor):
                _check_input(name, x)
                named[INPUT if len(inputs) == 1 else f"{INPUT}.{k}"] = x
        if not named:
            raise TypeError("inputs holds no torch.Tensor; expected a tensor or a tuple of tensors")
        return "tuple", tuple(inputs), {}, named
    raise TypeError(
        f"inputs must be a torch.Tensor (or a tuple of them), got {type(inputs).__name__} "
        "(a dict of keyword inputs is taken too)"
    )


_HOOKS = ("_backward_pre_hooks", "_backward_hooks")


def refuse_backward_hooks(
    model: nn.Module,
    named: list[tuple[str, torch.Tensor]] | None = None,
    modules: list[tuple[str, nn.Module]] | None = None,
) -> None:
    """Forward hooks run in the twin as in the model; a backward hook changes the gradient
    autograd returns, which the twin's copy would not see (or would apply to the reference
    only): refused, naming it. (`named`, `modules`: the model's named_parameters() and
    named_modules(), where the caller has them.)"""
    import torch.nn.modules.module as module_globals

    for kind in _HOOKS:
        if getattr(module_globals, f"_global{kind}"):
            raise UnsupportedModuleError(
                f"a global module hook is registered ({kind.strip('_').replace('_', ' ')}); "
                "it changes the gradients autograd returns: remove it for the check"
            )
    for name, m in model.named_modules() if modules is None else modules:
        for kind in _HOOKS:
            if getattr(m, kind, None):
                raise UnsupportedModuleError(
                    f"module {name or type(model).__name__!r} ({type(m).__name__}) has "
                    f"{kind.strip('_').replace('_', ' ')}; they change the gradients autograd "
                    "returns: remove them for the check"
                )
    for name, p in model.named_parameters() if named is None else named:
        if getattr(p, "_backward_hooks", None) or getattr(p, "_post_accumulate_grad_hooks", None):
            raise UnsupportedModuleError(
                f"parameter {name!r} has a gradient hook (register_hook); it changes the "
                "gradient autograd returns for it, so the oracle would answer for another "
                "function: remove it for the check"
            )


def unwrap(model: Any) -> nn.Module:
    """The module to check: a torch.compile'd module's original; refuse what cannot be."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, torch.jit.ScriptModule):
        raise UnsupportedModuleError(
            f"{type(model).__name__} is a TorchScript module (torch.jit.script/trace): its "
            "forward is compiled code the oracle cannot record; pass the original nn.Module"
        )
    orig = getattr(model, "_orig_mod", None)
    return orig if isinstance(orig, nn.Module) else model


def float64_loss(loss_fn: Any) -> Any:
    """The loss with its weight tensors in float64 (a copy: the caller's loss is untouched)."""
    if isinstance(loss_fn, nn.Module):
        return copy_module(loss_fn, {}).to(torch.float64)
    if isinstance(loss_fn, functools.partial):
        return functools.partial(
            loss_fn.func,
            *map(_float64, loss_fn.args),
            **{k: _float64(v) for k, v in loss_fn.keywords.items()},
        )
    return loss_fn


def _float64(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor) and obj.is_floating_point():
        return obj.detach().to(torch.float64)
    return obj


def loss_tensors(loss_fn: Any) -> dict[str, torch.Tensor]:
    """The tensors a loss carries (a class weight, pos_weight), module or partial."""
    if isinstance(loss_fn, nn.Module):
        return {n: t for n, t in vars(loss_fn).get("_buffers", {}).items() if t is not None} | {
            n: t for n, t in vars(loss_fn).items() if isinstance(t, torch.Tensor)
        }
    if isinstance(loss_fn, functools.partial):
        named = {f"argument {k}": a for k, a in enumerate(loss_fn.args)}
        return {n: t for n, t in (named | loss_fn.keywords).items() if isinstance(t, torch.Tensor)}
    return {}


def _twin_tensor(t: torch.Tensor, grad: bool) -> torch.Tensor:
    out = t.detach().clone() if t.is_inference() else t.detach()
    out = out.to(torch.float64) if out.is_floating_point() else out
    out = out.clone()
    return out.requires_grad_(True) if grad and out.is_floating_point() else out


def _array(t: torch.Tensor) -> np.ndarray:
    t = t.detach().to("cpu")
    if t.is_floating_point():
        return t.to(torch.float64).numpy().copy()
    return t.numpy().copy() if t.dtype == torch.bool else t.long().numpy().copy()


def _check_call(model: nn.Module, args: tuple, kwargs: dict) -> None:
    """The forward accepts these inputs (Python's own binding, said for people)."""
    if _binds(model.forward, args, kwargs):
        return
    try:
        sig = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(*args, **kwargs)
    except TypeError as err:
        params = [
            p for p in sig.parameters.values() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]
        required = [p.name for p in params if p.default is inspect.Parameter.empty]
        given = list(sig.parameters)[: len(args)] + list(kwargs)
        missing = [n for n in required if n not in given]
        names = ", ".join(p.name for p in params)
        raise ValueError(
            f"{type(model).__name__}.forward({names}) requires {len(required)} input(s) "
            f"without defaults, got {len(args) + len(kwargs)} (missing: "
            f"{', '.join(missing) or 'none'}; {err})"
        ) from None


#: per plain function: what binding reads of it, and the call shapes its signature binds
_BINDS: weakref.WeakKeyDictionary[Callable, tuple[tuple, set]] = weakref.WeakKeyDictionary()
#: what inspect.signature reads of a function before its code
_READ_FIRST = ("__wrapped__", "__signature__", "_partialmethod")


def _binds(forward: Any, args: tuple, kwargs: dict) -> bool:
    """True where inspect.signature(forward).bind(*args, **kwargs) succeeds. Known without
    the signature for a method of a plain Python function whose code and defaulted parameters
    (all that binding reads) are as when this call's shape (how many positional inputs, which
    keywords) last bound; False: it fails, or is not known here."""
    func = getattr(forward, "__func__", None)
    if type(forward) is not types.MethodType or type(func) is not types.FunctionType:
        return False
    if not vars(func).keys().isdisjoint(_READ_FIRST):
        return False
    reads = (func.__code__, len(func.__defaults__ or ()), tuple(func.__kwdefaults__ or ()))
    kept = _BINDS.get(func)
    if kept is None or kept[0] != reads:
        kept = _BINDS[func] = (reads, set())
    shape = (len(args), frozenset(kwargs))
    if shape not in kept[1]:
        try:
            inspect.signature(forward).bind(*args, **kwargs)
        except (TypeError, ValueError):
            return False
        kept[1].add(shape)
    return True


def run_error(what: str, err: Exception, shapes: list[tuple[int, ...]] | None = None) -> Exception:
    """An error raised by the user's code in the twin's run, worded for people."""
    if getattr(err, "oracle", False) or isinstance(err, UnsupportedModuleError):
        return err
    line = _user_line_of(err)
    message = str(err)
    if "leaf Variable that requires grad" in message or "a view of a leaf Variable" in message:
        return UnsupportedModuleError(
            f"{what}{line} modifies in place a tensor that requires grad (an input or a "
            "tensor of the model); use the out-of-place form"
        )
    if isinstance(err, (AssertionError, ValueError, IndexError, KeyError)):
        detail = f": {err}" if message else ""
        on = f" (evaluated on inputs of shapes {shapes})" if shapes else ""
        return ValueError(f"a check in {what} failed{line}{detail}{on}")
    if isinstance(err, RuntimeError):  # torch refuses these inputs
        return ValueError(f"{what} failed in the twin's run{line} ({type(err).__name__}: {err})")
    return UnsupportedModuleError(
        f"{what} failed in the oracle's float64 run{line} ({type(err).__name__}: {err})"
    )


def prepare(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Any,
    target: Any,
    l2: float,
    *,
    input_grads: bool = False,
    reference: bool = True,
) -> Problem:
    """Check, build the twin, record `loss_fn(twin(inputs), target)` (see the docstring).
    Inside torch.inference_mode() too: the twin's run leaves it for its own tensors.
    `reference=False`: no autograd reference will be taken (the record keeps less)."""
    with torch.inference_mode(False):
        return _prepare(
            model, loss_fn, inputs, target, l2, input_grads=input_grads, reference=reference
        )


def _prepare(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Any,
    target: Any,
    l2: float,
    *,
    input_grads: bool = False,
    reference: bool = True,
) -> Problem:
    user = model
    model = unwrap(model)
    # (its modules with their repeats, the twin's walk read off it; an own listing is called
    # where the twin's run is, as before)
    walk = module_walk(model) if lists_as_nn_module(model) else None
    named_modules, modules = modules_of(model, walk)
    own = named_members(model, named_modules, "_parameters")  # (model.named_parameters())
    refuse_backward_hooks(model, own, named_modules)
    for name, p in own:
        check_initialised(name, p)
        check_layout(name, p, "parameter")
    buffers = named_members(model, named_modules, "_buffers")  # (model.named_buffers())
    for name, buf in buffers:
        check_initialised(name, buf, "buffer")
        check_layout(name, buf, "buffer")
    check_all_finite(own, "parameter")
    check_all_finite(buffers, "buffer")
    form, args, kwargs, named = split_inputs(inputs)
    if not callable(loss_fn):
        raise TypeError(
            f"loss_fn must be callable loss_fn(output, target), got {type(loss_fn).__name__}"
        )
    for name, t in loss_tensors(loss_fn).items():
        if t.requires_grad:
            raise ValueError(
                f"the loss's {name} requires grad; the oracle differentiates the model's "
                "parameters only: pass a tensor that does not require grad (weight.detach())"
            )
    plain = type(target) is torch.Tensor  # (its own only leaf: no pytree walk)
    for leaf in [target] if plain else pytree.tree_leaves(target):
        if isinstance(leaf, torch.Tensor):
            check_layout("target", leaf)
            if leaf.is_complex():
                raise ValueError(f"expected a real target, got dtype {leaf.dtype}")
    if isinstance(model, nn.Sequential) and len(model) == 0:
        raise ValueError(
            "expected a model with at least one layer, got an empty nn.Sequential() "
            "(nothing to differentiate)"
        )
    twin, twin_walk = twin_and_walk(model, modules, walk)
    _check_call(twin, args, kwargs)
    device = own[0][1].device if own else None
    # (an input that requires grad does in the twin too: reentrant checkpoints and
    # `x.requires_grad` branches see what they see in your run)
    twins = {n: _twin_tensor(x, input_grads or x.requires_grad) for n, x in named.items()}
    if device is not None:
        twins = {n: t.to(device) if t.device != device else t for n, t in twins.items()}
    xs = tuple(_array(t) for t in twins.values())
    by_id = {id(x): twins[n] for n, x in named.items()}
    targs = tuple(by_id.get(id(a), a) if isinstance(a, torch.Tensor) else a for a in args)
    tkwargs = {
        k: by_id.get(id(v), v) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()
    }

    def twin_target(t: Any) -> Any:
        return _twin_tensor(t, False).to(device or t.device) if isinstance(t, torch.Tensor) else t

    ttarget = twin_target(target) if plain else pytree.tree_map(twin_target, target)
    loss64 = float64_loss(loss_fn)
    cls = type(model).__name__

    def run() -> Any:
        out = twin(*targs, **tkwargs)
        try:
            loss = loss64(out, ttarget)
        except Exception as err:
            raise _ours(run_error(f"the loss {_loss_name(loss_fn)}", err)) from None
        if not isinstance(loss, torch.Tensor):
            hint = " (float() or .item() takes it out of autograd's graph)" * isinstance(
                loss, (int, float)
            )
            raise _ours(
                ValueError(
                    f"loss_fn must return a scalar floating tensor, got {type(loss).__name__} "
                    f"from the loss {_loss_name(loss_fn)}{hint}"
                )
            )
        return loss

    try:
        with torch.inference_mode(False), torch.enable_grad():
            rec = record(
                run, (), {}, model=twin, inputs=twins, live_inputs=input_grads,
                what=f"{cls}.forward",
                modules=(("loss", loss64),) if isinstance(loss64, nn.Module) else (),
                caller=dict(own),
                keep_z=reference, walk=twin_walk,
            )  # fmt: skip
    except Exception as err:
        raise run_error(f"{cls}.forward", err, [tuple(t.shape) for t in named.values()]) from None
    loss = rec.result
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.is_floating_point():
        got = (
            f"shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
        )
        raise ValueError(
            f"loss_fn must return a scalar floating tensor, got {got} (reduction='none' "
            "needs a reduction such as .mean() or .sum() after it)"
        )
    params = {
        n: p for n, p in (own if user is model else user.named_parameters()) if p.requires_grad
    }
    return Problem(
        user, loss_fn, inputs, target, twin, rec, xs, twins, l2, params, bool(input_grads),
        form, NetworkLoss(),
    )  # fmt: skip


def _loss_name(loss_fn: Any) -> str:
    if isinstance(loss_fn, nn.Module):
        return type(loss_fn).__name__
    fn = loss_fn.func if isinstance(loss_fn, functools.partial) else loss_fn
    return getattr(fn, "__qualname__", type(fn).__name__)
