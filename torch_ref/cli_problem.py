"""What `torch-ref check` runs on: the loss and the target drawn for it, the user's model
loaded from FILE.py:ClassName (or a module path) and built under a seed, and the seeded
inputs drawn for it. Imports neither torch nor NumPy until a check runs (`--help` stays
fast); the command line itself is torch_ref.cli.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import inspect
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    import torch.nn as nn


class CheckError(Exception):
    """A problem with what the user asked to check; printed as one line, exit status 2."""


# --- losses: the torch module and the target drawn for it ----------------------------


def _normal_target(shape: tuple[int, ...], classes: int, g: torch.Generator) -> torch.Tensor:
    import torch

    return torch.randn(shape, generator=g, dtype=torch.float64)


def _class_target(shape: tuple[int, ...], classes: int, g: torch.Generator) -> torch.Tensor:
    import torch

    return torch.randint(0, classes, (shape[0], *shape[2:]), generator=g)  # (N, d1, ...)


def _probability_target(shape: tuple[int, ...], classes: int, g: torch.Generator) -> torch.Tensor:
    import torch

    return torch.rand(shape, generator=g, dtype=torch.float64)


@dataclass(frozen=True)
class LossChoice:
    """A loss of --loss: its torch module's class name (in torch.nn), its functional name
    (torch.nn.functional's, manual_bp.get_loss's), the target drawn for it."""

    module: str
    functional: str
    target: Callable[[tuple[int, ...], int, torch.Generator], torch.Tensor]
    help: str

    def build(self) -> nn.Module:
        import torch.nn as nn

        return getattr(nn, self.module)()


LOSSES: dict[str, LossChoice] = {
    "mse": LossChoice("MSELoss", "mse_loss", _normal_target, "N(0, 1), the output's shape"),
    "l1": LossChoice("L1Loss", "l1_loss", _normal_target, "N(0, 1), the output's shape"),
    "smooth_l1": LossChoice(
        "SmoothL1Loss", "smooth_l1_loss", _normal_target, "N(0, 1), the output's shape"
    ),
    "huber": LossChoice("HuberLoss", "huber_loss", _normal_target, "N(0, 1), the output's shape"),
    "cross_entropy": LossChoice(
        "CrossEntropyLoss",
        "cross_entropy",
        _class_target,
        "class indices in [0, C), shape (N, d1, ...)",
    ),
    "nll": LossChoice(
        "NLLLoss",
        "nll_loss",
        _class_target,
        "class indices in [0, C); the model must output log-probabilities",
    ),
    "bce": LossChoice(
        "BCELoss",
        "binary_cross_entropy",
        _probability_target,
        "U(0, 1), the output's shape; the model must output probabilities",
    ),
    "bce_with_logits": LossChoice(
        "BCEWithLogitsLoss",
        "binary_cross_entropy_with_logits",
        _probability_target,
        "U(0, 1), the output's shape",
    ),
}
CLASS_LOSSES = {name for name, c in LOSSES.items() if c.target is _class_target}

#: dtypes of the model (and of floating inputs); the comparison runs on a float64 copy
DTYPES = ("float64", "float32", "float16", "bfloat16")
#: dtypes of the input batch: the model's, or integers (token ids, class indices)
INPUT_DTYPES = (*DTYPES, "int64", "int32")
#: modules whose input is integer indices, not features (names in torch.nn)
INDEX_MODULES = ("Embedding", "EmbeddingBag")


def _torch_dtype(name: str) -> torch.dtype:
    import torch

    return getattr(torch, name)


# --- loading the user's model --------------------------------------------------------


def _import_file(path: Path) -> Any:
    """The module at `path`, imported with its directory first on sys.path (as python does)."""
    if not path.is_file():
        raise CheckError(f"no such file: {path}")
    name = path.stem
    if not name.isidentifier() or name in sys.modules:
        name = "_torch_ref_check_" + "".join(c if c.isalnum() else "_" for c in path.stem)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CheckError(f"cannot import {path}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise CheckError(f"importing {path} failed: {type(err).__name__}: {err}") from None
    finally:
        sys.path.remove(str(path.parent))
    return module


def _import_module(dotted: str) -> Any:
    try:
        return importlib.import_module(dotted)
    except Exception as err:
        raise CheckError(
            f"importing module {dotted!r} failed: {type(err).__name__}: {err}"
        ) from None


def load_model_factory(spec: str) -> tuple[str, Callable[..., Any]]:
    """The class (or function) that `FILE.py:Name` or `package.module:Name` names."""
    where, sep, attr = spec.rpartition(":")
    if not sep or not where or not attr:
        raise CheckError(f"expected FILE.py:ClassName or package.module:ClassName, got {spec!r}")
    path = Path(where).expanduser()
    is_file = where.endswith(".py") or path.exists() or "/" in where or "\\" in where
    module = _import_file(path.resolve()) if is_file else _import_module(where)
    import torch.nn as nn

    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            classes = sorted(
                n
                for n, v in vars(module).items()
                if inspect.isclass(v)
                and issubclass(v, nn.Module)
                and v.__module__ == module.__name__
            )
            raise CheckError(
                f"{where} has no attribute {attr!r}; the nn.Module classes it defines: "
                f"{', '.join(classes) or 'none'}"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise CheckError(f"{spec} is a {type(obj).__name__}, not a class or function")
    return attr, obj


def build_model(
    name: str, factory: Callable[..., Any], args: list[Any], kwargs: dict[str, Any], seed: int
) -> nn.Module:
    """factory(*args, **kwargs), its random initialisation drawn under `seed`."""
    import torch
    import torch.nn as nn

    call = f"{name}({', '.join([*map(repr, args), *(f'{k}={v!r}' for k, v in kwargs.items())])})"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = factory(*args, **kwargs)
        except Exception as err:
            raise CheckError(f"{call} failed: {type(err).__name__}: {err}") from None
    if not isinstance(model, nn.Module):
        raise CheckError(f"{call} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _show_range(value_range: tuple[float, float]) -> str:
    return f"[{value_range[0]:g}, {value_range[1]:g})"


def _index_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    import torch.nn as nn

    kinds = tuple(getattr(nn, name) for name in INDEX_MODULES)
    return [(name, m) for name, m in model.named_modules() if isinstance(m, kinds)]


def _shapes(inputs: tuple[torch.Tensor, ...]) -> str:
    """ "(8, 4)", or "(8, 4), (8, 3)" for several inputs."""
    return ", ".join(str(tuple(x.shape)) for x in inputs)


def _forward_failed(
    model: nn.Module, inputs: tuple[torch.Tensor, ...], err: Exception
) -> CheckError:
    """The one-line error for a forward that failed, leading with the likely cause when the
    model holds an Embedding (which takes integer token ids)."""
    failed = f"{type(err).__name__}: {_one_line(err)}"
    found = _index_modules(model)
    if not found:
        return CheckError(
            f"the model's forward failed on inputs of shape {_shapes(inputs)}: {failed}"
        )
    inputs = inputs[0]
    name, module = found[0]
    takes = (
        f"the model's {type(module).__name__} {name!r} takes integer token ids in "
        f"[0, {module.num_embeddings})"
    )
    if inputs.is_floating_point():
        return CheckError(
            f"{takes}, not {dtype_name(inputs.dtype)} inputs: pass --input-dtype int64 "
            f"--input-range 0,{module.num_embeddings} (the forward failed with {failed})"
        )
    low, high = int(inputs.min()), int(inputs.max())
    return CheckError(
        f"{takes}; the inputs drawn run from {low} to {high} (the forward failed with {failed})"
    )


def draw_inputs(
    shape: tuple[int, ...],
    dtype: torch.dtype,
    value_range: tuple[float, float] | None,
    g: torch.Generator,
) -> torch.Tensor:
    """The seeded input batch: N(0, 1), or uniform over [low, high), integers for an integer
    dtype; a shape too large for this machine is a CheckError before anything is allocated."""
    import torch

    entries = math.prod(shape)
    size = entries * torch.empty((), dtype=dtype).element_size()
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not a POSIX system
        memory = None
    what = f"inputs of shape {shape} ({entries:.3g} entries, {size / 2**30:.3g} GiB)"
    if entries >= 2**63 or (memory is not None and size > memory):
        machine = "" if memory is None else f": this machine has {memory / 2**30:.3g} GiB"
        raise CheckError(f"{what} do not fit in memory{machine}")
    try:
        if dtype.is_floating_point:
            if value_range is None:
                return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
            low, high = value_range
            uniform = torch.rand(shape, generator=g, dtype=torch.float64)
            return (low + (high - low) * uniform).to(dtype)
        if value_range is None:
            raise CheckError(
                f"--input-dtype {dtype_name(dtype)} needs --input-range "
                "LOW,HIGH, the integers to draw from (0,1000 for token ids of a vocabulary "
                "of 1000)"
            )
        info = torch.iinfo(dtype)
        if not all(v.is_integer() and info.min <= v <= info.max + 1 for v in value_range):
            raise CheckError(
                f"--input-range {_show_range(value_range)} for {dtype_name(dtype)} inputs: "
                f"expected integers from {info.min} to {info.max + 1}"
            )
        low, high = (int(v) for v in value_range)
        return torch.randint(low, high, shape, generator=g, dtype=dtype)
    except (RuntimeError, MemoryError) as err:
        raise CheckError(f"cannot allocate {what}: {_one_line(err)}") from None


def output_shape(model: nn.Module, inputs: tuple[torch.Tensor, ...], seed: int) -> tuple[int, ...]:
    """The shape of model(*inputs), from a float64 copy, without gradients."""
    import torch

    twin = copy.deepcopy(model).to(torch.float64)
    xs = tuple(x.to(torch.float64) if x.is_floating_point() else x for x in inputs)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # a model in training mode may draw dropout masks
        try:
            out = twin(*xs)
        except Exception as err:
            raise _forward_failed(model, inputs, err) from None
    if not isinstance(out, torch.Tensor):
        raise CheckError(f"the model's forward returned a {type(out).__name__}, not one tensor")
    return tuple(out.shape)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())
