"""manual_bp is NumPy and SciPy only: importing all of it must not import torch."""

import pkgutil
import subprocess
import sys

import manual_bp


def _imported_by_manual_bp() -> set[str]:
    """The top-level packages in sys.modules after importing every module of manual_bp."""
    modules = [m.name for m in pkgutil.walk_packages(manual_bp.__path__, "manual_bp.")]
    assert len(modules) >= 5, modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(','.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.strip().split(","))


def test_manual_bp_does_not_import_torch():
    top = _imported_by_manual_bp()
    assert "torch" not in top, "importing manual_bp imported torch"
    assert "scipy" in top, "manual_bp no longer uses scipy.special: is this test still right?"
