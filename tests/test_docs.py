"""What the documentation says about the code is true: the modules it names exist, the pages
it links to are there."""

import importlib.util
import re
from pathlib import Path

import manual_bp

ROOT = Path(__file__).resolve().parents[1]


def _exists(name: str) -> bool:
    """A module of manual_bp or of manual_bp.ops, or an attribute of manual_bp."""
    modules = (f"manual_bp.{name}", f"manual_bp.ops.{name}")
    return any(importlib.util.find_spec(m) is not None for m in modules) or hasattr(manual_bp, name)


def test_the_package_docstring_names_modules_that_exist() -> None:
    """manual_bp's docstring lists its modules in backquotes (once it named `layers`,
    `graph_ops`, `initializers`, `meanfield` and `flow`, which did not exist)."""
    names = re.findall(r"`(\w+)`", manual_bp.__doc__)
    assert len(names) >= 10, names
    missing = [name for name in names if not _exists(name)]
    assert not missing, f"manual_bp's docstring names what does not exist: {missing}"


def test_the_readme_and_the_docs_link_to_files_that_exist() -> None:
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text())
        local = [link for link in links if "://" not in link]
        assert local, (page, links)
        missing = [link for link in local if not (page.parent / link).exists()]
        assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_the_readme_opens_with_install_and_use() -> None:
    """A newcomer's first screen: what this is, `pip install`, a few lines of use and what they
    print; the make targets come later, in the section for working on the repository."""
    readme = (ROOT / "README.md").read_text()
    first_screen = "\n".join(readme.splitlines()[:45])
    assert re.search(r"^## Install and use$", first_screen, re.M), first_screen
    assert "pip install" in first_screen and "compare_gradients(" in first_screen
    assert "GradientReport: OK" in first_screen  # what the lines print
    assert "make " not in first_screen
    headings = re.findall(r"^## (.+)$", readme, re.M)
    assert headings[:2] == ["Install and use", "When to use this, when gradcheck"], headings
    dev = readme[readme.index("## Working in the repository") :]
    assert re.findall(r"`make (\w+)`", dev)[:2] == ["report", "test"]
