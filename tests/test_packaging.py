"""The package as a user gets it: a wheel built from a copy of the source tree, installed into
a fresh virtual environment, and used from a folder outside the repository.

No download: the wheel is built with the setuptools already installed (`--no-build-isolation`,
`--no-index`) and installed without its dependencies (`--no-deps`); the fresh environment
reaches torch, NumPy and the rest through a `.pth` line naming this interpreter's
site-packages. A `.pth` line adds a folder to sys.path without running the `.pth` files in
it, so the editable install of the repository there stays inactive, and the new
environment's own site-packages (the wheel) comes first on sys.path.
"""

from __future__ import annotations

import email
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomllib

# one worker builds the wheel once for all the tests here (make test runs --dist loadgroup)
pytestmark = pytest.mark.xdist_group("packaging")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.pyc", "build", "dist", "*.egg-info", ".hypothesis",
    ".pytest_cache", ".ruff_cache", "reports",
)  # fmt: skip


@dataclass(frozen=True)
class Installed:
    wheel: Path
    build_log: str
    venv: Path
    python: Path
    site_packages: Path
    home: Path  # a user's folder outside the repository

    def run(self, *argv: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        result = subprocess.run(
            [str(a) for a in argv], cwd=self.home, env=env, capture_output=True, text=True
        )
        if check:
            assert result.returncode == 0, f"{argv}\n{result.stdout}\n{result.stderr}"
        return result


def _pip(*argv: str | Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pip", *map(str, argv)], capture_output=True, text=True
    )
    assert result.returncode == 0, f"pip {argv}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    dist = tmp / "dist"
    log = _pip("wheel", "-v", "--no-deps", "--no-build-isolation", "--no-index", "-w", dist, source)
    (wheel,) = dist.glob("manual_bp-*.whl")

    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    outer = [sysconfig.get_path("purelib"), sysconfig.get_path("platlib"), *site.getsitepackages()]
    Path(purelib, "outer_site_packages.pth").write_text("\n".join(dict.fromkeys(outer)) + "\n")
    _pip("--python", python, "install", "--quiet", "--no-deps", "--no-index", wheel)
    home = tmp / "home"
    home.mkdir()
    return Installed(wheel, log, venv, python, Path(purelib), home)


# --- the wheel itself ----------------------------------------------------------------------


def test_the_build_is_quiet(installed: Installed) -> None:
    """No warning from setuptools about the project (`project.license` as a TOML table gave a
    BuildBackendWarning, "... is deprecated", on every build). Its plain log lines that say
    byte-compiling is disabled come from the environment, not the project."""
    warnings = re.findall(r"\w*Warning\b.*|.*\bdeprecated\b.*", installed.build_log)
    assert warnings == [], installed.build_log


def test_the_wheel_holds_the_packages_and_nothing_else(installed: Installed) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"manual_bp", "torch_ref", f"manual_bp-{VERSION}.dist-info"}, tops
    for path in (
        "manual_bp/py.typed",
        "torch_ref/py.typed",
        "manual_bp/ops/linear.py",  # subpackages too
        "torch_ref/cli.py",
        "torch_ref/pytest_plugin.py",
        f"manual_bp-{VERSION}.dist-info/licenses/LICENSE",
    ):
        assert path in names, path
    assert not [n for n in names if "/lab/" in n or n.startswith("experiments/")], names
    sources = {p.relative_to(ROOT).as_posix() for d in ("manual_bp", "torch_ref")
               for p in (ROOT / d).rglob("*.py")}  # fmt: skip
    assert sources <= set(names), sources - set(names)


def test_the_metadata(installed: Installed) -> None:
    wheel = zipfile.ZipFile(installed.wheel)
    meta = email.message_from_string(wheel.read(f"manual_bp-{VERSION}.dist-info/METADATA").decode())
    assert meta["Name"] == "manual-bp" and meta["Version"] == VERSION
    assert meta["License-Expression"] == "MIT"
    assert meta["License-File"] == "LICENSE"
    assert "Typing :: Typed" in meta.get_all("Classifier")
    assert not any(c.startswith("License ::") for c in meta.get_all("Classifier"))
    requires = meta.get_all("Requires-Dist")
    core = sorted(r.split(">")[0] for r in requires if "extra ==" not in r)
    assert core == ["numpy", "pandas", "scipy", "torch"], core
    extras = set(meta.get_all("Provides-Extra"))
    assert extras == {"lab", "hypothesis", "cluster", "dev"}, extras

    def in_extra(name: str) -> set[str]:
        return {r.split(";")[1].split("==")[1].strip(" '\"") for r in requires
                if r.startswith(name) and "extra ==" in r}  # fmt: skip

    assert in_extra("hypothesis") == {"hypothesis"}
    for lab in ("matplotlib", "tqdm", "scikit-learn", "threadpoolctl"):
        assert in_extra(lab) == {"lab"}, lab
    assert in_extra("dask") == {"cluster"}
    assert in_extra("manual-bp") == {"dev"}  # dev = lab + hypothesis + cluster + tools
    entry_points = wheel.read(f"manual_bp-{VERSION}.dist-info/entry_points.txt").decode()
    assert "[console_scripts]\ntorch-ref = torch_ref.cli:console\n" in entry_points
    assert "[pytest11]\ntorch_ref = torch_ref.pytest_plugin\n" in entry_points


# --- used from the fresh environment -------------------------------------------------------

USE_THE_API = """
import importlib, pkgutil, sys
import torch, torch.nn as nn
import manual_bp, torch_ref, torch_ref.pytest_plugin, torch_ref.strategies

site = sys.argv[1]
for module in (manual_bp, torch_ref, torch_ref.pytest_plugin):
    assert module.__file__.startswith(site), module.__file__
for info in [*pkgutil.walk_packages(manual_bp.__path__, "manual_bp."),
             *pkgutil.walk_packages(torch_ref.__path__, "torch_ref.")]:
    if info.name != "torch_ref.__main__":
        assert importlib.import_module(info.name).__file__.startswith(site), info.name
try:
    import experiments
except ModuleNotFoundError:
    pass
else:
    raise AssertionError(f"experiments is installed: {experiments.__file__}")

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
x, t = torch.randn(5, 3), torch.randn(5, 2)
report = torch_ref.compare_gradients(model, nn.MSELoss(), x, t)
assert report.ok and isinstance(report, torch_ref.GradientReport), report
assert set(torch_ref.manual_gradients(model, nn.MSELoss(), x, t)) == {
    "0.weight", "0.bias", "2.weight", "2.bias"}
assert issubclass(torch_ref.UnsupportedModuleError, NotImplementedError)
print(torch_ref.__version__)
"""


def test_the_public_api(installed: Installed) -> None:
    result = installed.run(installed.python, "-c", USE_THE_API, installed.site_packages)
    assert result.stdout == f"{VERSION}\n"


def test_strategies_without_hypothesis_name_the_extra(installed: Installed) -> None:
    code = "import sys; sys.modules['hypothesis'] = None; import torch_ref.strategies"
    result = installed.run(installed.python, "-c", code, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "ImportError: torch_ref.strategies needs hypothesis, which is not installed; install "
        "it with the extra: pip install 'manual-bp[hypothesis]'"
    )


MODEL = """
import torch.nn as nn


class Net(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
"""


def test_the_console_script(installed: Installed) -> None:
    (installed.home / "net.py").write_text(MODEL)
    script = installed.venv / "bin" / "torch-ref"
    version = installed.run(script, "--version").stdout
    assert version.startswith(f"manual-bp {VERSION} (torch ")
    assert installed.run(installed.python, "-m", "torch_ref", "--version").stdout == version
    result = installed.run(script, "check", "net.py:Net", "--input-shape", "5,4")
    assert result.stdout.splitlines()[1].startswith("GradientReport: OK (6 tensors")
    usage = installed.run(script, "check", "net.py:Net", check=False)
    assert usage.returncode == 2
    assert usage.stderr == (
        "torch-ref check: error: the following arguments are required: --input-shape "
        "(see torch-ref check --help)\n"
    )


USER_TEST = """
import numpy as np
import torch
import torch.nn as nn

import torch_ref.pytest_plugin


def test_the_plugin_is_the_installed_one(gradient_oracle):
    assert torch_ref.pytest_plugin.__file__.startswith({site!r})


def test_gradient_oracle(gradient_oracle):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x, t = torch.randn(5, 3), torch.randn(5, 2)
    gradient_oracle.assert_close(model, nn.MSELoss(), x, t)
    nn.MSELoss()(model(x), t).backward()
    mine = {{n: p.grad.numpy() for n, p in model.named_parameters()}}
    gradient_oracle.check_grads(model, nn.MSELoss(), x, t, mine)
"""


def test_the_pytest_plugin(installed: Installed) -> None:
    test_file = installed.home / "test_user.py"
    test_file.write_text(USER_TEST.format(site=str(installed.site_packages)))
    result = installed.run(
        installed.python, "-m", "pytest", "-p", "no:cacheprovider", test_file, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"manual-bp-{VERSION}" in result.stdout  # pytest's "plugins:" line
    assert "2 passed" in result.stdout
