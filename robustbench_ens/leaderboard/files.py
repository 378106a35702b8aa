"""The CSV and JSON encodings of the leaderboard (written with its other files by ``atomic.write_files``)."""
from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def csv_text(df: pd.DataFrame) -> str:
    """CSV without the index; NaN as an empty field."""
    return df.to_csv(index=False, lineterminator="\n")


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


def json_text(obj: Any) -> str:
    """Strict JSON (``allow_nan=False``): every NaN has become ``null`` first."""
    return json.dumps(to_jsonable(obj), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
