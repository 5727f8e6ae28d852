"""The float64 twin of a model: a deep copy, made afresh at each call, whose floating
parameters and buffers are float64; and the walks over a model's modules, parameters and
buffers that the prepared problem (torch_ref.problem) reads, each from one walk.

The copy is copy.deepcopy's, step for step, without its generic path's cost where a module's
class copies as nn.Module does (`copy_module`); the tensors are copied first, straight to
float64, so that no float32 copy is ever made.
"""

from __future__ import annotations

import copy
import operator
import types
from collections import OrderedDict
from typing import Any

import torch
import torch.nn as nn
from torch.nn.utils.spectral_norm import SpectralNorm
from torch.nn.utils.weight_norm import WeightNorm

from torch_ref.errors import UnsupportedModuleError

# --- walks: a model's modules, parameters and buffers --------------------------------


#: the methods by which nn.Module lists a model's modules and tensors
_LISTINGS = (
    "named_modules",
    "modules",
    "named_parameters",
    "parameters",
    "named_buffers",
    "buffers",
    "_named_members",
)
#: a class's listing methods, all at once (several walks ask, at each call: ~0.5 µs, not 2)
_listings = operator.attrgetter(*_LISTINGS)


def lists_as_nn_module(model: nn.Module) -> bool:
    """The model's class lists its modules, parameters and buffers as nn.Module does (none
    of those methods overridden): a walk of the module tables gives what they give."""
    return all(map(operator.is_, _listings(type(model)), _listings(nn.Module)))


def module_walk(model: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """(path, module) for every module of `model`, in the order and with the repeats of
    model.named_modules(prefix=prefix, remove_duplicate=False) (a shared module under each
    of its paths), without its generators' cost."""
    if not lists_as_nn_module(model):
        return list(model.named_modules(prefix=prefix, remove_duplicate=False))
    out: list[tuple[str, nn.Module]] = []
    stack = [(prefix, model)]
    while stack:
        path, m = stack.pop()
        out.append((path, m))
        children = [(k, c) for k, c in m._modules.items() if c is not None]
        stack.extend((f"{path}.{k}" if path else k, c) for k, c in reversed(children))
    return out


def modules_of(
    model: nn.Module, walk: list[tuple[str, nn.Module]] | None = None
) -> tuple[list[tuple[str, nn.Module]], list[nn.Module]]:
    """list(model.named_modules()) and list(model.modules()): each module under its first
    path (a shared module's second path, and what lies under it, left out). (`walk`:
    module_walk(model), where the caller has it.)"""
    if not lists_as_nn_module(model):
        return list(model.named_modules()), list(model.modules())
    seen: set[int] = set()
    named = []
    for path, m in module_walk(model) if walk is None else walk:
        if id(m) not in seen:
            seen.add(id(m))
            named.append((path, m))
    return named, [m for _, m in named]


def named_members(
    model: nn.Module, modules: list[tuple[str, nn.Module]], table: str
) -> list[tuple[str, torch.Tensor]]:
    """list(model.named_parameters()) (table "_parameters") or list(model.named_buffers())
    ("_buffers"): each tensor once, under its first name, read from `modules` (the model's
    (path, module) pairs, as modules_of or module_walk lists them)."""
    if not lists_as_nn_module(model):
        own = {"_parameters": "named_parameters", "_buffers": "named_buffers"}[table]
        return list(getattr(model, own)())
    seen: set[int] = set()  # (by id, as a set of tensors hashes them: no Tensor.__hash__ calls)
    named = []
    for prefix, m in modules:
        for k, v in getattr(m, table).items():
            if v is None or id(v) in seen:
                continue
            seen.add(id(v))
            named.append((prefix + ("." if prefix else "") + k, v))
    return named


def tensors_of(model: nn.Module) -> list[torch.Tensor]:
    """[*model.parameters(), *model.buffers()]."""
    if not lists_as_nn_module(model):
        return [*model.parameters(), *model.buffers()]
    modules = module_walk(model)
    return [
        t for table in ("_parameters", "_buffers") for _, t in named_members(model, modules, table)
    ]


def live_parameters(model: nn.Module, modules: list[tuple[str, nn.Module]]) -> set[int]:
    """The ids of model.parameters() that require grad, read from `modules` (module_walk's)."""
    if not lists_as_nn_module(model):  # (its own way of listing)
        return {id(p) for p in model.parameters() if p.requires_grad}
    return {
        id(p)
        for _, m in modules
        for p in m._parameters.values()
        if p is not None and p.requires_grad
    }


# --- the twin -----------------------------------------------------------------------


#: forward pre-hooks that set a module's tensor attribute before every forward
_RECOMPUTED = (WeightNorm, SpectralNorm)


def twin_of(model: nn.Module, modules: list[nn.Module] | None = None) -> nn.Module:
    """The float64 twin: a deep copy, floating parameters and buffers float64. (`modules`:
    the model's modules() as modules_of lists them, where the caller has them.)"""
    return _twin(model, modules)[0]


def twin_and_walk(
    model: nn.Module, modules: list[nn.Module], walk: list[tuple[str, nn.Module]] | None
) -> tuple[nn.Module, list[tuple[str, nn.Module]] | None]:
    """twin_of(model, modules) and module_walk(twin), given `walk`, module_walk(model) (None
    where the model lists its modules its own way): where the twin is the copy's image of the
    model, module for module (each copied by copy_module, its submodule tables' entries the
    copies of the model's), its walk is the model's walk through the copy's memo, with no
    second walk; else None (the twin is to be walked, where its run is)."""
    twin, memo = _twin(model, modules)
    if memo is None or walk is None:
        return twin, None
    return twin, [(path, memo[id(m)]) for path, m in walk]


def _twin(
    model: nn.Module, modules: list[nn.Module] | None
) -> tuple[nn.Module, dict[int, Any] | None]:
    """twin_of's twin, and its copy's memo where the twin is the memo's image of the model
    (every module copied by copy_module, every tensor one of the float64 copies; else None)."""
    memo: dict[int, Any] = {}
    with torch.no_grad():  # (the copies as of t.detach())
        for m in model.modules() if modules is None else modules:
            for t in (*m._parameters.values(), *m._buffers.values()):  # float64 as copied
                if type(t) not in (nn.Parameter, torch.Tensor):
                    if t is not None:  # (a subclass: deepcopy copies it, as it is)
                        memo[id(_ELSEWHERE)] = True
                elif id(t) not in memo:
                    # (double and clone: the copy `to(dtype, copy=True)` makes, for less)
                    to_float64 = t.is_floating_point() and t.dtype != torch.float64
                    data = t.double() if to_float64 else t.clone()
                    memo[id(t)] = (
                        nn.Parameter(data, t.requires_grad) if type(t) is nn.Parameter else data
                    )
            for hook in m._forward_pre_hooks.values():  # the old nn.utils.weight_norm and
                if isinstance(hook, _RECOMPUTED):  # spectral_norm: a weight each forward
                    computed = getattr(m, hook.name, None)  # recomputes
                    if isinstance(computed, torch.Tensor):
                        memo.setdefault(id(computed), computed.to(torch.float64, copy=True))
    try:
        twin = copy_module(model, memo)
    except Exception as err:
        raise UnsupportedModuleError(_uncopyable(model, err)) from None
    if modules is not None and id(_ELSEWHERE) not in memo and lists_as_nn_module(model):
        if not torch.is_inference_mode_enabled():  # (each module copied by copy_module, each
            return twin, memo  # of their tensors one of the copies above: float64, not inference)
    tensors = tensors_of(twin)
    if any(t.is_floating_point() and t.dtype != torch.float64 for t in tensors):
        twin = twin.to(torch.float64)  # (what a module's own __deepcopy__ copied as it was)
        tensors = tensors_of(twin)
    for t in tensors:  # made under torch.inference_mode()
        if t.is_inference():
            t.data = t.data.clone()
    return twin, None


def copy_module(m: nn.Module, memo: dict[int, Any]) -> nn.Module:
    """copy.deepcopy(m, memo), step for step as deepcopy rebuilds a module whose class
    copies as nn.Module does (`__new__`, a deep copy of `__getstate__()`, `__setstate__`),
    without its generic path's cost: submodules first, empty hook tables made empty, what
    deepcopy returns as it is kept, the entries of `_parameters`, `_buffers` and `_modules`
    looked up in the memo. Any module that copies otherwise goes through copy.deepcopy."""
    found = memo.get(id(m))
    if found is not None:
        return found
    cls = type(m)
    if (
        getattr(cls, "__deepcopy__", None) is not None
        or cls.__reduce_ex__ is not object.__reduce_ex__
        or cls.__reduce__ is not object.__reduce__
        or hasattr(cls, "__getnewargs_ex__")
        or hasattr(cls, "__getnewargs__")
        or hasattr(cls, "__slots__")
    ):
        memo[id(_ELSEWHERE)] = True
        return copy.deepcopy(m, memo)
    new = cls.__new__(cls)
    memo[id(m)] = new
    state = m.__getstate__()
    for sub in state.get("_modules", {}).values():
        if isinstance(sub, nn.Module):
            copy_module(sub, memo)
    copied = {}
    for k, v in state.items():  # (empty hook tables are most of a module's state)
        kind = type(v)
        if kind in _ATOMIC:
            copied[k] = v
        elif kind in _TABLES and not v:
            copied[k] = kind()
        elif kind is dict:
            copied[k] = _copy_dict(v, memo)
        else:
            copied[k] = copy.deepcopy(v, memo)
    new.__setstate__(copied)
    return new


#: its id is a key of the memo once a module was copied by copy.deepcopy, or a tensor was
#: left to it (a subclass's, or an entry of a dict not found in the memo): the twin's tensors
#: then need a look (copy.deepcopy keeps its own keep-alive list under id(memo) likewise)
_ELSEWHERE = object()
#: what copy.deepcopy returns as it is (among its atomic types)
_ATOMIC = frozenset({type(None), bool, int, float, str, types.FunctionType, type})
#: a module's hook tables (and `_non_persistent_buffers_set`): an empty one copies as a new one
_TABLES = frozenset({dict, OrderedDict, set})


def _copy_dict(d: dict, memo: dict[int, Any]) -> dict:
    """copy.deepcopy(d, memo) of a dict (a module's `_parameters`, `_buffers`, `_modules`:
    their tensors and submodules are in the memo), its steps written out."""
    found = memo.get(id(d))
    if found is not None:
        return found
    new: dict = {}
    memo[id(d)] = new
    for k, v in d.items():
        value = memo.get(id(v))
        if value is None:
            if v is not None:
                memo[id(_ELSEWHERE)] = True
            value = copy.deepcopy(v, memo)  # (before its key)
        new[k if type(k) is str else copy.deepcopy(k, memo)] = value
    memo.setdefault(id(memo), []).append(d)  # (deepcopy keeps d alive: its id stays its)
    return new


def _uncopyable(model: nn.Module, err: Exception) -> str:
    for path, m in model.named_modules():
        for k, v in vars(m).items():
            if k.startswith("_") and k in ("_parameters", "_buffers", "_modules"):
                continue
            try:
                copy.deepcopy(v)
            except Exception:
                where = f"{path}.{k}" if path else k
                return (
                    f"the model cannot be deep-copied: attribute {where!r} of "
                    f"{type(m).__name__} ({type(v).__name__}) fails ({type(err).__name__}: "
                    f"{err}); the oracle runs a float64 copy and never the model itself: make "
                    "it copyable (e.g. __deepcopy__, or create it outside the module)"
                )
    return f"the model cannot be deep-copied ({type(err).__name__}: {err})"
