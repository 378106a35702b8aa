"""The CSV / JSON encodings of the leaderboard, written atomically (see ``robustbench_ens.atomic``)."""
from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import atomic

def write_csv(path: Path, df: pd.DataFrame) -> Path:
    """CSV without the index; NaN as an empty field."""
    return atomic.write_text(path, df.to_csv(index=False, lineterminator="\n"))


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
    return atomic.write_text(path, text + "\n")
