"""Confidence intervals for proportions (CTR, conversion, retention) and their differences.

Wilson's score interval stays inside [0, 1] and behaves at the tiny rates of click logs (~0.5%)
where the textbook p +- z*se interval goes negative. The difference of two independent
proportions uses Newcombe's hybrid score interval (method 10 of Newcombe 1998, Statistics in
Medicine 17:873-890), built from the two Wilson intervals.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import polars as pl


def z_value(confidence: float) -> float:
    """The two-sided normal quantile, e.g. 1.96 for 0.95."""
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_exprs(successes: pl.Expr, trials: pl.Expr, z: float) -> tuple[pl.Expr, pl.Expr]:
    """(low, high) of the Wilson score interval; null where there are no trials."""
    n = trials.cast(pl.Float64)
    p = successes.cast(pl.Float64) / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z / denom * (p * (1 - p) / n + z**2 / (4 * n**2)).sqrt()
    valid = trials > 0
    # At 0 (or all) successes the bound is exactly 0 (or 1); say so rather than print 1e-19.
    low = (
        pl.when(valid & (successes == 0)).then(0.0).when(valid).then((centre - half).clip(0.0, 1.0))
    )
    high = (
        pl.when(valid & (successes == trials))
        .then(1.0)
        .when(valid)
        .then((centre + half).clip(0.0, 1.0))
    )
    return low, high


def wilson(successes: int, trials: int, z: float) -> tuple[float, float]:
    if trials <= 0:
        return math.nan, math.nan
    p = successes / trials
    denom = 1 + z**2 / trials
    centre = (p + z**2 / (2 * trials)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2))
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


def difference_ci(k1: int, n1: int, k2: int, n2: int, z: float) -> tuple[float, float, float]:
    """(p1 - p2, low, high) by Newcombe's hybrid score method; NaN when a group is empty."""
    if n1 <= 0 or n2 <= 0:
        return math.nan, math.nan, math.nan
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, z)
    l2, u2 = wilson(k2, n2, z)
    diff = p1 - p2
    low = diff - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = diff + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return diff, low, high


def compare_to_control(
    table: pl.DataFrame,
    group: str,
    successes: str,
    trials: str,
    control: str | None,
    confidence: float,
    metric: str,
) -> pl.DataFrame:
    """Each group's rate against the control group's, with a CI on the difference.

    One row per non-control group; `significant` is true when the interval excludes 0.
    """
    z = z_value(confidence)
    rows = {str(r[group]): r for r in table.iter_rows(named=True) if r[group] is not None}
    names = sorted(rows)
    base = control if control is not None else (names[0] if names else None)
    out: list[dict[str, object]] = []
    if base is None or base not in rows:
        return pl.DataFrame(schema=_DIFF_SCHEMA)
    c = rows[base]
    for name in names:
        if name == base:
            continue
        r = rows[name]
        diff, low, high = difference_ci(
            int(r[successes] or 0),
            int(r[trials] or 0),
            int(c[successes] or 0),
            int(c[trials] or 0),
            z,
        )
        ok = not math.isnan(diff)
        out.append(
            {
                "metric": metric,
                "arm": name,
                "control": base,
                "rate": int(r[successes] or 0) / r[trials] if r[trials] else None,
                "control_rate": int(c[successes] or 0) / c[trials] if c[trials] else None,
                "difference": diff if ok else None,
                "ci_low": low if ok else None,
                "ci_high": high if ok else None,
                "confidence": confidence,
                "significant": (low > 0 or high < 0) if ok else None,
            }
        )
    return pl.DataFrame(out, schema=_DIFF_SCHEMA)


_DIFF_SCHEMA = {
    "metric": pl.String,
    "arm": pl.String,
    "control": pl.String,
    "rate": pl.Float64,
    "control_rate": pl.Float64,
    "difference": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "confidence": pl.Float64,
    "significant": pl.Boolean,
}
