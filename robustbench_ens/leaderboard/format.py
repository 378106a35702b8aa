"""Number and label formatting shared by every output (tables, Markdown, HTML, plots).

Accuracies and rates are fractions in [0, 1] in the data and percentages with one decimal
on the page. Perturbation budgets below 1 are shown as ``k/255`` when they are whole multiples
of 1/255 (``0.0313725`` -> ``8/255``), otherwise as a short decimal (L2's ``0.5``, ``4``).
"""
from __future__ import annotations

import json
import math
from typing import Any

DASH = "—"
PM = "±"
FAILED = "failed"


def is_missing(x: Any) -> bool:
    """True for None and float NaN (and values that cannot be read as a number)."""
    if x is None:
        return True
    try:
        return math.isnan(float(x))
    except (TypeError, ValueError):
        return True


def eps_255(eps: float) -> int | None:
    """``k`` when ``eps`` is ``k/255`` below 1 up to rounding of the stored value, else None.

    1 and above (L2 budgets such as 1.0 or 4.0) are not read as ``255/255`` or ``1020/255``.
    """
    if is_missing(eps) or not math.isfinite(float(eps)):  # inf: the "no attack at all" budget of a clean-only grid
        return None
    k = float(eps) * 255.0
    r = round(k)
    if 0 <= r < 255 and abs(k - r) <= max(1e-4 * abs(k), 1e-6):
        return int(r)
    return None


def canonical_eps(eps: float) -> float:
    """One float per budget, so that ``8/255`` and ``0.0313725`` group together."""
    k = eps_255(eps)
    if k is not None:
        return k / 255.0
    return round(float(eps), 8)


def fmt_eps(eps: float) -> str:
    """``8/255`` for multiples of 1/255, ``0`` for zero, else a decimal such as ``0.03``."""
    if is_missing(eps):
        return DASH
    k = eps_255(eps)
    if k == 0:
        return "0"
    if k is not None:
        return f"{k}/255"
    return f"{float(eps):.6g}"


def fmt_pct(frac: Any, std: Any = None) -> str:
    """``45.0`` or ``45.0 ± 1.2`` (percent, 1 decimal); a dash when there is no value."""
    if is_missing(frac):
        return DASH
    text = f"{100.0 * float(frac):.1f}"
    if not is_missing(std):
        text += f" {PM} {100.0 * float(std):.1f}"
    return text


def fmt_seconds(s: Any) -> str:
    """``42.0 s``, ``12.5 min`` or ``3.20 h``."""
    if is_missing(s):
        return DASH
    s = float(s)
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def fmt_value(x: Any) -> str:
    """Generic text for a setting value: lists joined by commas, dicts as compact JSON."""
    if x is None:
        return DASH
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return DASH if math.isnan(x) else f"{x:g}"
    if isinstance(x, (list, tuple)):
        return ", ".join(fmt_value(v) for v in x) if x else DASH
    if isinstance(x, dict):
        return fmt_params(x)
    return str(x)


def fmt_params(params: Any) -> str:
    """Attack parameters as compact, key-sorted JSON; budgets in k/255 where they are."""
    if not params:
        return DASH
    if not isinstance(params, dict):
        return str(params)
    out = {}
    for k in sorted(params, key=str):
        v = params[k]
        if isinstance(v, float) and not math.isnan(v) and 0 < v < 1 and eps_255(v) is not None:
            v = fmt_eps(v)
        out[str(k)] = v
    return json.dumps(out, separators=(", ", ": "), default=str, ensure_ascii=False)


def fmt_frac_or_pct(x: Any) -> str:
    """A clean accuracy from the setting: a fraction is shown as percent, anything else as is."""
    if is_missing(x):
        return DASH if x is None or isinstance(x, float) else str(x)
    v = float(x)
    return fmt_pct(v) if 0.0 <= v <= 1.0 else f"{v:g}"
