"""Every module the wheel installs imports with the core dependencies alone, and manual_bp with
NumPy and SciPy alone: each is imported in a fresh interpreter where the extras (and, for
manual_bp, everything but NumPy and SciPy) cannot be imported."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import manual_bp
import torch_ref

ROOT = Path(__file__).resolve().parents[1]

#: what pyproject's extras bring (their import names); none may be needed by an installed module
EXTRAS = ("matplotlib", "tqdm", "sklearn", "threadpoolctl", "hypothesis", "dask", "distributed")
#: installed modules (and their submodules) that exist to serve one extra: without it they
#: must say which to install
NEEDS_EXTRA = {"torch_ref.strategies": "manual-bp[hypothesis]"}

# A fresh interpreter: a finder placed first on sys.meta_path refuses the blocked names, then
# each module is imported on its own; what failed, and the third-party packages loaded (those
# with a file: Cython's `cython_runtime` has none), are printed as JSON.
_PROBE = """
import importlib, importlib.abc, json, sys
blocked, allowed, modules = {blocked!r}, {allowed!r}, {modules!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split('.')[0]
        stdlib = top in sys.stdlib_module_names or top.startswith('_')  # _sysconfigdata_...
        if top in blocked or (allowed is not None and top not in allowed and not stdlib):
            raise ImportError(f'blocked for this test: {{name}}', name=name)
        return None
sys.meta_path.insert(0, Block())
failed = {{}}
for m in modules:
    try:
        importlib.import_module(m)
    except ImportError as err:
        failed[m] = str(err)
files = {{k.split('.')[0] for k, v in list(sys.modules.items()) if getattr(v, '__file__', None)}}
third = sorted({{k for k in files if not k.startswith('_')}} - set(sys.stdlib_module_names))
print(json.dumps({{'failed': failed, 'third_party': third}}))
"""


def _modules(package) -> list[str]:
    """The package and its modules, but `__main__` (importing it runs the command line)."""
    found = pkgutil.walk_packages(package.__path__, package.__name__ + ".")
    return [package.__name__] + [m.name for m in found if not m.name.endswith(".__main__")]


def _probe(modules: list[str], blocked: tuple[str, ...], allowed: tuple[str, ...] | None):
    code = _PROBE.format(blocked=blocked, allowed=allowed, modules=modules)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("package", [manual_bp, torch_ref], ids=lambda p: p.__name__)
def test_every_installed_module_imports_without_the_extras(package) -> None:
    modules = _modules(package)
    assert len(modules) >= 10, modules
    result = _probe(modules, EXTRAS, allowed=None)
    for module, message in result["failed"].items():
        package = module if module in NEEDS_EXTRA else module.rpartition(".")[0]  # a submodule
        assert package in NEEDS_EXTRA, f"{module} needs an extra to import: {message}"
        assert NEEDS_EXTRA[package] in message, f"{module}'s ImportError names no extra: {message}"
    assert not set(EXTRAS) & set(result["third_party"]), result["third_party"]


def test_manual_bp_imports_numpy_and_scipy_only() -> None:
    """Anything else (torch, pandas, matplotlib, ...) is refused; every module must import."""
    result = _probe(_modules(manual_bp), (), allowed=("manual_bp", "numpy", "scipy"))
    assert result["failed"] == {}, result["failed"]
    assert set(result["third_party"]) <= {"manual_bp", "numpy", "scipy"}, result["third_party"]


def test_the_probe_can_fail() -> None:
    """The blocker works: a module that needs matplotlib fails to import under it."""
    result = _probe(["experiments.report.common"], EXTRAS, allowed=None)
    assert "experiments.report.common" in result["failed"], result
    assert "matplotlib" in result["failed"]["experiments.report.common"]


def test_the_lab_is_not_inside_the_core() -> None:
    assert not (ROOT / "manual_bp" / "lab").exists()
    assert not [m for m in _modules(manual_bp) if ".lab" in m]
