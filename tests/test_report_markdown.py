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


STUDIES = ["gradient_flow", "training", "jacobian_spectrum", "depth_scales", "finite_width",
           "rnn_gradient_flow", "isometry_training"]  # fmt: skip


@pytest.mark.parametrize("study", STUDIES)
def test_every_study_opens_with_a_summary(study: str) -> None:
    """A reader meets what the study shows before how it was run."""
    text = (REPORTS / study / "README.md").read_text()
    heads = [line for line in text.splitlines() if line.startswith("## ")]
    assert heads and heads[0] == "## Summary", heads[:3]
    summary = text.split("## Summary", 1)[1].split("\n## ", 1)[0]
    bullets = [line for line in summary.splitlines() if line.startswith("- ")]
    assert 2 <= len(bullets) <= 5, bullets
    assert all(re.search(r"\d", b) for b in bullets), "every summary line carries a number"


def test_the_glossary_explains_only_known_terms() -> None:
    from experiments.report.common import GLOSSARY, glossary

    lines = glossary("χ1", "edge of chaos")
    assert lines[0] == "## Words used here" and len(lines) == 5
    assert all(GLOSSARY[t] for t in ("decades", "q*", "c-map", "ξ"))
    with pytest.raises(ValueError, match="no explanation"):
        glossary("entropy")


def test_long_findings_become_a_lead_and_sub_bullets() -> None:
    from experiments.report.common import numbered, sentences

    text = "Pennington et al. (2017, Fig. 3) agree. The spread is 0.3 decades. " * 12
    assert sentences("A, e.g. this. B is next. (C) too.") == [
        "A, e.g. this.",
        "B is next.",
        "(C) too.",
    ]
    lines = numbered([text.strip(), "Short."], limit=200)
    assert lines[0] == "1. Pennington et al. (2017, Fig. 3) agree."
    assert all(line.startswith("   - ") and len(line) <= 205 for line in lines[1:-1])
    assert lines[-1] == "2. Short."
    assert " ".join(x.removeprefix("1. ").removeprefix("   - ") for x in lines[:-1]) == text.strip()
