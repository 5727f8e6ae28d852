"""`python -m torch_ref check FILE.py:ClassName`: a user's model file outside the repository.

A few runs go through a real subprocess (`python -m torch_ref` in a temporary directory);
the tables of cases call `torch_ref.cli.main` in-process, which is the same code."""

from __future__ import annotations

import fnmatch
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from manual_bp.ops.activations import ACTIVATIONS, Activation
from torch_ref import cli

ROOT = Path(__file__).resolve().parents[1]

BLOCKS = """
import torch.nn as nn


def conv_block(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
"""

MODELS = """
import torch
import torch.nn as nn

from blocks import conv_block  # a sibling module: the user's file has its own imports

HEADS = {None: nn.Identity, "log_softmax": lambda: nn.LogSoftmax(dim=1), "sigmoid": nn.Sigmoid}


class SmallCNN(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.features = conv_block(1, 4)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 4 * 4, classes))

    def forward(self, x):
        return self.head(self.features(x))


class MLP(nn.Module):
    def __init__(self, n_in=4, hidden=3, n_out=3, head=None):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, n_out),
                                 HEADS[head]())

    def forward(self, x):
        return self.net(x)


def make_mlp(hidden=3):
    return MLP(hidden=hidden)


class WithDropout(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5), nn.Linear(3, 2))

    def forward(self, x):
        return self.net(x)


class Spectrum(nn.Module):
    # a complex FFT's magnitude: no row, no decomposition

    def forward(self, x):
        return torch.fft.fft(x).abs()


class Patches(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(nn.init.ones_(nn.Linear(1, 1).weight[0].detach().clone()))
        self.shuffle = Spectrum()

    def forward(self, x):
        return self.shuffle(x * self.scale).flatten(1)


class Tokens(nn.Module):
    # a bag of words: integer token ids in [0, vocabulary)

    def __init__(self, vocabulary=10):
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, 3)
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        return self.head(self.embedding(x).mean(1))


class Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 3), nn.Linear(2, 3)

    def forward(self, x, y):
        return torch.tanh(self.a(x)) * self.b(y)


class NotAModule:
    pass
"""

BROKEN = "import not_a_module_anyone_has  # noqa\n"

ERROR_PREFIX = "python -m torch_ref check: error: "


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's project outside the repository; its modules leave sys.modules afterwards."""
    root = tmp_path_factory.mktemp("user_project")
    (root / "blocks.py").write_text(BLOCKS)
    (root / "models.py").write_text(MODELS)
    (root / "broken.py").write_text(BROKEN)
    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "nets.py").write_text("from torch.nn import Linear as Layer\n")
    before = set(sys.modules)
    yield root
    for name in set(sys.modules) - before:
        if str(root) in str(getattr(sys.modules[name], "__file__", "") or ""):
            del sys.modules[name]


def run_main(
    project: Path, argv: list[str], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    monkeypatch.chdir(project)
    rc = cli.main(["check", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def run_subprocess(project: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """`python -m torch_ref ARGV` in `project`, importing this checkout's torch_ref (not the
    one an editable install points to, which may be another checkout)."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "torch_ref", *argv],
        cwd=project,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=300,
    )


# --- through a real subprocess, in a directory outside the repository -------------------


def test_subprocess_ok_prints_the_table_and_exits_0(project: Path) -> None:
    assert not project.resolve().is_relative_to(Path(__file__).resolve().parents[1])
    result = run_subprocess(
        project,
        "check",
        "models.py:SmallCNN",
        "--input-shape",
        "2,1,8,8",
        "--loss",
        "cross_entropy",
        "--classes",
        "10",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "models.py:SmallCNN: inputs (2, 1, 8, 8) float64, output (2, 10), "
        "cross_entropy target (2,), seed 0, eval mode"
    )
    assert lines[1].startswith("GradientReport: OK (6 tensors, rtol=1e-07, atol=1e-10)")
    for name, shape in [
        ("features.0.weight", "(4, 1, 3, 3)"),
        ("head.1.bias", "(10,)"),
        ("features.0", "(2, 4, 8, 8)"),
        ("head.1", "(2, 10)"),
    ]:
        assert any(name in line and shape in line and line.endswith("ok") for line in lines), name


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--input-shape", "3,4", "--seed", str(2**64)],
            "argument --seed: expected an integer from 0 to 2**64 - 1*",
        ),
        (
            ["--input-shape", "10000000000,10000000000,4"],
            "inputs of shape (10000000000, 10000000000, 4) (4e+20 entries, * GiB) do not fit*",
        ),
    ],
    ids=["seed beyond 2**64", "input shape too large to allocate"],
)
def test_subprocess_issue_13_errors_are_one_line(project: Path, argv, message) -> None:
    result = run_subprocess(project, "check", "models.py:MLP", *argv)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert fnmatch.fnmatchcase(result.stderr.strip(), ERROR_PREFIX + message), result.stderr


def test_subprocess_unsupported_module_exits_2_with_one_line(project: Path) -> None:
    result = run_subprocess(project, "check", "models.py:Patches", "--input-shape", "2,1,4,4")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(
        ERROR_PREFIX + "UnsupportedModuleError: torch.fft.fft in module 'shuffle' (Spectrum)"
    )
    assert "is not supported" in result.stderr


def test_help_explains_every_flag(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["check", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    check = next(
        a for a in cli.build_parser()._actions if isinstance(a, cli.argparse._SubParsersAction)
    ).choices["check"]
    flags = [s for a in check._actions for s in a.option_strings]
    assert {
        "--input-shape",
        "--loss",
        "--classes",
        "--seed",
        "--dtype",
        "--train",
        "--l2",
        "--rtol",
        "--atol",
        "--init-args",
        "--input-dtype",
        "--input-range",
    } <= set(flags)
    for action in check._actions:
        assert action.help, action.dest
        for flag in action.option_strings:
            assert flag in text, flag
    for loss in cli.LOSSES:
        assert f"\n  {loss} " in text, loss
    assert "exit status: 0" in text
    assert "(default: 0)" in text and "(default: --dtype)" in text


def test_version(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == (
        f"manual-bp {importlib.metadata.version('manual-bp')} (torch {torch.__version__}, "
        f"numpy {np.__version__}, Python {platform.python_version()})\n"
    )


def test_the_console_script_names_itself(project, capsys, monkeypatch) -> None:
    monkeypatch.chdir(project)
    assert cli.main(["check", "nothing.py:Net", "--input-shape", "3,4"], prog="torch-ref") == 2
    assert capsys.readouterr().err.startswith("torch-ref check: error: no such file: ")


# --- the same code in-process: tables of cases ----------------------------------------------

OK_CASES = {
    "mse (the default loss)": ["models.py:MLP", "--input-shape", "3,4"],
    "l1": ["models.py:MLP", "--input-shape", "3,4", "--loss", "l1"],
    "smooth_l1": ["models.py:MLP", "--input-shape", "3,4", "--loss", "smooth_l1"],
    "huber": ["models.py:MLP", "--input-shape", "3,4", "--loss", "huber"],
    "cross_entropy, classes from the output": [
        "models.py:MLP",
        "--input-shape",
        "3,4",
        "--loss",
        "cross_entropy",
    ],
    "nll on log-probabilities": [
        "models.py:MLP",
        "--input-shape",
        "3,4",
        "--loss",
        "nll",
        "--classes",
        "3",
        "--init-args",
        '{"head": "log_softmax"}',
    ],
    "bce on probabilities": [
        "models.py:MLP",
        "--input-shape",
        "3,4",
        "--loss",
        "bce",
        "--init-args",
        '{"head": "sigmoid"}',
    ],
    "bce_with_logits": ["models.py:MLP", "--input-shape", "3,4", "--loss", "bce_with_logits"],
    "positional init args": ["models.py:MLP", "--input-shape", "3,6", "--init-args", "[6, 5]"],
    "a factory function": ["models.py:make_mlp", "--input-shape", "3,4"],
    "a dotted module": ["pkg.nets:Layer", "--input-shape", "3,4", "--init-args", "[4, 2]"],
    "float32, l2, tolerances": [
        "models.py:MLP",
        "--input-shape",
        "3,4",
        "--dtype",
        "float32",
        "--l2",
        "0.5",
        "--rtol",
        "1e-9",
        "--atol",
        "0",
    ],
    "dropout is off in eval mode": ["models.py:WithDropout", "--input-shape", "3,4"],
    "train mode": ["models.py:MLP", "--input-shape", "3,4", "--train"],
    "the largest seed": ["models.py:MLP", "--input-shape", "3,4", "--seed", str(2**64 - 1)],
    "floating inputs from a range": ["models.py:MLP", "--input-shape", "3,4", "--input-range=-1,1"],
}


@pytest.mark.parametrize("argv", OK_CASES.values(), ids=OK_CASES.keys())
def test_check_ok(project, argv, capsys, monkeypatch) -> None:
    if argv[0].startswith("pkg."):
        monkeypatch.syspath_prepend(str(project))
    rc, out, err = run_main(project, argv, capsys, monkeypatch)
    assert (rc, err) == (0, "")
    header, verdict = out.splitlines()[:2]
    assert verdict.startswith("GradientReport: OK")
    assert ("train mode" if "--train" in argv else "eval mode") in header
    assert ("float32" if "float32" in argv else "float64") in header


def test_init_args_reach_the_constructor(project, capsys, monkeypatch) -> None:
    rc, out, _ = run_main(
        project,
        ["models.py:MLP", "--input-shape", "3,4", "--init-args", '{"hidden": 5, "n_out": 2}'],
        capsys,
        monkeypatch,
    )
    assert rc == 0
    assert any("net.0.weight" in line and "(5, 4)" in line for line in out.splitlines())
    assert "output (3, 2)" in out.splitlines()[0]


ERROR_CASES = {
    "unsupported module": (
        ["models.py:Patches", "--input-shape", "2,1,4,4"],
        "UnsupportedModuleError: torch.fft.fft in module 'shuffle' (Spectrum) at File *",
    ),
    "missing file": (
        ["no_such_models.py:MLP", "--input-shape", "3,4"],
        "no such file: */no_such_models.py",
    ),
    "missing class": (
        ["models.py:Nope", "--input-shape", "3,4"],
        "models.py has no attribute 'Nope'; the nn.Module classes it defines: "
        "MLP, Patches, SmallCNN, Spectrum, Tokens, Two, WithDropout",
    ),
    "the file fails to import": (
        ["broken.py:Net", "--input-shape", "3,4"],
        "importing */broken.py failed: ModuleNotFoundError: *",
    ),
    "a dotted module that does not exist": (
        ["no_such_pkg.nets:Net", "--input-shape", "3,4"],
        "importing module 'no_such_pkg.nets' failed: *",
    ),
    "no class named": (
        ["models.py", "--input-shape", "3,4"],
        "expected FILE.py:ClassName or package.module:ClassName, got 'models.py'",
    ),
    "not a module": (
        ["models.py:NotAModule", "--input-shape", "3,4"],
        "NotAModule() returned a NotAModule, not a torch.nn.Module",
    ),
    "the constructor fails": (
        ["models.py:MLP", "--input-shape", "3,4", "--init-args", '{"widht": 3}'],
        "MLP(widht=3) failed: TypeError: *widht*",
    ),
    "the forward fails on the shape": (
        ["models.py:MLP", "--input-shape", "3,5"],
        "the model's forward failed on inputs of shape (3, 5): RuntimeError: *",
    ),
    "--classes disagrees with the output": (
        ["models.py:MLP", "--input-shape", "3,4", "--loss", "cross_entropy", "--classes", "10"],
        "--classes 10, but the model's output (3, 3) has 3 entries along dim 1",
    ),
    "dropout in training mode": (
        ["models.py:WithDropout", "--input-shape", "3,4", "--train"],
        "ValueError: module 'net.1' (Dropout) at File *is in training mode*",
    ),
    "bce on logits": (
        ["models.py:MLP", "--input-shape", "3,4", "--loss", "bce"],
        "ValueError: *BCELoss*between 0 and 1*",
    ),
    "an Embedding given floating inputs": (
        ["models.py:Tokens", "--input-shape", "3,5"],
        "the model's Embedding 'embedding' takes integer token ids in [[]0, 10), not float64 "
        "inputs: pass --input-dtype int64 --input-range 0,10 (the forward failed with "
        "RuntimeError: *)",
    ),
    "token ids beyond the vocabulary": (
        ["models.py:Tokens", "--input-shape", "3,5", "--input-dtype", "int64"]
        + ["--input-range", "0,1000"],
        "the model's Embedding 'embedding' takes integer token ids in [[]0, 10); the inputs "
        "drawn run from * to * (the forward failed with IndexError: *)",
    ),
    "integer inputs without a range": (
        ["models.py:Tokens", "--input-shape", "3,5", "--input-dtype", "int32"],
        "--input-dtype int32 needs --input-range LOW,HIGH, the integers to draw from *",
    ),
    "a fractional range for integer inputs": (
        ["models.py:Tokens", "--input-shape", "3,5", "--input-dtype", "int32"]
        + ["--input-range", "0.5,3"],
        "--input-range [[]0.5, 3) for int32 inputs: expected integers from -2147483648 to "
        "2147483648",
    ),
    "inputs larger than the machine's memory": (
        ["models.py:MLP", "--input-shape", "100000000,100000000,4"],
        "inputs of shape (100000000, 100000000, 4) (4e+16 entries, 2.98e+08 GiB) do not fit "
        "in memory: this machine has * GiB",
    ),
    "more input entries than an int64 counts": (
        ["models.py:MLP", "--input-shape", "10000000000,10000000000,4"],
        "inputs of shape (10000000000, 10000000000, 4) (4e+20 entries, 2.98e+12 GiB) do not "
        "fit in memory*",
    ),
}


@pytest.mark.parametrize("argv, message", ERROR_CASES.values(), ids=ERROR_CASES.keys())
def test_check_errors_exit_2_with_one_line(project, argv, message, capsys, monkeypatch) -> None:
    rc, out, err = run_main(project, argv, capsys, monkeypatch)
    assert (rc, out) == (2, "")
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(ERROR_PREFIX), err
    assert fnmatch.fnmatchcase(err.strip(), ERROR_PREFIX + message), err


USAGE_CASES = {
    "shape with a letter": (
        ["--input-shape", "8,x"],
        "argument --input-shape: expected positive "
        "integers separated by commas, such as 8,1,28,28; got '8,x'",
    ),
    "shape with a zero": (["--input-shape", "0,4"], "argument --input-shape: *got '0,4'"),
    "no shape": ([], "the following arguments are required: --input-shape"),
    "negative tolerance": (
        ["--input-shape", "3,4", "--rtol", "-1"],
        "argument --rtol: expected a finite number ≥ 0, got '-1'",
    ),
    "bad JSON": (
        ["--input-shape", "3,4", "--init-args", "{hidden: 3}"],
        "argument --init-args: not valid JSON*",
    ),
    "JSON neither object nor array": (
        ["--input-shape", "3,4", "--init-args", "3"],
        "argument --init-args: expected a JSON object*",
    ),
    "unknown loss": (
        ["--input-shape", "3,4", "--loss", "hinge"],
        "argument --loss: unknown loss 'hinge'; choose from mse, l1, *",
    ),
    "classes not a positive integer": (
        ["--input-shape", "3,4", "--classes", "0"],
        "argument --classes: expected a positive integer, got '0'",
    ),
    "seed beyond 2**64": (
        ["--input-shape", "3,4", "--seed", str(2**64)],
        "argument --seed: expected an integer from 0 to 2**64 - 1 (torch's range of seeds), "
        "got '18446744073709551616'",
    ),
    "negative seed": (["--input-shape", "3,4", "--seed=-1"], "argument --seed: *got '-1'"),
    "seed not an integer": (["--input-shape", "3,4", "--seed", "1.5"], "argument --seed: *'1.5'"),
    "input range reversed": (
        ["--input-shape", "3,4", "--input-range", "5,1"],
        "argument --input-range: expected two finite numbers LOW,HIGH with LOW < HIGH, such as "
        "0,100; got '5,1'",
    ),
    "input range of one number": (
        ["--input-shape", "3,4", "--input-range", "5"],
        "argument --input-range: *got '5'",
    ),
    "unknown input dtype": (
        ["--input-shape", "3,4", "--input-dtype", "int8"],
        "argument --input-dtype: invalid choice: 'int8'*",
    ),
}


@pytest.mark.parametrize("argv, message", USAGE_CASES.values(), ids=USAGE_CASES.keys())
def test_usage_errors_exit_2_with_one_line(project, argv, message, capsys, monkeypatch) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_main(project, ["models.py:MLP", *argv], capsys, monkeypatch)
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    help_hint = " (see python -m torch_ref check --help)"
    assert fnmatch.fnmatchcase(err.strip(), ERROR_PREFIX + message + help_hint), err


def test_allocation_failure_is_one_line(project, capsys, monkeypatch) -> None:
    """Where the machine's memory is unknown, torch's refusal to allocate is the message."""

    def unknown(name: str) -> int:
        raise ValueError(name)

    monkeypatch.setattr(os, "sysconf", unknown)
    rc, out, err = run_main(
        project, ["models.py:MLP", "--input-shape", "100000000,100000000,4"], capsys, monkeypatch
    )
    assert (rc, out) == (2, "")
    assert err.count("\n") == 1, err
    assert fnmatch.fnmatchcase(
        err.strip(),
        ERROR_PREFIX + "cannot allocate inputs of shape (100000000, 100000000, 4) (4e+16 "
        "entries, 2.98e+08 GiB): *can't allocate memory*",
    ), err


@pytest.mark.parametrize(
    "dtype, value_range, low, high",
    [("int64", "0,10", 0, 10), ("int32", "3,5", 3, 5), ("int64", "5,7", 5, 7)],
)
def test_integer_inputs_reach_the_oracle(
    project, capsys, monkeypatch, dtype, value_range, low, high
) -> None:
    """The oracle receives the drawn token ids unchanged (whatever it makes of them)."""
    seen = {}

    def fake_compare(model, loss_fn, inputs, target, **kwargs):
        seen["inputs"], seen["target"] = inputs, target
        raise ValueError("stop here")

    monkeypatch.setattr(cli, "compare_gradients", fake_compare)
    argv = ["models.py:Tokens", "--input-shape", "64,7", "--input-dtype", dtype]
    rc, _, err = run_main(
        project,
        [*argv, f"--input-range={value_range}", "--loss", "cross_entropy"],
        capsys,
        monkeypatch,
    )
    assert (rc, err) == (2, ERROR_PREFIX + "ValueError: stop here\n")
    inputs = seen["inputs"]
    assert inputs.dtype == getattr(torch, dtype) and inputs.shape == (64, 7)
    assert int(inputs.min()) == low and int(inputs.max()) == high - 1  # [low, high), all drawn
    assert seen["target"].dtype == torch.int64 and seen["target"].shape == (64,)


def test_mismatch_exits_1_with_the_table(project, capsys, monkeypatch) -> None:
    """A bug in the reference (tanh′ = 1 − z² instead of 1 − tanh²z) is a mismatch."""
    broken = Activation("tanh", np.tanh, lambda z: 1 - z**2)
    monkeypatch.setitem(ACTIVATIONS, "tanh", lambda: broken)
    rc, out, err = run_main(project, ["models.py:MLP", "--input-shape", "3,4"], capsys, monkeypatch)
    assert (rc, err) == (1, "")
    lines = out.splitlines()
    assert lines[1] == (
        "your model's gradients (torch.autograd) differ from the oracle's "
        "(explicit backprop in float64)"
    )
    assert lines[2].startswith("GradientReport: MISMATCH")
    assert lines[3].startswith("loss: yours ")
    assert "worst entry of each failing tensor:" in lines
    assert max(map(len, lines)) <= 100
    assert any(line.startswith("param net.0.weight") and line.endswith(" FAIL") for line in lines)
    assert any(
        line.startswith("param net.2.weight") and line.rstrip().endswith("ok") for line in lines
    )


def test_seeded_and_leaves_the_global_rng_alone(project, capsys, monkeypatch) -> None:
    argv = ["models.py:WithDropout", "--input-shape", "3,4"]
    state = torch.get_rng_state()
    first = run_main(project, argv, capsys, monkeypatch)
    again = run_main(project, argv, capsys, monkeypatch)
    other = run_main(project, [*argv, "--seed", "1"], capsys, monkeypatch)
    assert torch.equal(torch.get_rng_state(), state)
    assert first == again
    assert first[1].splitlines()[2] != other[1].splitlines()[2]  # the loss line
    assert "seed 1" in other[1].splitlines()[0]


def test_the_header_names_the_input_range(project, capsys, monkeypatch) -> None:
    argv = ["models.py:MLP", "--input-shape", "3,4", "--input-range=-1,2"]
    rc, out, _ = run_main(project, argv, capsys, monkeypatch)
    assert rc == 0
    assert out.splitlines()[0] == (
        "models.py:MLP: inputs (3, 4) float64 in [-1, 2), output (3, 3), mse target (3, 3), "
        "seed 0, eval mode"
    )


def test_tables_have_no_trailing_spaces(project, capsys, monkeypatch) -> None:
    broken = Activation("tanh", np.tanh, lambda z: 1 - z**2)
    monkeypatch.setitem(ACTIVATIONS, "tanh", lambda: broken)
    _, out, _ = run_main(project, ["models.py:MLP", "--input-shape", "3,4"], capsys, monkeypatch)
    assert " FAIL\n" in out
    assert [line for line in out.splitlines() if line != line.rstrip()] == []


# --- frictions of a first contact: pipes, --help's imports, dtypes, several inputs ----------


def test_a_reader_that_stops_reading_ends_the_output_quietly(project: Path) -> None:
    """`torch-ref check ... | head -1` ended in a BrokenPipeError traceback."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch_ref", "check", "models.py:MLP", "--input-shape", "3,4"],
        cwd=project,
        env={**os.environ, "PYTHONPATH": path},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 0 and err == "", err


def test_help_imports_neither_torch_nor_numpy_pandas_or_scipy() -> None:
    """`torch-ref --help` took ~2.4 s, importing torch, pandas and scipy to print text."""
    code = (
        "import runpy, sys\n"
        "sys.argv = ['torch_ref', 'check', '--help']\n"
        "try:\n"
        "    runpy.run_module('torch_ref', run_name='__main__', alter_sys=True)\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        "heavy = ('torch', 'numpy', 'pandas', 'scipy')\n"
        "print(sorted(m for m in heavy if m in sys.modules), file=sys.stderr)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "--input-shape" in out.stdout and out.stderr == "[]\n", out.stderr


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_models_are_checked(project, capsys, monkeypatch, dtype) -> None:
    """The model in float16 or bfloat16 (its inputs too), compared through a float64 copy."""
    rc, out, err = run_main(
        project, ["models.py:MLP", "--input-shape", "3,4", "--dtype", dtype], capsys, monkeypatch
    )
    assert (rc, err) == (0, ""), err
    assert out.startswith(f"models.py:MLP: inputs (3, 4) {dtype}, output (3, 3)")


def test_a_forward_of_several_tensors_gets_one_input_per_shape(project, capsys, monkeypatch):
    argv = ["models.py:Two", "--input-shape", "5,4", "--input-shape", "5,2"]
    rc, out, err = run_main(project, argv, capsys, monkeypatch)
    assert (rc, err) == (0, ""), err
    assert out.startswith("models.py:Two: inputs (5, 4), (5, 2) float64, output (5, 3)")
    assert "param a.weight" in out and "param b.weight" in out


def test_torch_names_of_a_loss_are_accepted(project, capsys, monkeypatch) -> None:
    for name in ("mse_loss", "MSELoss", "MSE"):
        rc, out, _ = run_main(
            project, ["models.py:MLP", "--input-shape", "3,4", "--loss", name], capsys, monkeypatch
        )
        assert rc == 0 and ", mse target (3, 3)," in out.splitlines()[0], (name, out)
