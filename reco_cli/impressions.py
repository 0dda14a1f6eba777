"""Ingest an impression log: what was shown, when, where, and whether it was clicked.

Same discipline as the events: every raw column is read as text by `readers`, and per file
read = kept + rejected + excluded + duplicates, each dropped row written with its reason to
impression_rejects.parquet. `reco report ctr` reads the canonical impressions.parquet.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

from . import columns as C
from .accounting import count_rows, first_reason, reasons
from .config import ImpressionsSource
from .errors import InputDataError
from .readers import (
    NATIVE_TS,
    RAGGED,
    ROW,
    SourceFile,
    read_source_file,
    resolve_paths,
)
from .timestamps import UTC_DTYPE, timestamp_column

IMPRESSIONS_FILE = "impressions.parquet"
IMPRESSION_REJECTS_FILE = "impression_rejects.parquet"
KEY = "data.impressions"

_REJECT = "__reject"
_EXCLUDE = "__exclude"
_KIND = "kind"
_FILE = "__file"
_WHERE = "__where_"
_TRUE = ("1", "1.0", "true", "t", "yes", "y")
_FALSE = ("0", "0.0", "false", "f", "no", "n")


@dataclass
class ImpressionsResult:
    impressions: pl.DataFrame
    rejects: pl.DataFrame
    report: dict[str, Any]

    def write(self, out: Path) -> None:
        self.impressions.write_parquet(out / IMPRESSIONS_FILE)
        self.rejects.write_parquet(out / IMPRESSION_REJECTS_FILE)


def impression_schema(extra: list[str]) -> dict[str, pl.DataType]:
    schema: dict[str, pl.DataType] = {C.IMPRESSION_ID: pl.Int64()}
    for name in C.IMPRESSION_COLUMNS:
        if name == C.TIMESTAMP:
            schema[name] = UTC_DTYPE
        elif name == C.POSITION:
            schema[name] = pl.Int64()
        elif name == C.CLICKED:
            schema[name] = pl.Boolean()
        else:
            schema[name] = pl.String()
    schema.update({name: pl.String() for name in extra})
    schema[C.SOURCE_FILE] = pl.String()
    schema[C.SOURCE_LINE] = pl.Int64()
    return schema


def ingest_impressions(
    src: ImpressionsSource, tmp: str, say: Callable[[str], None] | None = None
) -> ImpressionsResult:
    """Read, clean and check the configured impression log (nothing is written here)."""
    files = resolve_paths(src, f"{KEY}.path")
    arm_of = _arms_by_file(files, src)
    needed: dict[str, str | int] = dict(src.columns)
    for i, col in enumerate(src.where):
        needed[f"{_WHERE}{i}"] = col
    frames = []
    for idx, path in enumerate(files):
        if say:
            say(f"reading impressions {path}")
        part = read_source_file(
            path, src, KEY, needed, [[C.ITEM_ID], [C.TIMESTAMP]], tmp, native_timestamp=C.TIMESTAMP
        )
        frames.append(_normalise(part, idx, src, arm_of.get(path)))
    extra = [c for c in src.columns if c not in C.IMPRESSION_COLUMNS]
    combined = _mark_duplicates(pl.concat(frames, how="vertical"), extra)
    kept = combined.filter(pl.col(_KIND) == "kept")
    schema = impression_schema(extra)
    impressions = (
        kept.sort([C.TIMESTAMP, _FILE, C.SOURCE_LINE])
        .with_row_index(C.IMPRESSION_ID)
        .select([pl.col(n).cast(t) for n, t in schema.items()])
    )
    raw = [f"raw_{c}" for c in src.columns]
    reason = (
        pl.when(pl.col(_KIND) == "excluded")
        .then(pl.col(_EXCLUDE))
        .when(pl.col(_KIND) == "rejected")
        .then(pl.col(_REJECT))
        .otherwise(pl.lit("exact duplicate of an earlier row"))
    )
    rejects = (
        combined.filter(pl.col(_KIND) != "kept")
        .select(C.SOURCE_FILE, C.SOURCE_LINE, _KIND, reason.alias(C.REASON), *raw)
        .sort([C.SOURCE_FILE, C.SOURCE_LINE])
    )
    report = _report(src, files, combined, impressions, rejects)
    return ImpressionsResult(impressions, rejects, report)


def check_reject_share(report: dict[str, Any], limit: float) -> None:
    share = report["reject_share"]
    if share <= limit:
        return
    top = "; ".join(f"{r} x{n}" for r, n in list(report["rejected_by_reason"].items())[:3])
    raise InputDataError(
        f"{KEY}: {report['totals']['rejected']} impression rows ({share:.1%}) would be rejected, "
        f"above data.max_reject_fraction {limit:g}; top reasons: {top}. Fix the column mapping "
        "or formats (nothing was written)"
    )


def _arms_by_file(files: list[str], src: ImpressionsSource) -> dict[str, str]:
    """Each file's arm from the `arms` globs; a file matching none or several is an error."""
    if not src.arms:
        return {}

    def matches(path: str, pattern: str) -> bool:
        # A relative pattern also matches the end of an absolute path (run from elsewhere).
        pattern = os.path.normpath(pattern)
        if fnmatch.fnmatch(path, pattern):
            return True
        return not os.path.isabs(pattern) and fnmatch.fnmatch(path, f"*{os.sep}{pattern}")

    found: dict[str, str] = {}
    for path in files:
        norm = os.path.normpath(path)
        hits = [arm for arm, pattern in src.arms.items() if matches(norm, pattern)]
        if len(hits) != 1:
            raise InputDataError(
                f"{path}: matches {len(hits)} of the {KEY}.arms patterns "
                f"({', '.join(f'{a}: {p}' for a, p in src.arms.items())}); each file needs "
                "exactly one arm"
            )
        found[path] = hits[0]
    return found


def _normalise(part: SourceFile, idx: int, src: ImpressionsSource, arm: str | None) -> pl.DataFrame:
    frame = part.frame
    has_native = NATIVE_TS in frame.columns
    text_cols = [c for c in frame.columns if c not in (ROW, RAGGED, NATIVE_TS, C.SOURCE_LINE)]
    if has_native:
        text_cols.remove(C.TIMESTAMP)
    frame = frame.with_columns(pl.col(c).alias(f"raw_{c}") for c in src.columns)
    nulls = sorted(set(src.null_values) | {""})
    frame = frame.with_columns(
        pl.when(pl.col(c).str.strip_chars().is_in(nulls))
        .then(None)
        .otherwise(pl.col(c).str.strip_chars())
        .alias(c)
        for c in text_cols
    )
    for name in C.IMPRESSION_COLUMNS:
        if name not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.String).alias(name))
    if arm is not None:
        frame = frame.with_columns(pl.lit(arm).alias(C.ARM))

    reasons: list[tuple[pl.Expr, pl.Expr | str]] = [
        (pl.col(RAGGED), pl.lit("more fields than the header (an unquoted separator?)")),
        (pl.col(C.ITEM_ID).is_null(), pl.lit("missing item_id")),
    ]
    ts, ts_reasons = timestamp_column(part.path, frame, src, KEY, {})
    reasons.extend(ts_reasons)

    pos_text = pl.col(C.POSITION)
    pos_num = pos_text.cast(pl.Float64, strict=False)
    bad_pos = pos_text.is_not_null() & (
        pos_num.is_null() | ~pos_num.is_finite() | (pos_num != pos_num.round(0)) | (pos_num < 0)
    )
    reasons.append((bad_pos, pl.lit("position is not a whole number >= 0: '") + pos_text + "'"))
    click_text = pl.col(C.CLICKED).str.to_lowercase()
    clicked = (
        pl.when(click_text.is_in(_TRUE))
        .then(True)
        .when(click_text.is_in(_FALSE))
        .then(False)
        .otherwise(None)
    )
    reasons.append(
        (
            click_text.is_not_null() & clicked.is_null(),
            pl.lit("clicked is not 0/1 or true/false: '") + pl.col(C.CLICKED) + "'",
        )
    )
    exclusions = [
        (
            ~pl.col(f"{_WHERE}{i}").is_in(values).fill_null(False),
            pl.lit(f"{col} not in {values} ({KEY}.where)"),
        )
        for i, (col, values) in enumerate(src.where.items())
    ]
    frame = frame.with_columns(
        first_reason(reasons).alias(_REJECT),
        first_reason(exclusions).alias(_EXCLUDE),
        ts.alias(C.TIMESTAMP),
        pl.when(bad_pos).then(None).otherwise(pos_num).cast(pl.Int64).alias(C.POSITION),
        clicked.alias(C.CLICKED),
        pl.lit(part.path).alias(C.SOURCE_FILE),
        pl.lit(idx, pl.Int32).alias(_FILE),
    )
    # A row left out on purpose is never also a reject (it does not count towards the share).
    return frame.with_columns(
        pl.when(pl.col(_EXCLUDE).is_not_null()).then(None).otherwise(pl.col(_REJECT)).alias(_REJECT)
    )


def _mark_duplicates(frame: pl.DataFrame, extra: list[str]) -> pl.DataFrame:
    """kept, rejected, excluded, or duplicate: identical to an earlier valid row in every column."""
    frame = frame.sort([_FILE, C.SOURCE_LINE])
    valid = pl.col(_REJECT).is_null() & pl.col(_EXCLUDE).is_null()
    key = [*C.IMPRESSION_COLUMNS, *extra]
    first = pl.struct([pl.col(c) for c in key]).is_first_distinct().over(valid)
    return frame.with_columns(
        pl.when(pl.col(_EXCLUDE).is_not_null())
        .then(pl.lit("excluded"))
        .when(pl.col(_REJECT).is_not_null())
        .then(pl.lit("rejected"))
        .when(~first)
        .then(pl.lit("duplicate"))
        .otherwise(pl.lit("kept"))
        .alias(_KIND)
    )


def _report(
    src: ImpressionsSource,
    files: list[str],
    combined: pl.DataFrame,
    impressions: pl.DataFrame,
    rejects: pl.DataFrame,
) -> dict[str, Any]:
    per_file, totals = count_rows(combined, files, _KIND)

    def by_reason(kind: str) -> dict[str, int]:
        return reasons(rejects, _KIND, kind)

    ts = impressions.get_column(C.TIMESTAMP)
    clicked = impressions.get_column(C.CLICKED)
    arms = impressions.group_by(C.ARM).len().drop_nulls().sort(C.ARM)
    return {
        "files": [asdict(fc) for fc in per_file],
        "totals": asdict(totals),
        "rejected_by_reason": by_reason("rejected"),
        "excluded_by_reason": by_reason("excluded"),
        "duplicates_removed": totals.duplicates,
        "reject_share": totals.reject_share,
        "impressions": impressions.height,
        "clicked_label": None if clicked.null_count() == len(clicked) else int(clicked.sum()),
        "distinct": {
            name: int(impressions.get_column(name).drop_nulls().n_unique())
            for name in (C.ITEM_ID, C.USER_ID, C.REQUEST_ID)
        },
        "arms": {str(a): int(n) for a, n in arms.iter_rows()},
        "time_span": {
            "first": ts.min().isoformat() if impressions.height else None,  # type: ignore[union-attr]
            "last": ts.max().isoformat() if impressions.height else None,  # type: ignore[union-attr]
        },
        "columns": list(src.columns),
        "timezone_for_naive_timestamps": src.timezone or "UTC",
    }
