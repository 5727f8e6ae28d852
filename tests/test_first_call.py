"""The first gradient is cheap: what it does not need, it does not import.

hypothesis gives every example 200 ms by default, the first one included, so the first call
of the oracle must not pay for imports it does not use: pandas (~0.25 s) is imported by
`GradientReport.to_frame` alone, scipy.special (~0.3 s) by the ops that use erf alone. How
long the first call takes is measured by the benchmark, not here (no timed tests); this
checks what it imports.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FIRST_CALL = """
import sys
import torch
import torch.nn as nn
import torch_ref

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
x, t = torch.randn(5, 4), torch.tensor([0, 2, 1, 1, 0])
report = torch_ref.compare_gradients(model, nn.CrossEntropyLoss(), x, t)
assert report.ok
str(report)
print("after the first call:", "pandas" in sys.modules, "scipy.special" in sys.modules)
report.to_frame()
gelu = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 3))
assert torch_ref.compare_gradients(gelu, nn.CrossEntropyLoss(), x, t).ok
print("when needed:", "pandas" in sys.modules, "scipy.special" in sys.modules)
"""


def test_the_first_call_imports_neither_pandas_nor_scipy_special() -> None:
    out = subprocess.run(
        [sys.executable, "-c", FIRST_CALL], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "after the first call: False False",
        "when needed: True True",
    ], out.stdout
