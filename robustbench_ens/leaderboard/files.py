"""Atomic file writes and the CSV / JSON encodings of the leaderboard.

Every file is written to a temporary file in the destination folder and moved into place
with ``os.replace``, so a reader (or a web server) sees either the old or the new file,
never a half-written one, and an interrupted write leaves no temporary file behind.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FILE_MODE = 0o644


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (same-folder temp file + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)  # mkstemp makes 0600; a published page must be readable
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_csv(path: Path, df: pd.DataFrame) -> Path:
    """CSV without the index; NaN as an empty field."""
    return write_text_atomic(path, df.to_csv(index=False, lineterminator="\n"))


def to_jsonable(x: Any) -> Any:
    """Plain JSON types: NaN/inf -> None, numpy scalars -> Python, DataFrames -> records."""
    if x is None or isinstance(x, (bool, str)):
        return x
    if x is pd.NaT or x is pd.NA:
        return None
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, pd.DataFrame):
        return [to_jsonable(r) for r in x.to_dict(orient="records")]
    if isinstance(x, pd.Series):
        return to_jsonable(x.tolist())
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist())
    if isinstance(x, (pd.Timestamp, _dt.datetime, _dt.date)):
        return x.isoformat()
    if isinstance(x, Path):
        return str(x)
    return str(x)


def write_json(path: Path, obj: Any) -> Path:
    """Strict JSON (``allow_nan=False``): every NaN has become ``null`` first."""
    text = json.dumps(to_jsonable(obj), indent=2, ensure_ascii=False, allow_nan=False)
    return write_text_atomic(path, text + "\n")
