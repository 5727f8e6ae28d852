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

What a check runs on (the loss and its target, the user's model, the drawn inputs) is
torch_ref.cli_problem; this module is the parser, the check and main.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import torch_ref
from torch_ref.cli_problem import (
    CLASS_LOSSES,
    DTYPES,
    INPUT_DTYPES,
    LOSSES,
    CheckError,
    _one_line,
    _shapes,
    _show_range,
    _torch_dtype,
    build_model,
    draw_inputs,
    load_model_factory,
    output_shape,
)
from torch_ref.tolerances import ATOL, RTOL

PROG = "python -m torch_ref"
CONSOLE_PROG = "torch-ref"  # the console script that pip installs

EXIT_OK, EXIT_MISMATCH, EXIT_ERROR = 0, 1, 2


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit status 2), like every other."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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
        default=RTOL,
        help="relative tolerance: a tensor is ok when max|yours − oracle| ≤ "
        "atol + rtol·scale, scale its largest |entry| (default: %(default)s)",
    )
    check.add_argument(
        "--atol",
        type=_non_negative,
        default=ATOL,
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
