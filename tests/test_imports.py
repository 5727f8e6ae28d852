"""manual_bp is NumPy-only: importing all of it must not import torch."""

import pkgutil
import subprocess
import sys

import manual_bp


def test_manual_bp_does_not_import_torch():
    modules = [m.name for m in pkgutil.walk_packages(manual_bp.__path__, "manual_bp.")]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')"
        " or m == 'scipy' or m.startswith('scipy.'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert len(modules) >= 5, modules
    assert out.stdout.strip() == "", f"importing manual_bp imported: {out.stdout.strip()}"
