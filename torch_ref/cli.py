"""The command line: `torch-ref check FILE.py:ClassName --input-shape 8,1,28,28 ...`
(the same as `python -m torch_ref check ...`).

`check` imports the user's class, builds it under a fixed seed, draws a seeded random batch
(floating, or integers for token ids and class indices) and a target that fits the loss,
runs `torch_ref.compare_gradients` and prints the report table: yours (torch.autograd through
your model) against the oracle (the explicit backprop, in float64). Exit status: 0 when they
agree, 1 on a mismatch, 2 on a usage, import or unsupported-model error (one line on stderr,
no traceback).

`--help` and a usage error import neither torch nor NumPy: the tables below name torch's
classes and dtypes by their names, and torch is imported when a check runs. A reader that
stops reading (`| head -5`) ends the output quietly.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import inspect
import json
import math
import os
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import torch_ref

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

PROG = "python -m torch_ref"
CONSOLE_PROG = "torch-ref"  # the console script that pip installs

EXIT_OK, EXIT_MISMATCH, EXIT_ERROR = 0, 1, 2


class CheckError(Exception):
    """A problem with what the user asked to check; printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit status 2), like every other."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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


def compare_gradients(*args: Any, **kwargs: Any) -> Any:
    """torch_ref.compare_gradients, imported when a check runs (not for --help)."""
    from torch_ref.oracle import compare_gradients

    return compare_gradients(*args, **kwargs)


SEED_LIMIT = 2**64  # torch.manual_seed takes 0 ≤ seed < 2**64


# --- argument types ------------------------------------------------------------------


def _loss(text: str) -> str:
    """A --loss name: ours (mse), torch's functional name (mse_loss) or its module's class
    name (MSELoss), in any case."""
    names = {n: n for n in LOSSES}
    names |= {c.functional: n for n, c in LOSSES.items()}
    names |= {c.module: n for n, c in LOSSES.items()}
    found = {k.lower(): v for k, v in names.items()}.get(text.lower())
    if found is None:
        raise argparse.ArgumentTypeError(
            f"unknown loss {text!r}; choose from {', '.join(LOSSES)} (or torch's names for "
            "them: mse_loss or MSELoss for mse, ...)"
        )
    return found


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(
            f"expected positive integers separated by commas, such as 8,1,28,28; got {text!r}"
        )
    return shape


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number ≥ 0, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(
            f"expected an integer from 0 to 2**64 - 1 (torch's range of seeds), got {text!r}"
        )
    return value


def _range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(s) for s in text.split(","))
    except ValueError:
        low = high = float("nan")
    if not -math.inf < low < high < math.inf:
        raise argparse.ArgumentTypeError(
            f"expected two finite numbers LOW,HIGH with LOW < HIGH, such as 0,100; got {text!r}"
        )
    return low, high


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _init_args(text: str) -> tuple[list[Any], dict[str, Any]]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err}): {text!r}") from None
    if isinstance(value, dict):
        return [], value
    if isinstance(value, list):
        return value, {}
    raise argparse.ArgumentTypeError(
        f"expected a JSON object (keyword arguments) or array (positional), got {text!r}"
    )


def version_text() -> str:
    """What `--version` prints: this package's version and those of what it runs on."""
    import numpy as np
    import torch

    return (
        f"manual-bp {torch_ref.__version__} (torch {torch.__version__}, numpy {np.__version__}, "
        f"Python {platform.python_version()})"
    )


class _Version(argparse.Action):
    """--version, which imports torch and NumPy only when it is given."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> NoReturn:
        print(version_text())
        parser.exit()


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = Parser(
        prog=prog,
        description="The gradient oracle of manual-bp on the command line.",
    )
    parser.add_argument("--version", action=_Version, help="show the versions and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser(
        "check",
        help="check torch.autograd on your model against the oracle's explicit backprop",
        description=(
            "Import a torch.nn.Module class from a Python file, build it under --seed, draw a\n"
            "seeded random batch (floating, or integer token ids with --input-dtype) and a\n"
            "target that fits --loss, and compare yours (torch.autograd through your model)\n"
            "with the oracle (the explicit-δ backprop of manual-bp), both in float64: every\n"
            "parameter's gradient and every Linear/Conv layer's δ. Prints the report table.\n"
            "Torch's global random state is left as it was."
        ),
        epilog="\n".join(
            [
                "the target drawn for each loss (C: the model's output size along dim 1):",
                *(f"  {name:<16} {choice.help}" for name, choice in LOSSES.items()),
                "",
                "examples:",
                f"  {prog} check examples/lenet.py:LeNet --input-shape 8,1,28,28 \\",
                "      --loss cross_entropy --classes 10",
                f"  {prog} check examples/token_classifier.py:TokenClassifier \\",
                "      --input-shape 4,12 --input-dtype int64 --input-range 0,100 \\",
                "      --loss cross_entropy",
                "",
                "exit status: 0 the gradients agree, 1 they differ, 2 a usage, import or",
                "unsupported-model error (one line on stderr)",
            ]
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument(
        "model",
        metavar="FILE.py:ClassName",
        help="the model: a Python file (imported with its directory on sys.path) or a dotted "
        "module, then ':' and the name of a torch.nn.Module class or of a function "
        "returning one",
    )
    check.add_argument(
        "--input-shape",
        type=_shape,
        required=True,
        action="append",
        metavar="N,D1,...",
        help="shape of the random input batch, batch size first (8,1,28,28 for 8 MNIST "
        "images); give it once per input for a forward that takes several tensors",
    )
    check.add_argument(
        "--loss",
        type=_loss,
        default="mse",
        metavar="{" + ",".join(LOSSES) + "}",
        help="the loss (torch's names work too: mse_loss, MSELoss); the target drawn for each "
        "is listed below (default: %(default)s)",
    )
    check.add_argument(
        "--classes",
        type=_positive_int,
        metavar="C",
        help="number of classes C, for cross_entropy and nll; the model's output must have C "
        "entries along dim 1 (default: read from the model's output)",
    )
    check.add_argument(
        "--input-dtype",
        choices=INPUT_DTYPES,
        help="dtype of the input batch: an integer dtype for token ids or class indices "
        "(an nn.Embedding's input), drawn from --input-range (default: --dtype)",
    )
    check.add_argument(
        "--input-range",
        type=_range,
        metavar="LOW,HIGH",
        help="draw the inputs uniformly from [LOW, HIGH): integers for an integer "
        "--input-dtype (required there; 0,1000 for a vocabulary of 1000 tokens), else "
        "real numbers; write --input-range=-1,1 when LOW is negative "
        "(default: floating inputs from N(0, 1))",
    )
    check.add_argument(
        "--seed",
        type=_seed,
        default=0,
        help="seed of the model's initialisation, the batch and the target, "
        "from 0 to 2**64 - 1 (default: %(default)s)",
    )
    check.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float64",
        help="dtype of the model and of floating inputs; the comparison itself always "
        "runs on a float64 copy of the model (default: %(default)s)",
    )
    check.add_argument(
        "--train",
        action="store_true",
        help="keep the model in training mode (default: model.eval(), so that "
        "BatchNorm uses its running statistics and Dropout is off)",
    )
    check.add_argument(
        "--l2",
        type=_non_negative,
        default=0.0,
        help="L2 penalty (l2/2)·Σ‖W‖² on Linear and Conv weights (default: %(default)s)",
    )
    check.add_argument(
        "--rtol",
        type=_non_negative,
        default=1e-7,
        help="relative tolerance: a tensor is ok when max|yours − oracle| ≤ "
        "atol + rtol·scale, scale its largest |entry| (default: %(default)s)",
    )
    check.add_argument(
        "--atol",
        type=_non_negative,
        default=1e-10,
        help="absolute tolerance (default: %(default)s)",
    )
    check.add_argument(
        "--init-args",
        type=_init_args,
        default=([], {}),
        metavar="JSON",
        help="constructor arguments as JSON: an object for keywords "
        "('{\"hidden\": 32}') or an array for positional ones "
        "(default: none)",
    )
    return parser


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


# --- the check -------------------------------------------------------------------------


def check(args: argparse.Namespace) -> int:
    name, factory = load_model_factory(args.model)
    init_args, init_kwargs = args.init_args
    model = build_model(name, factory, init_args, init_kwargs, args.seed)
    import torch

    dtype = _torch_dtype(args.dtype)
    model = model.to(dtype).train(args.train)
    input_dtype = args.input_dtype or args.dtype
    g = torch.Generator().manual_seed(args.seed)
    inputs = tuple(
        draw_inputs(shape, _torch_dtype(input_dtype), args.input_range, g)
        for shape in args.input_shape
    )
    out = output_shape(model, inputs, args.seed)
    loss = LOSSES[args.loss]
    classes = out[1] if len(out) > 1 else 0
    if args.loss in CLASS_LOSSES:
        if len(out) < 2:
            raise CheckError(
                f"{args.loss} needs an output of shape (N, C, ...), the model returns {out}"
            )
        if args.classes is not None and args.classes != classes:
            raise CheckError(
                f"--classes {args.classes}, but the model's output {out} has "
                f"{classes} entries along dim 1"
            )
    target = loss.target(out, classes, g)
    if target.is_floating_point():
        target = target.to(dtype)
    try:
        report = compare_gradients(
            model,
            loss.build(),
            inputs[0] if len(inputs) == 1 else inputs,
            target,
            l2=args.l2,
            rtol=args.rtol,
            atol=args.atol,
        )
    except (NotImplementedError, ValueError, TypeError) as err:
        raise CheckError(f"{type(err).__name__}: {_one_line(err)}") from None
    except MemoryError as err:
        raise CheckError(f"out of memory while comparing: {_one_line(err)}") from None
    mode = "train" if args.train else "eval"
    drawn = "" if args.input_range is None else " in " + _show_range(args.input_range)
    text = str(report) if report.ok else report.failure_message()
    _print(
        f"{args.model}: inputs {_shapes(inputs)} {input_dtype}{drawn}, output {out}, "
        f"{args.loss} target {tuple(target.shape)}, seed {args.seed}, {mode} mode\n"
        + "\n".join(line.rstrip() for line in text.splitlines())
    )
    return EXIT_OK if report.ok else EXIT_MISMATCH


def _print(text: str) -> None:
    """print, but a reader that stopped reading (`| head -5`) ends the output quietly."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        _stdout_to_devnull()


def _stdout_to_devnull() -> None:
    # NOTE: the reader closed the pipe; stdout goes to /dev/null so that the interpreter's
    # own flush at exit does not fail again (the recipe of Python's signal module docs,
    # "Note on SIGPIPE": https://docs.python.org/3/library/signal.html#note-on-sigpipe)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"check": check}


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Run the command line; returns the exit status (argparse exits itself on usage errors)."""
    try:
        args = build_parser(prog).parse_args(argv)
    except BrokenPipeError:  # --help | head -3
        _stdout_to_devnull()
        return EXIT_OK
    try:
        return COMMANDS[args.command](args)
    except CheckError as err:
        print(f"{prog} {args.command}: error: {err}", file=sys.stderr)
        return EXIT_ERROR


def console() -> int:
    """The `torch-ref` console script."""
    return main(prog=CONSOLE_PROG)
