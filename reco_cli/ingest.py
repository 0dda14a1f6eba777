"""Ingest: raw event exports -> canonical, typed, UTC events, with every dropped row accounted for.

Per input file: read = kept + rejected + excluded + duplicates. Rejected rows are unusable
(missing id, bad timestamp, unknown event type, bad number); excluded rows are dropped on
purpose by the config; duplicates are rows identical to an earlier row in every canonical
column. All three are written to rejects.parquet with their reason, file and line.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import polars as pl

from . import columns as C
from .accounting import count_rows, first_reason, reasons
from .config import EventsSource, ItemsSource, KeywordColumn, RecoConfig
from .errors import InputDataError
from .impressions import check_reject_share as check_impression_rejects
from .impressions import ingest_impressions
from .publish import prepare_workdir, publish_version
from .readers import (
    NATIVE_TS,
    RAGGED,
    ROW,
    SourceFile,
    parse_number,
    read_source_file,
    resolve_paths,
)
from .timestamps import UTC_DTYPE, timestamp_column

EVENTS_FILE = "events.parquet"
ITEMS_FILE = "items.parquet"
REJECTS_FILE = "rejects.parquet"
REPORT_FILE = "ingest_report.json"

REJECT = "__reject"
EXCLUDE = "__exclude"
VALUE = "__value"
FILE_IDX = "__file"
KIND = "kind"
# Id values that are kept but look like a placeholder someone meant as "missing".
SUSPICIOUS_IDS = (
    "na",
    "n/a",
    "null",
    "none",
    "nan",
    "undefined",
    "unknown",
    "-",
    "0",
    "-1",
    "#n/a",
)
# `77.0` or `1.2E+11`: ids a spreadsheet turned into numbers.
FLOAT_ID = r"^-?\d+\.0+$|^-?\d+(\.\d+)?[eE][+-]?\d+$"


@dataclass
class IngestResult:
    report: dict[str, Any]
    events: pl.DataFrame
    rejects: pl.DataFrame
    items: pl.DataFrame | None
    version_dir: Path | None = None
    notes: list[str] = field(default_factory=list)
    impressions: pl.DataFrame | None = None


def run_ingest(
    cfg: RecoConfig,
    now: datetime | None = None,
    status: Callable[[str], None] | None = None,
    write: bool = True,
) -> IngestResult:
    """Read, clean and check the configured events (and items); publish them atomically."""
    say = status or (lambda _msg: None)
    if cfg.data.events is None:  # an impression-only config (e.g. Open Bandit)
        return _ingest_impressions_only(cfg, now, say, write)
    src = cfg.data.events
    workdir = cfg.workdir_path
    prepare_workdir(workdir, "data", InputDataError)
    notes: list[str] = []
    files = resolve_paths(src, "data.events.path", notes)
    timestamp_notes: dict[str, Any] = {}
    frames = []
    blank_lines: dict[str, int] = {}
    with tempfile.TemporaryDirectory(dir=workdir, prefix=".ingest-") as tmp:
        for idx, path in enumerate(files):
            say(f"reading {path}")
            part = read_source_file(
                path,
                src,
                "data.events",
                dict(src.columns),
                [[C.ITEM_ID], [C.USER_ID, C.SESSION_ID]],
                tmp,
                native_timestamp=C.TIMESTAMP,
            )
            notes.extend(part.notes)
            blank_lines[path] = part.blank_lines
            frames.append(_normalise_file(part, idx, src, timestamp_notes))
        items = _ingest_items(cfg.data.items, tmp) if cfg.data.items else None
        shown = ingest_impressions(cfg.data.impressions, tmp, say) if cfg.data.impressions else None
    say("checking rows")
    combined = pl.concat(frames, how="vertical")
    combined = _mark_duplicates(combined, src)
    kept = combined.filter(pl.col(KIND) == "kept")
    events = _build_sessions(kept, src, cfg.data.session_gap_minutes)
    events = _canonical_events(events)
    rejects = _rejects_frame(combined.filter(pl.col(KIND) != "kept"), list(src.columns))
    report = _report(cfg, files, combined, events, rejects, items, notes, timestamp_notes, now)
    for entry in report["files"]:
        entry["blank_lines"] = blank_lines.get(entry["path"], 0)
    _check_reject_share(report, rejects, cfg.data.max_reject_fraction)
    _check_something_kept(report)
    if shown is not None:
        report["impressions"] = shown.report
        check_impression_rejects(shown.report, cfg.data.max_reject_fraction)
    result = IngestResult(report, events, rejects, items[0] if items else None, notes=notes)
    result.impressions = shown.impressions if shown else None
    if write:
        say("writing")

        def build(out: Path) -> None:
            events.write_parquet(out / EVENTS_FILE)
            rejects.write_parquet(out / REJECTS_FILE)
            if items is not None:
                items[0].write_parquet(out / ITEMS_FILE)
            if shown is not None:
                shown.write(out)
            (out / REPORT_FILE).write_text(json.dumps(report, indent=2, default=str) + "\n")

        result.version_dir = publish_version(
            workdir / "ingests", workdir / "data", build, cfg.data.keep_versions
        )
        report["output_dir"] = str(workdir / "data")
    return result


# --- per-file normalisation -------------------------------------------------------------------


def _null_tokens(src: EventsSource | ItemsSource) -> list[str]:
    return sorted(set(src.null_values) | {""})


def _clean_strings(frame: pl.DataFrame, names: list[str], nulls: list[str]) -> pl.DataFrame:
    """Trim every string column, then turn configured null tokens into nulls."""
    exprs = []
    for name in names:
        # A byte-order mark inside a file (concatenated exports) is invisible dirt, like spaces.
        trimmed = pl.col(name).str.strip_chars().str.strip_chars("\ufeff").str.strip_chars()
        exprs.append(pl.when(trimmed.is_in(nulls)).then(None).otherwise(trimmed).alias(name))
    return frame.with_columns(exprs)


def _normalise_file(
    part: SourceFile, idx: int, src: EventsSource, ts_notes: dict[str, Any]
) -> pl.DataFrame:
    mapped = [c for c in src.columns if c != C.TIMESTAMP or NATIVE_TS not in part.frame.columns]
    frame = part.frame
    # Keep what the file said, for rejects.parquet and for counting trimmed ids.
    raw_cols = [pl.col(c).alias(f"raw_{c}") for c in src.columns if c in frame.columns]
    frame = frame.with_columns(raw_cols)
    frame = _clean_strings(frame, [c for c in mapped if c in frame.columns], _null_tokens(src))
    for name in C.EVENT_COLUMNS:
        if name not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.String).alias(name))

    reasons: list[tuple[pl.Expr, pl.Expr | str]] = []  # (condition, reason) in priority order
    reasons.append((pl.col(RAGGED), "more fields than the header (an unquoted separator?)"))
    named = {
        c: col for c, col in src.columns.items() if isinstance(col, str) and c in frame.columns
    }
    if src.has_header and named:
        # Concatenated exports repeat their header line in the middle of the data.
        repeat = pl.all_horizontal([pl.col(f"raw_{c}") == col for c, col in named.items()])
        reasons.append((repeat, "a repeated header line"))
    reasons.append((pl.col(C.ITEM_ID).is_null(), "missing item_id"))
    if C.SESSION_ID in src.columns:
        who_missing = pl.col(C.USER_ID).is_null() & pl.col(C.SESSION_ID).is_null()
        reasons.append((who_missing, "missing user_id and session_id"))
    else:
        reasons.append((pl.col(C.USER_ID).is_null(), "missing user_id"))

    ts, ts_reasons = _timestamp_exprs(part, frame, src, ts_notes)
    reasons.extend(ts_reasons)

    # Event types: canonical names map to themselves, then the configured raw -> canonical map.
    if C.EVENT_TYPE in src.columns:
        mapping = {t: t for t in C.EVENT_TYPES} | dict(src.event_types)
        raw_type = pl.col(C.EVENT_TYPE)
        event = raw_type.replace_strict(mapping, default=None, return_dtype=pl.String)
        reasons.append((raw_type.is_null(), "missing event type"))
        reasons.append((event.is_null(), pl.lit("unknown event type '") + raw_type + pl.lit("'")))
    else:
        event = pl.lit(src.default_event_type)

    numbers: dict[str, pl.Expr] = {}
    for name in C.NUMERIC_COLUMNS:
        if name not in src.columns:
            numbers[name] = pl.lit(None, pl.Float64)
            continue
        text = pl.col(name)
        value = parse_number(text, src.decimal_comma)
        reasons.append(
            (text.is_not_null() & value.is_null(), pl.lit(f"non-numeric {name} '") + text + "'")
        )
        reasons.append(
            (value.is_not_null() & ~value.is_finite(), pl.lit(f"non-finite {name} '") + text + "'")
        )
        if name == C.WEIGHT:
            reasons.append((value < 0, pl.lit("negative weight ") + text))
            value = value.fill_null(src.empty_weight)
        numbers[name] = value

    quantity = numbers[C.QUANTITY]
    event = pl.when((event == C.PURCHASE) & (quantity < 0)).then(pl.lit(C.RETURN)).otherwise(event)

    exclusions: list[tuple[pl.Expr, str]] = []
    if src.exclude_items:
        exclusions.append((pl.col(C.ITEM_ID).is_in(src.exclude_items), "excluded item (config)"))
    if src.exclude_users:
        exclusions.append((pl.col(C.USER_ID).is_in(src.exclude_users), "excluded user (config)"))
    if src.exclude_event_types:
        exclusions.append((event.is_in(src.exclude_event_types), "excluded event type (config)"))
    if src.time_window is not None:
        win = src.time_window
        outside = pl.lit(False)
        if win.start is not None:
            outside = outside | (ts < pl.lit(win.start).cast(UTC_DTYPE))
        if win.end is not None:
            outside = outside | (ts >= pl.lit(win.end).cast(UTC_DTYPE))
        exclusions.append((outside, "outside data.events.time_window (config)"))
    if src.exclude_price_at_most is not None and C.PRICE in src.columns:
        cap = src.exclude_price_at_most
        exclusions.append((numbers[C.PRICE] <= cap, f"price at or below {cap:g} (config)"))

    frame = frame.with_columns(
        first_reason(reasons).alias(REJECT),
        first_reason([(c, pl.lit(r)) for c, r in exclusions]).alias(EXCLUDE),
        ts.alias(C.TIMESTAMP),
        event.alias(C.EVENT_TYPE),
        *[v.alias(k) for k, v in numbers.items()],
        pl.lit(part.path).alias(C.SOURCE_FILE),
        pl.lit(idx, pl.Int32).alias(FILE_IDX),
    )
    # A deliberate exclusion wins over a reject: such rows never count towards the reject share.
    frame = frame.with_columns(
        pl.when(pl.col(EXCLUDE).is_not_null()).then(None).otherwise(pl.col(REJECT)).alias(REJECT)
    )
    for c in C.EVENT_COLUMNS:
        if f"raw_{c}" not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.String).alias(f"raw_{c}"))
    keep = [
        *C.EVENT_COLUMNS,
        C.SOURCE_FILE,
        C.SOURCE_LINE,
        FILE_IDX,
        REJECT,
        EXCLUDE,
        *[f"raw_{c}" for c in C.EVENT_COLUMNS],
    ]
    return frame.select(keep).with_columns(pl.col(C.TIMESTAMP).cast(UTC_DTYPE))


def _timestamp_exprs(
    part: SourceFile, frame: pl.DataFrame, src: EventsSource, ts_notes: dict[str, Any]
) -> tuple[pl.Expr, list[tuple[pl.Expr, pl.Expr | str]]]:
    if C.TIMESTAMP not in src.columns:
        # An export without times (user, item[, weight]) trains fine; splits, sessions and
        # reports that need time say so when asked.
        ts_notes["no_timestamp_column"] = True
        return pl.lit(None, UTC_DTYPE), []
    return timestamp_column(part.path, frame, src, "data.events", ts_notes)


# --- across files -----------------------------------------------------------------------------


def _mark_duplicates(frame: pl.DataFrame, src: EventsSource) -> pl.DataFrame:
    """Classify every row: kept, rejected, excluded or duplicate (of an earlier kept row)."""
    frame = frame.sort([FILE_IDX, C.SOURCE_LINE])
    valid = pl.col(REJECT).is_null() & pl.col(EXCLUDE).is_null()
    key = [c for c in C.EVENT_COLUMNS if c in src.columns or c == C.EVENT_TYPE]
    # Duplicates are rows identical in every canonical column; only valid rows take part.
    first = pl.struct([pl.col(c) for c in key]).is_first_distinct().over(valid)
    return frame.with_columns(
        pl.when(pl.col(EXCLUDE).is_not_null())
        .then(pl.lit("excluded"))
        .when(pl.col(REJECT).is_not_null())
        .then(pl.lit("rejected"))
        .when(~first)
        .then(pl.lit("duplicate"))
        .otherwise(pl.lit("kept"))
        .alias(KIND)
    )


def _build_sessions(events: pl.DataFrame, src: EventsSource, gap_minutes: float) -> pl.DataFrame:
    """Give events without a session id one built per user from the inactivity gap."""
    needs = (
        pl.col(C.SESSION_ID).is_null()
        & pl.col(C.USER_ID).is_not_null()
        & pl.col(C.TIMESTAMP).is_not_null()
    )
    if events.select(needs.any()).item() is not True:
        return events
    gap = pl.duration(microseconds=int(gap_minutes * 60_000_000))
    part = events.filter(needs).sort([C.USER_ID, C.TIMESTAMP, C.SOURCE_FILE, C.SOURCE_LINE])
    step = pl.col(C.TIMESTAMP).diff().over(C.USER_ID)
    starts = (step.is_null() | (step > gap)).cast(pl.Int64)
    part = part.with_columns(
        (pl.col(C.USER_ID) + pl.lit("#s") + starts.cum_sum().over(C.USER_ID).cast(pl.String)).alias(
            C.SESSION_ID
        )
    )
    return pl.concat([events.filter(~needs), part], how="vertical")


def _canonical_events(events: pl.DataFrame) -> pl.DataFrame:
    schema = C.event_schema()
    return events.select([pl.col(n).cast(t) for n, t in schema.items()]).sort(  # type: ignore[arg-type]
        [C.TIMESTAMP, C.USER_ID, C.ITEM_ID, C.SOURCE_FILE, C.SOURCE_LINE], nulls_last=True
    )


def _rejects_frame(dropped: pl.DataFrame, mapped: list[str]) -> pl.DataFrame:
    """Dropped rows with kind, reason, file, line and the raw values of the mapped columns."""
    reason = (
        pl.when(pl.col(KIND) == "excluded")
        .then(pl.col(EXCLUDE))
        .when(pl.col(KIND) == "rejected")
        .then(pl.col(REJECT))
        .otherwise(pl.lit("exact duplicate of an earlier row"))
    )
    return dropped.select(
        pl.col(C.SOURCE_FILE),
        pl.col(C.SOURCE_LINE),
        pl.col(KIND),
        reason.alias(C.REASON),
        *[pl.col(f"raw_{c}") for c in C.EVENT_COLUMNS if c in mapped],
    ).sort([C.SOURCE_FILE, C.SOURCE_LINE])


# --- items ------------------------------------------------------------------------------------


def _ingest_items(src: ItemsSource | None, tmp: str) -> tuple[pl.DataFrame, dict[str, Any]] | None:
    if src is None:
        return None
    files = resolve_paths(src, "data.items.path")
    frames = []
    for path in files:
        part = read_source_file(path, src, "data.items", dict(src.columns), [[C.ITEM_ID]], tmp)
        frames.append(part.frame.drop(ROW, RAGGED, C.SOURCE_LINE))
    raw = pl.concat(frames, how="vertical")
    names = list(src.columns)
    cleaned = _clean_strings(raw, names, _null_tokens(src))
    numeric = {C.PRICE, *src.numeric_columns} & set(names)
    bad_numbers = {}
    for name in numeric:
        text = pl.col(name)
        value = parse_number(text, src.decimal_comma)
        bad_numbers[name] = int(
            cleaned.select(
                (text.is_not_null() & (value.is_null() | ~value.is_finite())).sum()
            ).item()
        )
        cleaned = cleaned.with_columns(
            pl.when(value.is_finite()).then(value).otherwise(None).alias(name)
        )
    without_id = int(cleaned.select(pl.col(C.ITEM_ID).is_null().sum()).item())
    cleaned = cleaned.filter(pl.col(C.ITEM_ID).is_not_null())
    # One row per item: each attribute takes its most frequent non-null value (first seen on ties).
    others = [n for n in names if n != C.ITEM_ID]
    aggs = [pl.col(n).drop_nulls().mode(maintain_order=True).first().alias(n) for n in others]
    items = cleaned.group_by(C.ITEM_ID, maintain_order=True).agg(aggs).sort(C.ITEM_ID)
    conflicts = int(
        cleaned.group_by(C.ITEM_ID)
        .agg([pl.col(n).drop_nulls().n_unique() for n in others])
        .select(pl.any_horizontal([pl.col(n) > 1 for n in others]).sum() if others else pl.lit(0))
        .item()
    )
    derived: dict[str, dict[str, int]] = {}
    for name, spec in src.keyword_columns.items():
        items = items.with_columns(keyword_column(spec).alias(name))
        counts = items.get_column(name).fill_null("(none)").value_counts(sort=True)
        derived[name] = {str(v): int(n) for v, n in counts.iter_rows()}
    stats = {
        "files": files,
        "rows_read": raw.height,
        "rows_without_item_id": without_id,
        "items": items.height,
        "items_with_conflicting_values": conflicts,
        "invalid_numbers_set_to_null": {k: v for k, v in bad_numbers.items() if v},
        "columns": [*names, *src.keyword_columns],
        "keyword_columns": derived,
    }
    return items, stats


def keyword_column(spec: KeywordColumn) -> pl.Expr:
    """The first value (in config order) whose words occur, as whole words in any case, in the
    source text; `spec.default` when none does."""
    expr: pl.Expr = pl.lit(spec.default, dtype=pl.String)
    for value, words in reversed(list(spec.keywords.items())):
        # Words of a phrase match across any run of spaces ("HOT  WATER BOTTLE" in exports).
        phrases = (r"\s+".join(re.escape(part) for part in w.split()) for w in words)
        pattern = r"(?i)\b(?:" + "|".join(phrases) + r")\b"
        matched = pl.col(spec.source).str.contains(pattern).fill_null(False)
        expr = pl.when(matched).then(pl.lit(value)).otherwise(expr)
    return expr


# --- report -----------------------------------------------------------------------------------


def _report(
    cfg: RecoConfig,
    files: list[str],
    combined: pl.DataFrame,
    events: pl.DataFrame,
    rejects: pl.DataFrame,
    items: tuple[pl.DataFrame, dict[str, Any]] | None,
    notes: list[str],
    ts_notes: dict[str, Any],
    now: datetime | None,
) -> dict[str, Any]:
    src = cfg.data.require_events()
    per_file, totals = count_rows(combined, files, KIND)

    def by_reason(kind: str) -> dict[str, int]:
        return reasons(rejects, KIND, kind)

    trimmed = {}
    for c in (C.USER_ID, C.ITEM_ID, C.SESSION_ID):
        if c in src.columns:
            raw = pl.col(f"raw_{c}")
            n = combined.select((raw.is_not_null() & (raw != raw.str.strip_chars())).sum()).item()
            if n:
                trimmed[c] = int(n)
    suspicious: dict[str, dict[str, int]] = {}
    float_like: dict[str, dict[str, Any]] = {}
    for c in (C.USER_ID, C.ITEM_ID):
        if c not in src.columns:
            continue
        vals = events.get_column(c).drop_nulls()
        sus = vals.filter(vals.str.to_lowercase().is_in(list(SUSPICIOUS_IDS))).value_counts()
        if sus.height:
            suspicious[c] = {str(v): int(n) for v, n in sus.iter_rows()}
        floats = vals.filter(vals.str.contains(FLOAT_ID))
        if floats.len():
            float_like[c] = {"count": floats.len(), "example": floats.first()}
    ts = events.get_column(C.TIMESTAMP)
    now = now or datetime.now(UTC)
    first = cast(datetime | None, ts.min())
    newest = cast(datetime | None, ts.max())
    users = events.get_column(C.USER_ID)
    report: dict[str, Any] = {
        "created_at": now.isoformat(),
        "config": {
            "null_values": _null_tokens(src),
            "id_trimming": "leading and trailing whitespace is stripped from every value",
            "timestamp_format": src.timestamp_format,
            "timezone_for_naive_timestamps": ts_notes.get("timezone_for_naive", src.timezone),
            "session_gap_minutes": cfg.data.session_gap_minutes,
            "duplicate_rule": "rows identical in every canonical column: "
            + ", ".join(c for c in C.EVENT_COLUMNS if c in src.columns or c == C.EVENT_TYPE),
        },
        "files": [asdict(fc) | {"balanced": fc.balanced} for fc in per_file],
        "totals": asdict(totals) | {"balanced": totals.balanced},
        "rejected_by_reason": by_reason("rejected"),
        "excluded_by_reason": by_reason("excluded"),
        "duplicates_removed": totals.duplicates,
        "reject_share": totals.reject_share,
        "max_reject_fraction": cfg.data.max_reject_fraction,
        "distinct": {
            "users": int(users.drop_nulls().n_unique()),
            "items": int(events.get_column(C.ITEM_ID).n_unique()),
            "sessions": int(events.get_column(C.SESSION_ID).drop_nulls().n_unique()),
        },
        "anonymous_events": int(users.null_count()),
        "events_by_type": {
            str(t): int(n)
            for t, n in events.group_by(C.EVENT_TYPE).len().sort(C.EVENT_TYPE).iter_rows()
        },
        "time_span": {
            "first": first.isoformat() if first else None,
            "last": newest.isoformat() if newest else None,
        },
        "freshness_days": round((now - newest).total_seconds() / 86400, 2) if newest else None,
        "sessions_built_from_gaps": C.SESSION_ID not in src.columns and C.TIMESTAMP in src.columns,
        "id_values_trimmed": trimmed,
        "suspicious_id_values": suspicious,
        "float_like_ids": float_like,
        "timestamps": {
            "ambiguous_dst_taken_earliest": ts_notes.get("ambiguous_dst_taken_earliest", 0),
            "naive_read_as_utc": ts_notes.get("naive_read_as_utc", False),
            "no_timestamp_column": ts_notes.get("no_timestamp_column", False),
            "naive_values": ts_notes.get("naive_values", 0),
            "in_the_future": int((ts > now + timedelta(days=1)).sum()),
            "before_1990": int((ts < datetime(1990, 1, 1, tzinfo=UTC)).sum()),
        },
        "notes": notes,
    }
    if C.WEIGHT in src.columns:
        raw_w = pl.col(f"raw_{C.WEIGHT}")
        filled = (
            combined.filter(pl.col(KIND) == "kept")
            .select((raw_w.is_null() | raw_w.str.strip_chars().is_in(_null_tokens(src))).sum())
            .item()
        )
        report["empty_weights_set_to"] = {"value": src.empty_weight, "rows": int(filled)}
    if items is not None:
        report["items"] = items[1]
    return report


def _check_something_kept(report: dict[str, Any]) -> None:
    t = report["totals"]
    if t["kept"] == 0:
        raise InputDataError(
            f"no events kept: of {t['read']} rows read, {t['rejected']} were rejected, "
            f"{t['excluded']} excluded by the config and {t['duplicates']} duplicates; the "
            "previous data stays in use (nothing was written)"
        )


def _check_reject_share(report: dict[str, Any], rejects: pl.DataFrame, limit: float) -> None:
    share = report["reject_share"]
    if share <= limit:
        return
    top = list(report["rejected_by_reason"].items())[:3]
    first = rejects.filter(pl.col(KIND) == "rejected").row(0, named=True)
    raise InputDataError(
        f"{report['totals']['rejected']} of {report['totals']['read'] - report['totals']['excluded']} "
        f"rows ({share:.1%}) would be rejected, above data.max_reject_fraction {limit:g}; "
        f"top reasons: {'; '.join(f'{r} x{n}' for r, n in top)}; first at "
        f"{first[C.SOURCE_FILE]}:{first[C.SOURCE_LINE]}. Fix the column mapping or formats "
        "(nothing was written)"
    )


# --- impression-only configs -----------------------------------------------------------------


def _ingest_impressions_only(
    cfg: RecoConfig, now: datetime | None, say: Callable[[str], None], write: bool
) -> IngestResult:
    """Ingest a config without events (an impression log with a clicked column, e.g. Open Bandit)."""
    assert cfg.data.impressions is not None  # the config requires events or impressions
    workdir = cfg.workdir_path
    prepare_workdir(workdir, "data", InputDataError)
    with tempfile.TemporaryDirectory(dir=workdir, prefix=".ingest-") as tmp:
        shown = ingest_impressions(cfg.data.impressions, tmp, say)
        items = _ingest_items(cfg.data.items, tmp) if cfg.data.items else None
    check_impression_rejects(shown.report, cfg.data.max_reject_fraction)
    report: dict[str, Any] = {
        "created_at": (now or datetime.now(UTC)).isoformat(),
        "impressions": shown.report,
    }
    if items is not None:
        report["items"] = items[1]
    empty = pl.DataFrame(schema=C.event_schema())  # type: ignore[arg-type]
    result = IngestResult(report, empty, empty, items[0] if items else None)
    result.impressions = shown.impressions
    if write:

        def build(out: Path) -> None:
            shown.write(out)
            if items is not None:
                items[0].write_parquet(out / ITEMS_FILE)
            (out / REPORT_FILE).write_text(json.dumps(report, indent=2, default=str) + "\n")

        result.version_dir = publish_version(
            workdir / "ingests", workdir / "data", build, cfg.data.keep_versions
        )
        report["output_dir"] = str(workdir / "data")
    return result
