"""The house rules a reader relies on, checked over the source tree.

- No source file of the three floors (manual_bp, torch_ref, experiments) is over MAX_LINES:
  a longer one is split by what it does (STYLE.md, "A folder per family").
- The test suite's tolerances come from tests/_tolerances.py and the library's defaults from
  torch_ref/tolerances.py: no file restates them.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOORS = ("manual_bp", "torch_ref", "experiments")
MAX_LINES = 600

#: files allowed over MAX_LINES while a split of them is under way: none now (an entry
#: leaves as its split lands; the test below fails on a stale one)
STILL_LONG: set[str] = set()


def sources() -> list[Path]:
    return sorted(p for floor in FLOORS for p in (ROOT / floor).rglob("*.py"))


def lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_source_file_is_over_the_limit() -> None:
    long = {p.relative_to(ROOT).as_posix(): lines(p) for p in sources() if lines(p) > MAX_LINES}
    unexpected = {name: n for name, n in long.items() if name not in STILL_LONG}
    assert not unexpected, f"over {MAX_LINES} lines (split them by what they do): {unexpected}"


def test_the_allow_list_names_only_files_still_long() -> None:
    """An entry whose file was split (or is short again) must leave the list."""
    stale = sorted(
        name for name in STILL_LONG if not (ROOT / name).exists() or lines(ROOT / name) <= MAX_LINES
    )
    assert not stale, f"no longer over {MAX_LINES} lines: remove from STILL_LONG: {stale}"


def test_the_limit_check_can_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A planted long file under a floor is reported."""
    (tmp_path / "manual_bp").mkdir()
    (tmp_path / "manual_bp" / "long.py").write_text("x = 1\n" * (MAX_LINES + 1))
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    with pytest.raises(AssertionError, match="long.py"):
        test_no_source_file_is_over_the_limit()


# --- one tolerance table for the library, one for the tests ------------------------------------

#: a tolerance written out in a test file: `TOL = {...}`, `RTOL, ATOL = 1e-6, 1e-7`, ...
RESTATED = re.compile(
    r"^[A-Z_]*TOL[A-Z_]*(?:\s*,\s*[A-Z_]+)*\s*(?::[^=\n]*)?=\s*[-{(\[0-9]", re.MULTILINE
)


def test_the_library_defaults_are_written_once() -> None:
    """rtol 1e-7 and atol 1e-10 appear as numbers in torch_ref/tolerances.py only (the op
    registry's samples, arguments of the ops themselves, aside)."""
    defaults = {1e-7, 1e-10}
    offenders = []
    for path in sorted((ROOT / "torch_ref").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        if name == "torch_ref/tolerances.py" or name.startswith("torch_ref/registry/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and type(node.value) is float:
                if node.value in defaults:
                    offenders.append(f"{name}:{node.lineno}: {node.value!r}")
    assert not offenders, "the defaults restated outside torch_ref/tolerances.py: " + ", ".join(
        offenders
    )


def test_tests_take_their_tolerances_from_the_table() -> None:
    """tests/_tolerances.py is the one place a test tolerance is written; a test file may
    name an entry (`TOL = TOLERANCES["layer"]`) but not restate numbers."""
    offenders = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        if path.name == "_tolerances.py":
            continue
        text = path.read_text(encoding="utf-8")
        offenders += [
            f"{path.name}: {text[m.start() :].splitlines()[0]}" for m in RESTATED.finditer(text)
        ]
    assert not offenders, "tolerances restated outside tests/_tolerances.py:\n" + "\n".join(
        offenders
    )


@pytest.mark.parametrize(
    "line",
    ['TOL = {"rtol": 1e-9, "atol": 1e-12}', "RTOL, ATOL = 1e-6, 1e-7", "TOL_EXACT: dict = {}"],
)
def test_a_restated_tolerance_is_caught(line: str) -> None:
    assert RESTATED.search(f"x = 1\n{line}\n")


def test_a_named_entry_is_not_a_restatement() -> None:
    assert not RESTATED.search('TOL = TOLERANCES["layer"]\nTOLERANCES = """code"""\n')
