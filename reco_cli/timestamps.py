"""Timestamp formats: detect the patterns in a column, parse configured formats into UTC.

Formats are chrono patterns as polars uses them (`%#z` accepts `Z` and `+01:00`, `%.f` an
optional fraction), or the keywords `iso8601`, `unix_s`, `unix_ms` and `auto`. Day-first
versus month-first (`03/02/2024`) is never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import polars as pl

from . import columns as C
from .config import SourceConfig
from .errors import InputDataError

NATIVE_TS = "__ts_native"  # a Parquet timestamp column that is already temporal

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


Reason = tuple[pl.Expr, pl.Expr | str]


def timestamp_column(
    path: str, frame: pl.DataFrame, src: SourceConfig, key: str, notes: dict[str, Any]
) -> tuple[pl.Expr, list[Reason]]:
    """The UTC timestamp of each row and its reject reasons, after checking the column as a
    whole (a format that matches nothing, mixed offsets, epoch units stop the file).

    `frame` holds the raw `timestamp` strings (or NATIVE_TS for a temporal Parquet column);
    `key` is the config section named in messages; `notes` collects counts for the report.
    """
    where = f"{path}: column {src.columns[C.TIMESTAMP]!r}"
    if NATIVE_TS in frame.columns:  # Parquet with a real timestamp column
        native = pl.col(NATIVE_TS)
        dtype = frame.schema[NATIVE_TS]
        if getattr(dtype, "time_zone", None):
            ts = native.dt.convert_time_zone("UTC")
        else:
            ts = localize(native, src.timezone or "UTC")
        return ts.cast(UTC_DTYPE), [(native.is_null(), "missing timestamp")]

    raw = pl.col(C.TIMESTAMP)
    formats = src.timestamp_formats
    values = frame.get_column(C.TIMESTAMP)
    if formats == ["auto"]:
        formats = _auto_formats(values, where, key)
    _check_epoch_unit(values, formats, where)
    utc, naive = parse_columns(raw, formats)
    probe = frame.select(
        raw.is_not_null().sum().alias("present"),
        utc.is_not_null().sum().alias("aware"),
        (utc.is_null() & naive.is_not_null()).sum().alias("naive"),
    ).row(0, named=True)
    present, n_aware, n_naive = probe["present"], probe["aware"], probe["naive"]
    if present and n_aware + n_naive == 0:
        patterns = detect_patterns(values)
        raise InputDataError(
            f"{where}: no timestamp matches {key}.timestamp_format {src.timestamp_format!r}; "
            f"found {describe_patterns(patterns)}; set timestamp_format to the file's pattern"
        )
    if n_aware and n_naive and src.timezone is None:
        raise InputDataError(
            f"{where}: {n_naive} of {present} timestamps have no UTC offset while the rest do; "
            f"set {key}.timezone to the zone the offset-less ones are in"
        )
    tz = src.timezone or "UTC"
    if n_naive and src.timezone is None:
        notes["naive_read_as_utc"] = True
    if n_naive:
        notes["timezone_for_naive"] = tz
        notes["naive_values"] = notes.get("naive_values", 0) + n_naive
    local = localize(naive, tz)
    ambiguous = naive.is_not_null() & (local != localize(naive, tz, "latest"))
    notes["ambiguous_dst_taken_earliest"] = notes.get("ambiguous_dst_taken_earliest", 0) + int(
        frame.select((utc.is_null() & ambiguous).sum()).item()
    )
    parsed = pl.coalesce(utc, local)
    plausible = parsed.is_between(pl.lit(EARLIEST, UTC_DTYPE), pl.lit(LATEST, UTC_DTYPE), "left")
    ts = pl.when(plausible).then(parsed)
    reasons: list[Reason] = [
        (raw.is_null(), "missing timestamp"),
        (
            utc.is_null() & naive.is_not_null() & local.is_null(),
            pl.lit(f"local time does not exist in {tz} (DST gap) '") + raw + "'",
        ),
        (parsed.is_null(), pl.lit("unparseable timestamp '") + raw + "'"),
        (~plausible, pl.lit("timestamp outside 1900..2200 '") + raw + "'"),
    ]
    return ts, reasons


# Timestamps outside this range are typing or unit errors, not events (and overflow datetimes).
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _check_epoch_unit(values: pl.Series, formats: list[str], where: str) -> None:
    """Refuse epoch numbers read in the wrong unit: seconds as milliseconds land in 1970."""
    if not set(formats) & {"unix_s", "unix_ms"} or len(set(formats)) > 1:
        return
    digits = values.drop_nulls().str.extract(r"^(\d+)(?:\.\d+)?$").str.len_chars().drop_nulls()
    if digits.len() == 0:
        return
    typical = int(digits.median() or 0)  # type: ignore[arg-type]
    if formats == ["unix_s"] and typical >= 12:
        raise InputDataError(
            f"{where}: values such as {values.drop_nulls()[0]!r} have {typical} digits: they look "
            "like milliseconds; set timestamp_format: unix_ms"
        )
    if formats == ["unix_ms"] and typical <= 10:
        raise InputDataError(
            f"{where}: values such as {values.drop_nulls()[0]!r} have {typical} digits: they look "
            "like seconds; set timestamp_format: unix_s"
        )


def _auto_formats(values: pl.Series, where: str, key: str) -> list[str]:
    """Pick the one format family a column uses, or refuse with every pattern found."""
    patterns = detect_patterns(values)
    if not patterns:
        return ["iso8601"]
    families = {p.family for p in patterns if p.family is not None}
    junk = sum(p.count for p in patterns if p.family is None)
    total = sum(p.count for p in patterns)
    if "day_or_month_first" in families:
        example = next(p.example for p in patterns if p.family == "day_or_month_first")
        raise InputDataError(
            f"{where}: values like {example!r} could be day-first or month-first and reco never "
            f"guesses; set {key}.timestamp_format, e.g. '%d/%m/%Y %H:%M' or '%m/%d/%Y %H:%M'"
            + (f" (patterns found: {describe_patterns(patterns)})" if len(patterns) > 1 else "")
        )
    if len(families) > 1 or not families or junk * 2 > total:
        raise InputDataError(
            f"{where}: timestamps come in {len(patterns)} patterns: {describe_patterns(patterns)}; "
            f"set {key}.timestamp_format to a pattern or a list of them "
            "(chrono patterns, iso8601, unix_s, unix_ms)"
        )
    return [families.pop()]
