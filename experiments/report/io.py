"""Writing the lab's files: whole or not at all, the same bytes every time.

    atomic_write(path, text_or_bytes)        a temporary file beside `path`, then os.replace
    write_csv(path, frame, float_format)     a DataFrame through pandas, fixed float format
    write_png(path, figure)                  a matplotlib Figure, no timestamp or version

A reader (or a crash, or Ctrl-C) never sees a half-written file: the temporary file is
renamed over `path` only once it is complete, and removed if anything fails before. The
same data gives the same bytes: CSV floats through one `float_format`, "\\n" line ends,
PNGs without the Software/date metadata matplotlib would stamp in.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

#: the CSV float format when none is given: 6 significant digits.
FLOAT_FORMAT = "%.6g"


def atomic_write(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write `data` (str as UTF-8, or bytes) to `path` atomically; returns the Path.

    Creates missing parent folders; the file gets mode 0644 (mkstemp's 0600 otherwise).
    """
    path = Path(path)
    if not isinstance(data, (str, bytes)):
        raise TypeError(f"atomic_write takes str or bytes, got {type(data).__name__}")
    payload = data.encode("utf-8") if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def csv_text(frame: pd.DataFrame, float_format: str = FLOAT_FORMAT) -> str:
    """The CSV text of `frame`: no index, "\\n" line ends, NaN as "nan", floats formatted."""
    return frame.to_csv(index=False, lineterminator="\n", float_format=float_format, na_rep="nan")


def write_csv(
    path: str | os.PathLike[str], frame: pd.DataFrame, float_format: str = FLOAT_FORMAT
) -> Path:
    """atomic_write of csv_text(frame, float_format)."""
    return atomic_write(path, csv_text(frame, float_format))


def write_png(path: str | os.PathLike[str], figure: Any, dpi: int = 80) -> Path:
    """A matplotlib Figure as PNG bytes, without metadata that changes between runs."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return atomic_write(path, buffer.getvalue())
