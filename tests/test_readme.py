"""README.md is tested documentation: every example in it that prints something is run, and
what it prints is compared with what the README says it prints.

The fenced blocks of README.md, by kind:

- a ```python block followed by a ```text block (a short paragraph may stand between them,
  a heading may not): the code runs in a fresh interpreter from the repository root and must
  print exactly the text block, with nothing on stderr;
- a ```console block: every line starting with `$ ` is a bash command, run from the
  repository root in one shell (so `echo $?` sees the status of the command before it;
  stderr goes with stdout, as in a terminal); the lines under it are what it must print;
- a ```python block right after a paragraph that ends with a file of examples/ in backquotes
  and a colon ("A complete test file, `examples/test_my_backward.py`:") is that file, verbatim;
- every other ```python block must compile.

Outputs are compared as text, character for character. What would differ from one CPU to
another (the rounding noise of a float64 sum) is not printed: the gradient reports print an
error below the noise floor as `<1e-13`. The numeric examples run a second time with other
threads and SIMD kernels (`_env(elsewhere=True)`) and must print the same.

In an expected output, `...` stands for any text (doctest's ELLIPSIS): a timing, or a long
list the README shortens. The repository's absolute path prints as `...` (so a path reads
`.../examples/lenet.py` whichever folder the clone is in).

When the code's output changes on purpose, rewrite the README's expected outputs from what
the code prints now and review the diff:

    make readme                       # = python tests/test_readme.py --update
    git diff README.md

`python tests/test_readme.py` alone prints the differences without writing anything. An
expected output holding `...` is kept while it still matches; where it no longer does, the
update writes the whole output, and you may shorten it again by hand.
"""

from __future__ import annotations

import argparse
import difflib
import doctest
import functools
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from torch_ref.registry import with_supported_table

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
OPS = ROOT / "docs" / "ops.md"  # the table of what is supported, generated from the registry
MARK = "\x1e"  # ASCII's record separator, printed after each command of a console block
FILE_BEFORE_BLOCK = re.compile(r"`(examples/[\w/.-]+\.py)`(?:\]\([^)]*\))?:\s*$")


@dataclass(frozen=True)
class Block:
    """A fenced block: its language, the lines of its body in the file, and its text."""

    lang: str
    start: int  # index of the first body line
    stop: int  # index of the closing fence
    text: str
    before: str  # the text between the previous block and this one

    @property
    def where(self) -> str:
        return f"README.md:{self.start}"


def parse(markdown: str) -> list[Block]:
    lines = markdown.splitlines(keepends=True)
    blocks: list[Block] = []
    i, after_last = 0, 0
    while i < len(lines):
        opening = re.match(r"^```(\w*)\s*$", lines[i])
        if not opening:
            i += 1
            continue
        stop = next(j for j in range(i + 1, len(lines)) if lines[j].rstrip() == "```")
        before = "".join(lines[after_last:i])
        blocks.append(Block(opening[1], i + 1, stop, "".join(lines[i + 1 : stop]), before))
        i = after_last = stop + 1
    return blocks


@dataclass(frozen=True)
class Example:
    """Something the README claims: `source` run (or read) must give `expected`."""

    kind: str  # "python", "console" or "file"
    source: Block
    expected: Block  # the block whose text is what it must give

    @property
    def id(self) -> str:
        return f"{self.source.where} {self.kind}"


def examples(blocks: list[Block]) -> tuple[list[Example], list[Block]]:
    """The examples the README makes, and the other python blocks (which must compile)."""
    found, plain = [], []
    for block, nxt in zip(blocks, [*blocks[1:], None], strict=True):
        if block.lang == "console":
            found.append(Example("console", block, block))
        elif block.lang == "python" and FILE_BEFORE_BLOCK.search(block.before):
            found.append(Example("file", block, block))
        elif (
            block.lang == "python"
            and nxt is not None
            and nxt.lang == "text"
            and not re.search(r"^#", nxt.before, re.MULTILINE)
        ):
            found.append(Example("python", block, nxt))
        elif block.lang == "python":
            plain.append(block)
    return found, plain


def _env(elsewhere: bool = False) -> dict[str, str]:
    """The user's environment, with this interpreter first on PATH, outside any make.

    The last bits of a float64 sum (the errors the tables print) depend on the machine: how
    BLAS and torch split it over threads, and which SIMD kernels the CPU gets (AVX2 or
    AVX-512 in torch, NumPy and OpenBLAS). The README prints them only down to the noise
    floor (torch_ref.report.PRECISION), so its outputs are the same everywhere; to see that
    they are, `elsewhere=True` runs an example as another CPU would: two threads instead of
    one, torch's AVX2 kernels, OpenBLAS's kernels of another core, and NumPy without its
    dispatched SIMD extensions.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "100"
    for var in THREADS:
        env[var] = "2" if elsewhere else "1"
    if elsewhere:
        env.update(ELSEWHERE)
    return env


#: the thread counts of torch's OpenMP, OpenBLAS (NumPy, SciPy) and MKL (torch's BLAS)
THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


X86 = platform.machine().lower() in ("x86_64", "amd64")


def _elsewhere() -> dict[str, str]:
    """The settings that give this machine another CPU's last bits (see `_env`)."""
    env = {"ATEN_CPU_CAPABILITY": "avx2"}  # never raises torch's level, only lowers it
    try:  # the SIMD extensions NumPy dispatches to at run time on this CPU (not its baseline)
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # pragma: no cover - another NumPy layout
        has, dispatched = {}, []
    else:
        has = __cpu_features__
        dispatched = [f for f in __cpu_dispatch__ if has.get(f)]
    if dispatched:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(dispatched)
    if X86:  # OpenBLAS's AVX2 kernels, or its AVX ones where this CPU already gets those
        if _openblas_core() != "Haswell" and has.get("AVX2") and has.get("FMA3"):
            env["OPENBLAS_CORETYPE"] = "Haswell"
        elif has.get("AVX"):
            env["OPENBLAS_CORETYPE"] = "Sandybridge"
    return env


def _openblas_core() -> str | None:
    """The core OpenBLAS picked for this CPU ("SkylakeX", "Haswell", ...), if NumPy uses it."""
    try:
        import threadpoolctl
    except ImportError:  # pragma: no cover - the dev extra installs it
        return None
    info = threadpoolctl.threadpool_info()
    return next((i.get("architecture") for i in info if i.get("internal_api") == "openblas"), None)


ELSEWHERE = _elsewhere()


def run_python(code: str, elsewhere: bool = False) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=_env(elsewhere),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and result.stderr == "", (
        f"exit status {result.returncode}\n{result.stderr}"
    )
    return _no_root(result.stdout)


def _no_root(text: str) -> str:
    """The output with the repository's absolute path written `...`."""
    return text.replace(str(ROOT), "...")


def commands(console: str) -> list[tuple[str, str]]:
    """(command, expected output) for each `$ ` line of a console block."""
    pairs: list[tuple[str, list[str]]] = []
    for line in console.splitlines(keepends=True):
        if line.startswith("$ "):
            pairs.append((line[2:].rstrip("\n"), []))
        else:
            assert pairs, f"output before the first command: {line!r}"
            pairs[-1][1].append(line)
    return [(command, "".join(out)) for command, out in pairs]


def run_console(console: str, elsewhere: bool = False) -> list[str]:
    """What each command of the block prints, run in one bash from the repository root."""
    cmds = [command for command, _ in commands(console)]
    script = "exec 2>&1\n" + "".join(
        f"{command}\n__status=$?; printf '\\036'; (exit $__status)\n" for command in cmds
    )
    result = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, env=_env(elsewhere), capture_output=True, text=True
    )
    outputs = _no_root(result.stdout).split(MARK)
    assert len(outputs) == len(cmds) + 1 and outputs[-1] == "", result.stdout
    return outputs[:-1]


def actual(example: Example, elsewhere: bool = False) -> str:
    """What the README's expected block of this example should hold, from the code (run as
    on another CPU with `elsewhere`; see `_env`)."""
    return _actual(example.kind, example.source, elsewhere)


@functools.cache
def _actual(kind: str, source: Block, elsewhere: bool = False) -> str:
    if kind == "file":
        return (ROOT / FILE_BEFORE_BLOCK.search(source.before)[1]).read_text()
    if kind == "python":
        return run_python(source.text, elsewhere)
    outputs = run_console(source.text, elsewhere)  # a console block is its own expected output
    return "".join(
        f"$ {command}\n{_keep_ellipses(expected, got)}"
        for (command, expected), got in zip(commands(source.text), outputs, strict=True)
    )


def matches(expected: str, got: str) -> bool:
    return doctest.OutputChecker().check_output(expected, got, doctest.ELLIPSIS)


def _keep_ellipses(expected: str, got: str) -> str:
    """The expected text where it still matches (its `...` kept), else what the code printed."""
    return expected if matches(expected, got) else got


def difference(example: Example, elsewhere: bool = False) -> str:
    """ "" when the README says what the code does, else a unified diff (README → code)."""
    want, got = example.expected.text, actual(example, elsewhere)
    if (example.kind == "file" and want == got) or (example.kind != "file" and matches(want, got)):
        return ""
    diff = difflib.unified_diff(
        want.splitlines(keepends=True),
        got.splitlines(keepends=True),
        f"README.md, lines {example.expected.start + 1}-{example.expected.stop}",
        "what the code prints now" if example.kind != "file" else "the file",
    )
    return "".join(diff)


BLOCKS = parse(README.read_text())
EXAMPLES, PLAIN = examples(BLOCKS)
#: the examples whose outputs hold computed numbers: gradient reports
NUMERIC = [e for e in EXAMPLES if e.kind != "file" and "GradientReport" in e.expected.text]


# --- the tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_readme_example(example: Example) -> None:
    diff = difference(example)
    assert not diff, (
        f"{example.id}: the README differs from what the code does "
        "(if the change is intended: make readme, then review git diff README.md)\n" + diff
    )


@pytest.mark.parametrize("example", NUMERIC, ids=[e.id for e in NUMERIC])
def test_readme_example_prints_the_same_on_another_cpu(example: Example) -> None:
    """The same example run with other threads and SIMD kernels (see `_env`): the rounding
    noise changes, what the README prints does not."""
    diff = difference(example, elsewhere=True)
    assert not diff, (
        f"{example.id}: run with {ELSEWHERE} and 2 threads, the example prints something "
        "else: an output that depends on the last bits of a sum, which differ between CPUs\n" + diff
    )


@pytest.mark.skipif(not X86, reason="the settings of `elsewhere` are x86-64's SIMD levels")
def test_the_other_cpu_changes_the_last_bits() -> None:
    """The settings of `elsewhere` do reach the arithmetic: float64 sums whose last bits
    depend on the kernels change under them (else the test above would prove nothing)."""
    code = (
        "import numpy as np, torch\n"
        "x = np.random.default_rng(0).standard_normal((64, 257))\n"
        "t = torch.from_numpy(x)\n"
        "print(repr(float((x @ x.T).sum())), repr(float(np.tanh(x).sum())), "
        "repr(float(torch.tanh(t).sum())), repr(float((t @ t.T).sum())))\n"
    )
    here, there = run_python(code).split(), run_python(code, elsewhere=True).split()
    assert here != there, f"the same last bits under {ELSEWHERE}: {here}"


@pytest.mark.parametrize("block", PLAIN, ids=[b.where for b in PLAIN])
def test_readme_python_compiles(block: Block) -> None:
    compile(block.text, block.where, "exec")


def test_the_readme_checks_what_it_promises() -> None:
    """The runner finds the examples the README is built around (a parser that found nothing
    would pass every test above)."""
    kinds = [e.kind for e in EXAMPLES]
    assert kinds.count("python") >= 1 and kinds.count("file") >= 1, kinds
    assert kinds.count("console") >= 4, kinds
    commands_run = [c for e in EXAMPLES if e.kind == "console" for c, _ in commands(e.source.text)]
    wanted = [
        "examples/lenet.py:LeNet",
        "examples/unsupported.py",
        "--input-dtype int64",
        "examples/test_my_framework.py",  # the property test, run as pasted
    ]
    for needed in wanted:
        assert any(needed in c for c in commands_run), needed


# a planted drift in a copy of each kind of example must be caught


def _drifted(example: Example, text: str) -> Example:
    e = example.expected
    return Example(example.kind, example.source, Block(e.lang, e.start, e.stop, text, e.before))


@pytest.mark.parametrize("kind", ["python", "file", "console"])
def test_a_drifted_output_is_caught(kind: str) -> None:
    example = next(e for e in EXAMPLES if e.kind == kind)
    drifted = example.expected.text.removesuffix("\n") + " (drifted)\n"
    assert difference(_drifted(example, drifted))


def test_a_changed_digit_is_caught():
    """Noise is elided where it is printed, not where it is compared: one digit of a number
    (the loss's last printed digit) is a difference."""
    example = next(e for e in NUMERIC if e.kind == "python")
    want = example.expected.text
    loss = re.search(r"loss: \S+ (\d\.\d+)", want)[1]
    changed = loss[:-1] + str((int(loss[-1]) + 1) % 10)
    assert not difference(example)
    assert difference(_drifted(example, want.replace(loss, changed)))


def test_a_real_change_in_the_computation_is_caught():
    """The model's inputs moved by one float32 rounding step (a relative 1e-7) change what
    the example prints, and the runner says so."""
    example = next(e for e in NUMERIC if e.kind == "python")
    code = example.source.text
    assert "\nprint(" in code
    planted = code.replace("\nprint(", "\ninputs = inputs * (1 + 1e-7)\nprint(", 1)
    source = Block("python", example.source.start, example.source.stop, planted, "")
    assert difference(Example("python", source, example.expected))


def test_console_commands_share_one_shell() -> None:
    assert run_console("$ (exit 3)\n$ echo $?\n3\n$ echo err >&2\n") == ["", "3\n", "err\n"]


def test_ellipsis_matches_any_text_and_nothing_else() -> None:
    assert matches(
        'at File ".../examples/x.py", line 3\n', f'at File "{ROOT}/examples/x.py", line 3\n'
    )
    assert not matches("3 passed in ...\n", "2 passed in 1.5s\n")


# --- the command line: diff or rewrite README.md --------------------------------------------


def update(markdown: str) -> tuple[str, list[str]]:
    """README.md with every expected output rewritten from the code; the ids it changed."""
    lines = markdown.splitlines(keepends=True)
    changed = []
    found, _ = examples(parse(markdown))
    for example in sorted(found, key=lambda e: -e.expected.start):
        if difference(example):
            text = actual(example)
            text += "" if text.endswith("\n") or not text else "\n"
            lines[example.expected.start : example.expected.stop] = [text]
            changed.append(example.id)
    return "".join(lines), changed[::-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Compare README.md's examples with what the code prints (exit status 1 "
        "when they differ), or rewrite its expected outputs with --update."
    )
    parser.add_argument("--update", action="store_true", help="rewrite README.md in place")
    args = parser.parse_args(argv)
    if args.update:
        text, changed = update(README.read_text())
        README.write_text(text)
        for where in changed:
            print(f"rewrote the output of {where}")
        print(f"{len(changed)} of {len(EXAMPLES)} examples rewritten; review: git diff README.md")
        ops = with_supported_table(OPS.read_text())  # the table, from the registry
        if ops != OPS.read_text():
            OPS.write_text(ops)
            print(f"rewrote {OPS.relative_to(ROOT)} from the op registry")
        return 0
    diffs = [d for d in map(difference, EXAMPLES) if d]
    print("".join(diffs), end="")
    print(f"{len(diffs)} of {len(EXAMPLES)} examples differ from README.md")
    return 1 if diffs else 0


if __name__ == "__main__":
    raise SystemExit(main())
