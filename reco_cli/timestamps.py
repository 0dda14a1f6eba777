"""Timestamp formats: detect the patterns in a column, parse configured formats into UTC.

Formats are chrono patterns as polars uses them (`%#z` accepts `Z` and `+01:00`, `%.f` an
optional fraction), or the keywords `iso8601`, `unix_s`, `unix_ms` and `auto`. Day-first
versus month-first (`03/02/2024`) is never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import polars as pl

UTC_DTYPE = pl.Datetime("us", "UTC")
ISO_AWARE = (
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M%#z",
    "%Y-%m-%d %H:%M%#z",
)
ISO_NAIVE = (
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)
_FAMILIES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "iso8601",
        re.compile(
            r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$"
        ),
    ),
    ("unix_s", re.compile(r"^\d{9,10}(\.\d+)?$")),
    ("unix_ms", re.compile(r"^\d{12,13}$")),
    ("day_or_month_first", re.compile(r"^\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}([ T].*)?$")),
)


def is_aware(fmt: str) -> bool:
    return any(z in fmt for z in ("%z", "%#z", "%:z", "%::z"))


@dataclass(frozen=True)
class Pattern:
    """One shape of timestamp text found in a column (digits shown as 9)."""

    shape: str
    family: str | None
    count: int
    example: str


def detect_patterns(raw: pl.Series) -> list[Pattern]:
    """Group the non-null values of a string column by their shape, most frequent first."""
    values = raw.drop_nulls()
    if values.len() == 0:
        return []
    shapes = (
        pl.DataFrame({"v": values})
        .with_columns(pl.col("v").str.replace_all(r"\d", "9").alias("shape"))
        .group_by("shape")
        .agg(pl.len().alias("n"), pl.col("v").first().alias("example"))
        .sort(["n", "shape"], descending=[True, False])
    )
    out = []
    for shape, n, example in shapes.iter_rows():
        family = next((name for name, rx in _FAMILIES if rx.match(example)), None)
        out.append(Pattern(shape, family, int(n), example))
    return out


def describe_patterns(patterns: list[Pattern], limit: int = 6) -> str:
    parts = [f"{p.shape!r} x{p.count} (e.g. {p.example!r})" for p in patterns[:limit]]
    if len(patterns) > limit:
        parts.append(f"... {len(patterns) - limit} more")
    return "; ".join(parts)


def expand(formats: list[str]) -> tuple[list[str], list[str], list[str]]:
    """Split configured formats into (aware chrono, naive chrono, epoch keywords)."""
    aware: list[str] = []
    naive: list[str] = []
    epoch: list[str] = []
    for fmt in formats:
        if fmt == "iso8601":
            aware.extend(ISO_AWARE)
            naive.extend(ISO_NAIVE)
        elif fmt in ("unix_s", "unix_ms"):
            epoch.append(fmt)
        elif is_aware(fmt):
            aware.append(fmt)
        else:
            naive.append(fmt)
    return aware, naive, epoch


def parse_columns(raw: pl.Expr, formats: list[str]) -> tuple[pl.Expr, pl.Expr]:
    """(aware_or_epoch_utc, naive) expressions: the first format that matches wins."""
    aware, naive, epoch = expand(formats)
    utc_parts = [raw.str.to_datetime(f, time_unit="us", strict=False) for f in aware]
    numeric = raw.str.contains(r"^\d+(\.\d+)?$")
    for kind in epoch:
        scale = 1_000_000 if kind == "unix_s" else 1_000
        micros = (raw.cast(pl.Float64, strict=False) * scale).round(0).cast(pl.Int64, strict=False)
        utc_parts.append(
            pl.when(numeric).then(micros.cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
        )
    utc = (
        pl.coalesce([p.cast(UTC_DTYPE) for p in utc_parts])
        if utc_parts
        else pl.lit(None, UTC_DTYPE)
    )
    naive_dt = pl.Datetime("us")
    naive_parts = [raw.str.to_datetime(f, time_unit="us", strict=False) for f in naive]
    naive_expr = (
        pl.coalesce([p.cast(naive_dt) for p in naive_parts])
        if naive_parts
        else pl.lit(None, naive_dt)
    )
    return utc, naive_expr


def localize(
    naive: pl.Expr, timezone: str, ambiguous: Literal["earliest", "latest"] = "earliest"
) -> pl.Expr:
    """Naive local times in `timezone` to UTC; times in a DST gap become null."""
    return naive.dt.replace_time_zone(
        timezone,
        ambiguous=ambiguous,
        non_existent="null",
    ).dt.convert_time_zone("UTC")
