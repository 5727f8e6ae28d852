"""The generated reports render: every Markdown table has as many delimiter cells as header
cells, and every row as many cells (GitHub drops a table whose delimiter row disagrees)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPORTS = Path(__file__).resolve().parents[1] / "reports"
PAGES = sorted(REPORTS.rglob("*.md"))


def cells(line: str) -> int:
    """The cells of a table row, `|` inside backticks or escaped as `\\|` not counted."""
    text = re.sub(r"`[^`]*`", "x", line.strip()).replace("\\|", "x")
    return len(text.strip("|").split("|"))


def tables(text: str) -> list[tuple[int, list[str]]]:
    """(line number, lines) of each table: a header row followed by a delimiter row."""
    lines = text.splitlines()
    out = []
    for i in range(len(lines) - 1):
        if lines[i].startswith("|") and re.fullmatch(r"\|( *:?-{3,}:? *\|)+", lines[i + 1].strip()):
            j = i + 2
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            out.append((i + 1, lines[i:j]))
    return out


def test_there_are_reports_with_tables() -> None:
    assert len(PAGES) >= 7, PAGES
    assert sum(len(tables(p.read_text())) for p in PAGES) >= 10


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPORTS)))
def test_every_table_row_has_the_headers_cell_count(page: Path) -> None:
    for start, rows in tables(page.read_text()):
        want = cells(rows[0])
        for k, row in enumerate(rows[1:], start=1):
            assert cells(row) == want, (
                f"{page.name} line {start + k}: {cells(row)} cells, header {want}"
            )


def test_the_check_finds_a_delimiter_row_too_long() -> None:
    bad = "| a | b |\n| --- | --- | --- |\n| 1 | 2 |\n"
    ((_, rows),) = tables(bad)
    assert cells(rows[1]) == 3 != cells(rows[0])
