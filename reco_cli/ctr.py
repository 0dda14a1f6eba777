"""Click-through rate from an impression log, with clicks attributed at most once per impression.

Clicks come either from the log's own `clicked` label (Open Bandit: one row per shown item) or
from click events joined to impressions: by request id and item when both carry a request id
(the id is the join, so no time window), otherwise by user and item, to the user's latest
impression of that item at most `attribution_window_minutes` before the click. A click that
joins no impression is an orphan; a second click on an already-clicked impression is a
duplicate. Both are counted and shown, never put into the CTR, so CTR can never exceed 1.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import polars as pl

from . import columns as C
from .config import ReportConfig
from .errors import InputDataError
from .reports import (
    GROUP,
    PERIODS,
    Report,
    check_arms,
    join_to_impressions,
    local_text,
    period_label,
    period_start,
)
from .stats import compare_to_control, wilson, wilson_exprs, z_value

CLICK_ID = "click_id"
STATUS = "status"
ATTRIBUTED = "attributed"
DUPLICATE = "duplicate"
ORPHAN = "orphan"
GROUP_ALIASES = {"item": C.ITEM_ID, "user": C.USER_ID, "request": C.REQUEST_ID}
# Groupings with a natural order are listed in it; others by CTR (low-volume last).
ORDERED = (C.POSITION, *PERIODS)


def click_events(events: pl.DataFrame | None, click_types: list[str]) -> pl.DataFrame:
    """The click events, numbered in time order."""
    schema: dict[str, pl.DataType] = {
        CLICK_ID: pl.UInt32(),
        C.USER_ID: pl.String(),
        C.ITEM_ID: pl.String(),
        C.REQUEST_ID: pl.String(),
        C.TIMESTAMP: pl.Datetime("us", "UTC"),
    }
    if events is None:
        return pl.DataFrame(schema=schema)
    return (
        events.filter(pl.col(C.EVENT_TYPE).is_in(click_types) & pl.col(C.TIMESTAMP).is_not_null())
        .sort(C.TIMESTAMP, C.SOURCE_FILE, C.SOURCE_LINE)
        .select(C.USER_ID, C.ITEM_ID, C.REQUEST_ID, C.TIMESTAMP)
        .with_row_index(CLICK_ID)
    )


def attribute_clicks(
    impressions: pl.DataFrame, clicks: pl.DataFrame, window: timedelta
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(impressions with `clicks` 0/1 and `duplicate_clicks`, clicks with `status` and impression).

    Each click joins at most one impression; per impression, its earliest joined click is
    attributed and any later ones are duplicates.
    """
    with_request = impressions.get_column(C.REQUEST_ID).drop_nulls().len() > 0
    by_request = pl.col(C.REQUEST_ID).is_not_null() & pl.lit(with_request)
    parts = []
    req_clicks = clicks.filter(by_request)
    if req_clicks.height:
        # Several impressions of one item in one request: the click takes the nearest in time.
        parts.append(
            join_to_impressions(
                req_clicks, impressions, [C.REQUEST_ID, C.ITEM_ID], carry=(C.IMPRESSION_ID,)
            )
        )
    user_clicks = clicks.filter(~by_request)
    if user_clicks.height:
        parts.append(
            join_to_impressions(
                user_clicks, impressions, [C.USER_ID, C.ITEM_ID], window, carry=(C.IMPRESSION_ID,)
            )
        )
    columns = [CLICK_ID, C.USER_ID, C.ITEM_ID, C.REQUEST_ID, C.TIMESTAMP, C.IMPRESSION_ID]
    joined = (
        pl.concat([p.select(columns) for p in parts])
        if parts
        else clicks.with_columns(pl.lit(None, pl.Int64).alias(C.IMPRESSION_ID)).select(columns)
    )
    rank = pl.col(C.TIMESTAMP).rank("ordinal").over(C.IMPRESSION_ID)
    outcomes = joined.sort(C.TIMESTAMP, CLICK_ID).with_columns(
        pl.when(pl.col(C.IMPRESSION_ID).is_null())
        .then(pl.lit(ORPHAN))
        .when(rank == 1)
        .then(pl.lit(ATTRIBUTED))
        .otherwise(pl.lit(DUPLICATE))
        .alias(STATUS)
    )
    per_imp = (
        outcomes.filter(pl.col(C.IMPRESSION_ID).is_not_null())
        .group_by(C.IMPRESSION_ID)
        .agg(
            (pl.col(STATUS) == ATTRIBUTED).sum().cast(pl.Int64).alias("clicks"),
            (pl.col(STATUS) == DUPLICATE).sum().cast(pl.Int64).alias("duplicate_clicks"),
        )
    )
    marked = impressions.join(per_imp, on=C.IMPRESSION_ID, how="left").with_columns(
        pl.col("clicks", "duplicate_clicks").fill_null(0)
    )
    return marked, outcomes.sort(CLICK_ID)


def label_clicks(impressions: pl.DataFrame) -> pl.DataFrame:
    """Impressions whose log says whether each was clicked: one click at most, by construction."""
    return impressions.with_columns(
        pl.col(C.CLICKED).fill_null(False).cast(pl.Int64).alias("clicks"),
        pl.lit(0, pl.Int64).alias("duplicate_clicks"),
    )


def group_key(name: str, timezone: str) -> tuple[str, pl.Expr, pl.Expr | None]:
    """(column name, impression-side key, click-side key or None when clicks lack it)."""
    column = GROUP_ALIASES.get(name, name)
    if column in PERIODS:
        key = period_start(pl.col(C.TIMESTAMP), timezone, column)
        return column, key, key
    click_side = pl.col(column) if column in (C.ITEM_ID, C.USER_ID, C.REQUEST_ID) else None
    return (
        column,
        pl.col(column).cast(pl.String) if column != C.POSITION else pl.col(column),
        (click_side),
    )


def ctr_table(
    marked: pl.DataFrame,
    outcomes: pl.DataFrame | None,
    by: str,
    *,
    timezone: str,
    min_impressions: int,
    confidence: float,
) -> pl.DataFrame:
    """Per group: impressions, clicks, CTR with its Wilson interval, duplicates, orphans, flag."""
    column, imp_key, click_key = group_key(by, timezone)
    table = (
        marked.with_columns(imp_key.alias(GROUP))
        .group_by(GROUP)
        .agg(
            pl.len().cast(pl.Int64).alias("impressions"),
            pl.col("clicks").sum().alias("clicks"),
            pl.col("duplicate_clicks").sum().alias("duplicate_clicks"),
        )
    )
    if outcomes is not None and click_key is not None:
        orphans = (
            outcomes.filter(pl.col(STATUS) == ORPHAN)
            .with_columns(click_key.alias(GROUP))
            .group_by(GROUP)
            .agg(pl.len().cast(pl.Int64).alias("orphan_clicks"))
        )
        table = table.join(orphans, on=GROUP, how="full", coalesce=True).with_columns(
            pl.col("impressions", "clicks", "duplicate_clicks", "orphan_clicks").fill_null(0)
        )
        naive = pl.col("clicks") + pl.col("duplicate_clicks") + pl.col("orphan_clicks")
    elif outcomes is None:  # clicked label: nothing can be orphaned or duplicated
        table = table.with_columns(pl.lit(0, pl.Int64).alias("orphan_clicks"))
        naive = pl.col("clicks")
    else:  # orphans have no impression, so no value of this column
        table = table.with_columns(pl.lit(None, pl.Int64).alias("orphan_clicks"))
        naive = pl.lit(None, pl.Int64)
    low, high = wilson_exprs(pl.col("clicks"), pl.col("impressions"), z_value(confidence))
    has = pl.col("impressions") > 0
    table = table.select(
        pl.col(GROUP).alias(column),
        "impressions",
        "clicks",
        pl.when(has).then(pl.col("clicks") / pl.col("impressions")).alias("ctr"),
        low.alias("ctr_low"),
        high.alias("ctr_high"),
        "duplicate_clicks",
        "orphan_clicks",
        pl.when(has).then(naive / pl.col("impressions")).alias("naive_ctr"),
        (pl.col("impressions") < min_impressions).alias("low_volume"),
    )
    if column in ORDERED:
        return table.sort(column, nulls_last=True)
    return table.sort(
        ["low_volume", "ctr", column], descending=[False, True, False], nulls_last=True
    )


def ctr_report(
    impressions: pl.DataFrame,
    events: pl.DataFrame | None,
    cfg: ReportConfig,
    by: str | None = None,
) -> Report:
    """CTR overall and by `by` (default: position when the log has positions, else item)."""
    settings = cfg.ctr
    tz = cfg.timezone
    if impressions.height == 0:
        raise InputDataError("the impression log is empty; nothing to report")
    if by is None:
        has_position = impressions.get_column(C.POSITION).null_count() < impressions.height
        by = C.POSITION if has_position else "item"
    column = GROUP_ALIASES.get(by, by)
    allowed = [c for c in impressions.columns if c not in _NOT_GROUPS] + list(PERIODS) + ["item"]
    if (column not in PERIODS and column not in impressions.columns) or column in _NOT_GROUPS:
        raise InputDataError(f"CTR cannot be grouped by {by!r}; use one of {', '.join(allowed)}")
    if column not in PERIODS and impressions.get_column(column).null_count() == impressions.height:
        raise InputDataError(
            f"the impression log has no {column} values; map data.impressions.columns.{column} "
            "(or, for arms, data.impressions.arms) and rerun reco ingest"
        )
    has_label = impressions.get_column(C.CLICKED).drop_nulls().len() > 0
    mode = settings.clicks
    if mode == "auto":
        mode = "label" if has_label else "events"
    window = timedelta(minutes=settings.attribution_window_minutes)
    outcomes: pl.DataFrame | None = None
    if mode == "label":
        if not has_label:
            raise InputDataError(
                "report.ctr.clicks is 'label' but the impression log has no clicked values; "
                "map data.impressions.columns.clicked"
            )
        marked = label_clicks(impressions)
        how = "the impression log's clicked column (one click per impression at most)"
    else:
        clicks = click_events(events, list(settings.click_types))
        if clicks.height == 0:
            raise InputDataError(
                f"no clicks: the impression log has no clicked column and the events hold no "
                f"{'/'.join(settings.click_types)} events (report.ctr.click_types)"
            )
        marked, outcomes = attribute_clicks(impressions, clicks, window)
        how = (
            "click events joined by request_id + item_id, else by user_id + item_id to the "
            f"latest impression at most {settings.attribution_window_minutes:g} min earlier"
        )
    z = z_value(cfg.confidence)
    n_imp = marked.height
    n_clicks = int(marked.get_column("clicks").sum())
    n_dup = int(marked.get_column("duplicate_clicks").sum())
    n_orphan = int(outcomes.filter(pl.col(STATUS) == ORPHAN).height) if outcomes is not None else 0
    raw = outcomes.height if outcomes is not None else n_clicks
    low, high = wilson(n_clicks, n_imp, z)
    totals = {
        "impressions": n_imp,
        "click_rows": raw,
        "attributed_clicks": n_clicks,
        "duplicate_clicks": n_dup,
        "orphan_clicks": n_orphan,
        "ctr": n_clicks / n_imp,
        "ctr_low": low,
        "ctr_high": high,
        "naive_ctr": raw / n_imp,
    }
    table = ctr_table(
        marked,
        outcomes,
        by,
        timezone=tz,
        min_impressions=settings.min_impressions,
        confidence=cfg.confidence,
    )
    worst = table.get_column("ctr").max()
    if isinstance(worst, float) and worst > 1:  # impossible by construction: a bug if it happens
        raise AssertionError(f"CTR above 1 ({worst}) after attribution")
    if column in PERIODS:
        table = table.select(
            column, period_label(column, column).alias("label"), pl.exclude(column)
        )
    tables = {"ctr": table, "totals": pl.DataFrame([totals])}
    if outcomes is not None:
        tables["clicks"] = outcomes
    if column == C.ARM:
        check_arms(table.rename({C.ARM: GROUP}), cfg.control_arm, "impression log")
        tables["arm_difference"] = compare_to_control(
            table, C.ARM, "clicks", "impressions", cfg.control_arm, cfg.confidence, "ctr"
        )
    span = impressions.get_column(C.TIMESTAMP)
    first, last = span.min(), span.max()
    assert isinstance(first, datetime) and isinstance(last, datetime)
    meta: dict[str, Any] = {
        "clicks_from": how,
        "mode": mode,
        "timezone": tz,
        "first_impression_local": local_text(first, tz),
        "data_end_local": local_text(last, tz),
        "min_impressions": settings.min_impressions,
        "confidence": cfg.confidence,
        "low_volume_groups": int(table.get_column("low_volume").sum()),
    }
    return Report("ctr", by, tables, meta)


# Not meaningful to group by: unique per row, or bookkeeping.
_NOT_GROUPS = (C.IMPRESSION_ID, C.TIMESTAMP, C.CLICKED, C.SOURCE_FILE, C.SOURCE_LINE)
