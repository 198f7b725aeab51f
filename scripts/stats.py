"""Means and 95% intervals over a handful of seeds (scripts/compare_algorithms.py). Pure functions, no numpy.

With 3 seeds the interval is wide (t = 4.303, not 1.96): that is the honest width for 3 runs, and the reason
to report it beside the mean rather than the mean alone.
"""

from __future__ import annotations

import math

# Two-sided 95% critical values of Student's t, t(0.975, df) for df = 1..30 (any printed t-table).
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
Z_975 = 1.959964


def t_critical(df: int) -> float:
    """t(0.975, df): the half-width of a 95% interval is this times std / sqrt(n), with df = n - 1.

    scipy when it is installed (it is not a dependency); else the table above, and past it the expansion below."""
    if df < 1:
        raise ValueError(f"a t interval needs at least 2 values (df >= 1), got df={df}")
    try:
        from scipy.stats import t
    except ImportError:
        return T_975[df - 1] if df <= len(T_975) else t_expansion(df)
    return float(t.ppf(0.975, df))


def t_expansion(df: int) -> float:
    """t(0.975, df) from the normal quantile z by the Cornish-Fisher expansion to 1/df^2: used past the table, where
    it is within 1e-4 of the exact value (2.0422 at df 30, exact 2.0423; 2.0210 at df 40, table 2.021)."""
    z = Z_975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_ci(values: list[float]) -> tuple[float, float | None]:
    """(mean, half-width of its 95% Student-t interval); the half-width is None for a single value.

    [1, 2, 3]: mean 2, sample std 1 (divide by n - 1), half-width 4.303 * 1 / sqrt(3) = 2.484."""
    if not values:
        raise ValueError("no values")
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return mean, None
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, t_critical(n - 1) * std / math.sqrt(n)


def summary(values: list[float]) -> dict:
    """{"mean", "half_width", "values"}: what compare.json holds per metric (the interval is mean +- half_width)."""
    mean, half = mean_ci(values)
    return {"mean": mean, "half_width": half, "values": list(values)}
