"""Business reports from the canonical events: retention cohorts, rec-engaged users versus the
rest, experiment arms, and conversion / order value / revenue per period or segment.

Pure functions, polars DataFrames in and out; nothing here prints or draws (see report_render
and charts). Timestamps are UTC instants; calendar periods (day, week starting Monday, month)
are taken on the wall clock of the reporting time zone.

Definitions (the README repeats them):
- activity: an event of one of `report.retention.activity_types` by an identified user.
- a user's cohort: the period of their first activity event.
- triangle cell (cohort c, offset k): share of c's users with an activity event in period c+k;
  shown only when period c+k has ended by the data end, otherwise null (never 0).
- N-day retention: an activity event in (first, first + N days]. A user is eligible once
  first + N days <= data end. A cohort's N-day value is shown only when its period has ended and
  every user in it is eligible; averages use only the values shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from . import columns as C
from .config import EngagedSettings, RecoConfig, ReportConfig
from .errors import ConfigError, InputDataError
from .stats import compare_to_control

PERIODS = ("day", "week", "month")
ADJECTIVE = {"day": "daily", "week": "weekly", "month": "monthly"}
_EVERY = {"day": "1d", "week": "1w", "month": "1mo"}
FIRST = "first"
GAP = "gap"
COHORT = "cohort"
GROUP = "group"
ENGAGED = "engaged"
NOT_ENGAGED = "not engaged"
ANONYMOUS = "anonymous"
CAUTION_ENGAGED = (
    "caution: users choose to engage with recommendations, so engaged and other users differ "
    "in more than the recommendations; this is a comparison, not an experiment"
)


@dataclass
class Report:
    """A report's tables (the first is the main one: it is what --format csv prints) and facts."""

    kind: str
    by: str
    tables: dict[str, pl.DataFrame]
    meta: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def main(self) -> pl.DataFrame:
        return next(iter(self.tables.values()))


# --- periods ----------------------------------------------------------------------------------


def local_wall_clock(ts: pl.Expr, timezone: str) -> pl.Expr:
    """The naive wall-clock time in `timezone`, so calendar periods are the reporting zone's."""
    return ts.dt.convert_time_zone(timezone).dt.replace_time_zone(None)


def period_start(ts: pl.Expr, timezone: str, period: str) -> pl.Expr:
    """The local date the period containing `ts` starts on (weeks start on Monday)."""
    return local_wall_clock(ts, timezone).dt.truncate(_EVERY[period]).dt.date()


def period_index(start: pl.Expr, period: str) -> pl.Expr:
    """Consecutive integers for consecutive periods, so offsets are a subtraction."""
    if period == "month":
        return start.dt.year().cast(pl.Int64) * 12 + start.dt.month().cast(pl.Int64) - 1
    days = start.cast(pl.Int64)  # days since 1970-01-01
    return days // 7 if period == "week" else days


def _period_of(moment: datetime, timezone: str, period: str) -> Any:
    """The start date of the period holding `moment`."""
    frame = pl.DataFrame({"t": [moment]}, schema={"t": pl.Datetime("us", "UTC")})
    return frame.select(period_start(pl.col("t"), timezone, period)).item()


def _index_of(moment: datetime, timezone: str, period: str) -> int:
    frame = pl.DataFrame({"d": [_period_of(moment, timezone, period)]})
    return int(frame.select(period_index(pl.col("d"), period)).item())


def data_end_of(events: pl.DataFrame, *others: pl.DataFrame | None) -> datetime:
    """The newest timestamp in the data: windows ending after it have not been observed."""
    ends = [
        f.get_column(C.TIMESTAMP).max() for f in (events, *others) if f is not None and f.height
    ]
    found = [e for e in ends if isinstance(e, datetime)]
    if not found:
        raise InputDataError("the ingested data holds no timestamps; nothing to report")
    return max(found)


def local_text(moment: datetime, timezone: str) -> str:
    return moment.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M:%S %Z")


# --- activity and users -----------------------------------------------------------------------


# The group of users (or sessions) without a value in the column grouped by: shown as a row,
# never taken for an experiment arm.
NO_VALUE = "(none)"


def activity(events: pl.DataFrame, activity_types: list[str]) -> pl.DataFrame:
    """(user_id, timestamp, session_id) of identified users' activity events."""
    return events.filter(
        pl.col(C.USER_ID).is_not_null()
        & pl.col(C.TIMESTAMP).is_not_null()
        & pl.col(C.EVENT_TYPE).is_in(activity_types)
    ).select(C.USER_ID, C.TIMESTAMP, C.SESSION_ID)


def join_to_impressions(
    events: pl.DataFrame,
    impressions: pl.DataFrame,
    keys: list[str],
    window: timedelta | None = None,
    carry: tuple[str, ...] = (),
) -> pl.DataFrame:
    """Each event with the impression of the same `keys` it follows: the latest one shown at
    most `window` before it, or without a window the one nearest in time (`shown_at` is null
    when none joins). `carry` names impression columns to bring along."""
    shown = (
        impressions.filter(pl.all_horizontal([pl.col(k).is_not_null() for k in keys]))
        .select(*carry, *keys, pl.col(C.TIMESTAMP).alias("shown_at"))
        .sort("shown_at")
    )
    return events.sort(C.TIMESTAMP).join_asof(
        shown,
        left_on=C.TIMESTAMP,
        right_on="shown_at",
        by=keys,
        strategy="backward" if window is not None else "nearest",
        tolerance=window,
        check_sortedness=False,
    )


def user_return_gaps(active: pl.DataFrame) -> pl.DataFrame:
    """Per user: the first activity and the time until they came back (null: never).

    Coming back means an activity after the first one in another session: a second page view
    seconds later in the same visit is not a return.
    """
    firsts = (
        active.sort(C.TIMESTAMP, C.SESSION_ID, nulls_last=True)
        .group_by(C.USER_ID)
        .agg(
            pl.col(C.TIMESTAMP).first().alias(FIRST),
            pl.col(C.SESSION_ID).first().alias("__first_session"),
        )
    )
    other_visit = (
        pl.col(C.SESSION_ID).is_null()
        | pl.col("__first_session").is_null()
        | (pl.col(C.SESSION_ID) != pl.col("__first_session"))
    )
    later = (
        active.join(firsts, on=C.USER_ID)
        .filter((pl.col(C.TIMESTAMP) > pl.col(FIRST)) & other_visit)
        .group_by(C.USER_ID)
        .agg(pl.col(C.TIMESTAMP).min().alias("next"))
    )
    firsts = firsts.drop("__first_session")
    return (
        firsts.join(later, on=C.USER_ID, how="left")
        .with_columns((pl.col("next") - pl.col(FIRST)).alias(GAP))
        .drop("next")
    )


def _n_day_flags(users: pl.DataFrame, days: list[int], data_end: datetime) -> pl.DataFrame:
    """eligible_<N>d and retained_<N>d per user (retained is null when not eligible)."""
    end = pl.lit(data_end, pl.Datetime("us", "UTC"))
    exprs = []
    for n in days:
        window = timedelta(days=n)
        eligible = pl.col(FIRST) + window <= end
        exprs.append(eligible.alias(f"eligible_{n}d"))
        retained = (pl.col(GAP) <= window).fill_null(False)
        exprs.append(pl.when(eligible).then(retained).alias(f"retained_{n}d"))
    return users.with_columns(exprs)


# --- retention cohorts ------------------------------------------------------------------------


def retention_triangle(
    events: pl.DataFrame,
    *,
    period: str,
    timezone: str,
    activity_types: list[str],
    data_end: datetime,
) -> pl.DataFrame:
    """Long triangle: cohort, users, offset, active_users, rate, mature (one row per cell).

    Cells whose period has not ended by `data_end` are kept with null active_users and rate.
    """
    active = activity(events, activity_types)
    firsts = active.group_by(C.USER_ID).agg(pl.col(C.TIMESTAMP).min().alias(FIRST))
    firsts = firsts.with_columns(period_start(pl.col(FIRST), timezone, period).alias(COHORT))
    sizes = firsts.group_by(COHORT).agg(pl.len().alias("users"))
    periods = (
        active.with_columns(period_start(pl.col(C.TIMESTAMP), timezone, period).alias("p"))
        .select(C.USER_ID, "p")
        .unique()
        .join(firsts.select(C.USER_ID, COHORT), on=C.USER_ID)
        .with_columns(
            (period_index(pl.col("p"), period) - period_index(pl.col(COHORT), period)).alias(
                "offset"
            )
        )
    )
    counts = periods.group_by(COHORT, "offset").agg(pl.len().alias("active_users"))
    end_idx = _index_of(data_end, timezone, period)
    grid = sizes.with_columns(
        period_index(pl.col(COHORT), period).alias("__idx"),
    ).with_columns(pl.int_ranges(0, end_idx - pl.col("__idx") + 1).alias("offset"))
    grid = grid.explode("offset").with_columns(pl.col("offset").cast(pl.Int64))
    # A cell is mature when its whole period ended by the data end (before the data end's period).
    mature = pl.col("__idx") + pl.col("offset") < end_idx
    return (
        grid.join(
            counts.with_columns(pl.col("offset").cast(pl.Int64)), on=[COHORT, "offset"], how="left"
        )
        .with_columns(
            mature.alias("mature"),
            pl.when(mature).then(pl.col("active_users").fill_null(0)).alias("active_users"),
        )
        .with_columns(
            (pl.col("active_users") / pl.col("users")).alias("rate"),
        )
        .select(COHORT, "users", "offset", "active_users", "rate", "mature")
        .sort(COHORT, "offset")
    )


def retention_n_days(
    events: pl.DataFrame,
    *,
    period: str,
    timezone: str,
    activity_types: list[str],
    days: list[int],
    data_end: datetime,
) -> pl.DataFrame:
    """Per cohort: users, and retained_<N>d / rate_<N>d (null until the whole cohort is mature)."""
    users = user_return_gaps(activity(events, activity_types))
    users = users.with_columns(period_start(pl.col(FIRST), timezone, period).alias(COHORT))
    users = _n_day_flags(users, days, data_end)
    end_idx = _index_of(data_end, timezone, period)
    ended = period_index(pl.col(COHORT), period) < end_idx
    aggs: list[pl.Expr] = [pl.len().alias("users")]
    for n in days:
        aggs.append(pl.col(f"eligible_{n}d").all().alias(f"__all_{n}"))
        aggs.append(pl.col(f"retained_{n}d").sum().alias(f"retained_{n}d"))
    table = users.group_by(COHORT).agg(aggs)
    outs = []
    for n in days:
        mature = ended & pl.col(f"__all_{n}")
        outs.append(pl.when(mature).then(pl.col(f"retained_{n}d")).alias(f"retained_{n}d"))
        outs.append(
            pl.when(mature).then(pl.col(f"retained_{n}d") / pl.col("users")).alias(f"rate_{n}d")
        )
    return (
        table.with_columns(outs)
        .select(COHORT, "users", *[c for n in days for c in (f"retained_{n}d", f"rate_{n}d")])
        .sort(COHORT)
    )


def cohort_table(
    triangle: pl.DataFrame, n_days: pl.DataFrame, period: str, days: list[int]
) -> pl.DataFrame:
    """The wide table a spreadsheet wants: cohort, users, <period>_0.., rate_<N>d..."""
    wide = triangle.pivot(on="offset", index=[COHORT, "users"], values="rate", sort_columns=True)
    offsets = sorted(int(c) for c in wide.columns if c not in (COHORT, "users"))
    wide = wide.rename({str(k): f"{period}_{k}" for k in offsets})
    rates = n_days.select(COHORT, *[f"rate_{n}d" for n in days])
    return wide.join(rates, on=COHORT, how="left").sort(COHORT)


def triangle_average(triangle: pl.DataFrame) -> pl.DataFrame:
    """Per offset, the user-weighted rate over mature cells only (immature cells are left out)."""
    mature = triangle.filter(pl.col("mature"))
    return (
        mature.group_by("offset")
        .agg(
            pl.col("users").sum().alias("users"),
            pl.col("active_users").sum().alias("active_users"),
            pl.len().alias("cohorts"),
        )
        .with_columns((pl.col("active_users") / pl.col("users")).alias("rate"))
        .sort("offset")
    )


def n_day_average(n_days: pl.DataFrame, days: list[int]) -> pl.DataFrame:
    """Per horizon: users in cohorts where it is mature, retained, rate (immature cohorts left out)."""
    rows = []
    for n in days:
        shown = n_days.filter(pl.col(f"rate_{n}d").is_not_null())
        users = int(shown.get_column("users").sum()) if shown.height else 0
        kept = int(shown.get_column(f"retained_{n}d").sum()) if shown.height else 0
        rows.append(
            {
                "days": n,
                "cohorts": shown.height,
                "users": users,
                "retained": kept,
                "rate": kept / users if users else None,
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "days": pl.Int64,
            "cohorts": pl.Int64,
            "users": pl.Int64,
            "retained": pl.Int64,
            "rate": pl.Float64,
        },
    )


# --- groups of users: rec-engaged, experiment arms, segments ----------------------------------


def engaged_users(
    events: pl.DataFrame,
    impressions: pl.DataFrame | None,
    settings: EngagedSettings,
    activity_types: list[str],
) -> tuple[pl.DataFrame, str]:
    """(user_id, group) for every active user, and how engagement was decided.

    A `source` value on the events wins; otherwise an engagement event (click, add_to_cart,
    purchase by default) on an item shown to the same user at most the attribution window
    earlier, or a clicked impression of that user, makes them engaged.
    """
    users = user_return_gaps(activity(events, activity_types)).select(C.USER_ID, FIRST)
    identified = pl.col(C.USER_ID).is_not_null() & pl.col(C.TIMESTAMP).is_not_null()
    has_source = events.select(pl.col(C.SOURCE).is_not_null().any()).item()
    if has_source:
        hits = events.filter(identified & pl.col(C.SOURCE).is_in(settings.sources)).select(
            C.USER_ID, C.TIMESTAMP
        )
        how = f"events whose source is one of {settings.sources}"
    elif impressions is not None and impressions.get_column(C.USER_ID).drop_nulls().len():
        window = timedelta(hours=settings.attribution_window_hours)
        acts = events.filter(identified & pl.col(C.EVENT_TYPE).is_in(settings.event_types))
        joined = join_to_impressions(
            acts.select(C.USER_ID, C.ITEM_ID, C.TIMESTAMP),
            impressions,
            [C.USER_ID, C.ITEM_ID],
            window=window,
        )
        hits = joined.filter(pl.col("shown_at").is_not_null()).select(C.USER_ID, C.TIMESTAMP)
        if impressions.get_column(C.CLICKED).drop_nulls().len():
            clicked = impressions.filter(pl.col(C.CLICKED).fill_null(False)).select(
                C.USER_ID, C.TIMESTAMP
            )
            hits = pl.concat([hits, clicked.drop_nulls(C.USER_ID)])
        how = (
            f"{'/'.join(settings.event_types)} on an item shown to the user at most "
            f"{settings.attribution_window_hours:g} h earlier, or a clicked impression"
        )
    else:
        raise InputDataError(
            "cannot tell rec-engaged users: the events carry no source values and there is no "
            "impression log with user ids; map data.events.columns.source or configure "
            "data.impressions (with user_id), then rerun reco ingest"
        )
    if settings.within_days is not None:
        limit = timedelta(days=settings.within_days)
        hits = hits.join(users, on=C.USER_ID).filter(pl.col(C.TIMESTAMP) <= pl.col(FIRST) + limit)
        how += f", within {settings.within_days:g} days of the user's first event"
    engaged = hits.select(C.USER_ID).unique()
    groups = users.select(C.USER_ID).with_columns(
        pl.when(pl.col(C.USER_ID).is_in(engaged.get_column(C.USER_ID).implode()))
        .then(pl.lit(ENGAGED))
        .otherwise(pl.lit(NOT_ENGAGED))
        .alias(GROUP)
    )
    return groups, how


def user_attribute(
    events: pl.DataFrame, column: str, activity_types: list[str]
) -> tuple[pl.DataFrame, int]:
    """(user_id, group): each active user's `column` value on their first activity event.

    Also returns how many users have more than one value (e.g. users seen in two arms).
    """
    part = events.filter(
        pl.col(C.USER_ID).is_not_null()
        & pl.col(C.TIMESTAMP).is_not_null()
        & pl.col(C.EVENT_TYPE).is_in(activity_types)
    ).sort(C.TIMESTAMP, C.SOURCE_FILE, C.SOURCE_LINE)
    per_user = part.group_by(C.USER_ID, maintain_order=True).agg(
        pl.col(column).drop_nulls().first().alias(GROUP),
        pl.col(column).drop_nulls().n_unique().alias("__values"),
    )
    mixed = int(per_user.filter(pl.col("__values") > 1).height)
    return per_user.select(C.USER_ID, pl.col(GROUP).cast(pl.String)), mixed


def retention_by_group(
    events: pl.DataFrame,
    groups: pl.DataFrame,
    *,
    activity_types: list[str],
    days: list[int],
    data_end: datetime,
) -> pl.DataFrame:
    """Per group: users, share of users, and eligible / retained / rate for each N-day horizon."""
    users = user_return_gaps(activity(events, activity_types))
    users = _n_day_flags(users, days, data_end).join(groups, on=C.USER_ID, how="left")
    users = users.with_columns(pl.col(GROUP).fill_null(NO_VALUE))
    aggs: list[pl.Expr] = [pl.len().alias("users")]
    for n in days:
        aggs.append(pl.col(f"eligible_{n}d").sum().alias(f"eligible_{n}d"))
        aggs.append(pl.col(f"retained_{n}d").sum().alias(f"retained_{n}d"))
    table = users.group_by(GROUP).agg(aggs)
    total = table.get_column("users").sum()
    rates = [
        pl.when(pl.col(f"eligible_{n}d") > 0)
        .then(pl.col(f"retained_{n}d") / pl.col(f"eligible_{n}d"))
        .alias(f"rate_{n}d")
        for n in days
    ]
    ordered = ["users", "share"] + [
        c for n in days for c in (f"eligible_{n}d", f"retained_{n}d", f"rate_{n}d")
    ]
    return (
        table.with_columns((pl.col("users") / total).alias("share"), *rates)
        .select(GROUP, *ordered)
        .sort(GROUP)
    )


def retention_curves(
    events: pl.DataFrame,
    groups: pl.DataFrame,
    *,
    activity_types: list[str],
    max_days: int,
    data_end: datetime,
) -> pl.DataFrame:
    """group, day, eligible, retained, rate for day 1..max_days (the N-day rule at every N).

    Only users with at least `max_days` of data take part, so every point of a curve is over
    the same users and the curve can only rise (with a denominator that shrinks as N grows,
    a curve dips whenever a returning user drops out of it).
    """
    users = user_return_gaps(activity(events, activity_types)).join(
        groups, on=C.USER_ID, how="left"
    )
    full = pl.col(FIRST) + timedelta(days=max_days) <= pl.lit(data_end, pl.Datetime("us", "UTC"))
    users = users.filter(full).select(
        pl.col(GROUP).fill_null(NO_VALUE),
        (pl.col(GAP).dt.total_seconds() / 86400).alias("__gap"),
    )
    grid = users.join(pl.DataFrame({"day": list(range(1, max_days + 1))}), how="cross")
    return (
        grid.group_by(GROUP, "day")
        .agg(
            pl.len().alias("eligible"),
            (pl.col("__gap") <= pl.col("day")).fill_null(False).sum().alias("retained"),
        )
        .with_columns((pl.col("retained") / pl.col("eligible")).alias("rate"))
        .sort(GROUP, "day")
    )


# --- sessions, orders, revenue ----------------------------------------------------------------


def _value() -> pl.Expr:
    """An event's money value: |quantity| (1 when absent) x price."""
    return pl.col(C.QUANTITY).abs().fill_null(1.0) * pl.col(C.PRICE)


def _money(values: pl.Expr) -> pl.Expr:
    """A sum that stays null when no value is known (no prices: NA revenue, not 0)."""
    return pl.when(values.count() > 0).then(values.sum())


def session_facts(events: pl.DataFrame) -> pl.DataFrame:
    """One row per session: who, when it started, whether it was a visit / bought, money.

    A visit is a session with any event other than a return: a return-only session (a
    cancellation invoice) is after-sales, not a visit, so it adds to returns but not to sessions.
    """
    part = events.filter(pl.col(C.SESSION_ID).is_not_null() & pl.col(C.TIMESTAMP).is_not_null())
    is_buy = pl.col(C.EVENT_TYPE) == C.PURCHASE
    is_return = pl.col(C.EVENT_TYPE) == C.RETURN
    return (
        part.sort(C.TIMESTAMP)
        .group_by(C.SESSION_ID)
        .agg(
            pl.col(C.USER_ID).drop_nulls().first().alias(C.USER_ID),
            pl.col(C.TIMESTAMP).min().alias("start"),
            (~is_return).any().alias("visit"),
            is_buy.any().alias("purchase"),
            pl.col(C.EVENT_TYPE).eq(C.VIEW).any().alias("has_view"),
            pl.col(C.EVENT_TYPE).eq(C.ADD_TO_CART).any().alias("has_add_to_cart"),
            _money(_value().filter(is_buy)).alias("revenue"),
            _value().filter(is_return).sum().alias("returns"),
            (is_buy & pl.col(C.PRICE).is_null()).sum().alias("unpriced"),
        )
    )


def business_metrics(sessions: pl.DataFrame, group: str) -> pl.DataFrame:
    """Per value of `group` (a column of `sessions`): the business numbers.

    sessions = visits; orders = visits with a purchase; conversion = orders / sessions;
    AOV = revenue / orders; revenue_per_session = revenue / sessions; net_revenue = revenue -
    returns; repeat_purchase_rate = buyers with two or more orders / buyers (identified users).
    """
    visits = pl.col("visit")
    orders = visits & pl.col("purchase")
    per_user = (
        sessions.filter(orders & pl.col(C.USER_ID).is_not_null())
        .group_by(group, C.USER_ID)
        .agg(pl.len().alias("orders"))
        .group_by(group)
        .agg(
            pl.len().alias("buyers"),
            (pl.col("orders") >= 2).sum().alias("repeat_buyers"),
        )
    )
    table = (
        sessions.group_by(group)
        .agg(
            visits.sum().alias("sessions"),
            orders.sum().alias("orders"),
            _money(pl.col("revenue")).alias("revenue"),
            pl.col("returns").sum().alias("returns"),
        )
        .join(per_user, on=group, how="left", nulls_equal=True)
        .with_columns(pl.col("buyers", "repeat_buyers").fill_null(0))
    )
    per = lambda num, den: pl.when(pl.col(den) > 0).then(pl.col(num) / pl.col(den))  # noqa: E731
    return table.select(
        group,
        "sessions",
        "orders",
        per("orders", "sessions").alias("conversion"),
        "revenue",
        "returns",
        (pl.col("revenue") - pl.col("returns")).alias("net_revenue"),
        per("revenue", "orders").alias("aov"),
        per("revenue", "sessions").alias("revenue_per_session"),
        "buyers",
        "repeat_buyers",
        per("repeat_buyers", "buyers").alias("repeat_purchase_rate"),
    ).sort(group, nulls_last=True)


def funnel(sessions: pl.DataFrame) -> pl.DataFrame:
    """A closed funnel over the stages the data has (view -> add_to_cart -> purchase): a
    session reaches a stage when it holds that stage's event and every earlier stage's, so the
    counts can only fall. Shares are of the first stage and of the previous one."""
    visits = sessions.filter(pl.col("visit"))
    stages = [("view", "has_view"), ("add_to_cart", "has_add_to_cart"), ("purchase", "purchase")]
    present = [(name, col) for name, col in stages if visits.get_column(col).any()]
    names: list[str] = []
    counts: list[int] = []
    reached = pl.lit(True)
    for name, col in present:
        reached = reached & pl.col(col)
        names.append(name)
        counts.append(int(visits.select(reached.sum()).item()))
    rows = [
        {
            "stage": name,
            "sessions": n,
            "share_of_first": n / counts[0] if counts[0] else None,
            "share_of_previous": n / counts[i - 1]
            if i and counts[i - 1]
            else (1.0 if not i else None),
        }
        for i, (name, n) in enumerate(zip(names, counts, strict=True))
    ]
    return pl.DataFrame(
        rows,
        schema={
            "stage": pl.String,
            "sessions": pl.Int64,
            "share_of_first": pl.Float64,
            "share_of_previous": pl.Float64,
        },
    )


# --- report builders (the CLI makes one of these calls) ----------------------------------------


def load_frames(workdir: Path, *, events: bool, impressions: bool) -> dict[str, pl.DataFrame]:
    """The ingested files a report needs, with a clear error naming the missing one."""
    from .impressions import IMPRESSIONS_FILE
    from .ingest import EVENTS_FILE

    found: dict[str, pl.DataFrame] = {}
    for wanted, name, what in (
        (events, EVENTS_FILE, "events"),
        (impressions, IMPRESSIONS_FILE, "impressions"),
    ):
        path = workdir / "data" / name
        if path.is_file():
            found[what] = pl.read_parquet(path)
        elif wanted:
            hint = (
                "configure data.impressions and rerun `reco ingest`"
                if what == "impressions"
                else "run `reco ingest -c <config>` first"
            )
            raise InputDataError(f"{path} not found; {hint}")
    return found


def check_arms(groups: pl.DataFrame, control: str | None, source: str) -> list[str]:
    arms = sorted(
        str(a) for a in groups.get_column(GROUP).drop_nulls().unique() if str(a) != NO_VALUE
    )
    if not arms:
        raise InputDataError(
            f"no experiment arm in the {source}: map an arm column (data.events.columns.arm for "
            "retention and business; for CTR also data.impressions.columns.arm or one file per "
            "arm, data.impressions.arms), then rerun reco ingest"
        )
    if control is not None and control not in arms:
        raise ConfigError(f"report.control_arm {control!r} is not an arm in the data ({arms})")
    return arms


def period_label(column: str, period: str) -> pl.Expr:
    if period == "month":
        return pl.col(column).dt.strftime("%Y-%m")
    if period == "week":
        return pl.col(column).dt.strftime("%G-W%V")
    return pl.col(column).dt.strftime("%Y-%m-%d")


def retention_report(
    events: pl.DataFrame,
    impressions: pl.DataFrame | None,
    cfg: ReportConfig,
    by: str = "cohort",
    period: str | None = None,
    data_end: datetime | None = None,
) -> Report:
    rc = cfg.retention
    period = period or rc.period
    end = data_end or data_end_of(events)
    tz = cfg.timezone
    acts: list[str] = list(rc.activity_types)
    active = activity(events, acts)
    if active.height == 0:
        raise InputDataError(
            f"no activity events of identified users (types {acts}); check "
            "report.retention.activity_types and that the events carry user ids"
        )
    meta: dict[str, Any] = {
        "data_end_utc": end.isoformat(),
        "data_end_local": local_text(end, tz),
        "timezone": tz,
        "period": period,
        "activity_types": list(acts),
        "days": list(rc.days),
        "users": int(active.get_column(C.USER_ID).n_unique()),
        "anonymous_events_left_out": int(events.get_column(C.USER_ID).null_count()),
    }
    if by == "cohort":
        tri = retention_triangle(
            events, period=period, timezone=tz, activity_types=acts, data_end=end
        )
        nd = retention_n_days(
            events, period=period, timezone=tz, activity_types=acts, days=rc.days, data_end=end
        )
        tables = {
            "cohorts": cohort_table(tri, nd, period, rc.days).select(
                COHORT, period_label(COHORT, period).alias("label"), pl.exclude(COHORT)
            ),
            "triangle": tri,
            "n_day": nd,
            "average": triangle_average(tri),
            "n_day_average": n_day_average(nd, rc.days),
        }
        return Report("retention", by, tables, meta)

    notes: list[str] = []
    comparison: pl.DataFrame | None = None
    if by == ENGAGED:
        groups, how = engaged_users(events, impressions, cfg.engaged, acts)
        meta["engaged_means"] = how
        notes.append(CAUTION_ENGAGED)
    elif by in events.columns and by not in (C.TIMESTAMP, C.SOURCE_FILE, C.SOURCE_LINE):
        groups, mixed = user_attribute(events, by, acts)
        if mixed:
            notes.append(
                f"{mixed} users have more than one {by} value; each is counted in the value of "
                "their first event"
            )
        if by == C.ARM:
            check_arms(groups, cfg.control_arm, "events")
    else:
        raise InputDataError(
            f"retention cannot be grouped by {by!r}; use cohort, engaged, arm or an events "
            f"column ({', '.join(c for c in C.STRING_COLUMNS if c in events.columns)})"
        )
    groups = groups.with_columns(pl.col(GROUP).fill_null(NO_VALUE))
    table = retention_by_group(events, groups, activity_types=acts, days=rc.days, data_end=end)
    table = table.join(_revenue_by_group(events, groups), on=GROUP, how="left")
    tables = {"groups": table}
    if by == C.ARM:
        arms_only = table.filter(pl.col(GROUP) != NO_VALUE)
        comparison = pl.concat(
            [
                compare_to_control(
                    arms_only,
                    GROUP,
                    f"retained_{n}d",
                    f"eligible_{n}d",
                    cfg.control_arm,
                    cfg.confidence,
                    f"retention_{n}d",
                )
                for n in rc.days
            ]
        )
        tables["arm_difference"] = comparison
    tables["curves"] = retention_curves(
        events, groups, activity_types=acts, max_days=max(rc.days), data_end=end
    )
    return Report("retention", by, tables, meta, notes)


def _revenue_by_group(events: pl.DataFrame, groups: pl.DataFrame) -> pl.DataFrame:
    """Net revenue, orders and their per-user values for each group of users."""
    facts = session_facts(events).join(groups, on=C.USER_ID, how="inner")
    users = groups.group_by(GROUP).agg(pl.len().alias("__users"))
    priced = facts.get_column("revenue").count() > 0
    return (
        facts.group_by(GROUP)
        .agg(
            (pl.col("visit") & pl.col("purchase")).sum().alias("orders"),
            (pl.col("revenue").fill_null(0.0) - pl.col("returns")).sum().alias("net_revenue"),
        )
        .join(users, on=GROUP, how="right", nulls_equal=True)
        .with_columns(
            pl.col("orders").fill_null(0),
            # Without any price in the data revenue is unknown (NA), not 0.
            pl.col("net_revenue").fill_null(0.0) if priced else pl.lit(None, pl.Float64),
        )
        .select(
            GROUP,
            "orders",
            "net_revenue",
            (pl.col("orders") / pl.col("__users")).alias("orders_per_user"),
            (pl.col("net_revenue") / pl.col("__users")).alias("net_revenue_per_user"),
        )
    )


def business_report(
    events: pl.DataFrame,
    impressions: pl.DataFrame | None,
    cfg: ReportConfig,
    by: str = "month",
) -> Report:
    tz = cfg.timezone
    facts = session_facts(events)
    if facts.height == 0:
        if events.get_column(C.TIMESTAMP).is_null().all():
            raise InputDataError(
                "the events have no timestamps (no data.events.columns.timestamp), so there are "
                "no sessions or periods to report on; map the time column and rerun reco ingest"
            )
        raise InputDataError(
            "no sessions in the events: map data.events.columns.session_id, or give events a "
            "user_id so reco ingest builds sessions from inactivity gaps"
        )
    end = data_end_of(events)
    meta: dict[str, Any] = {
        "data_end_utc": end.isoformat(),
        "data_end_local": local_text(end, tz),
        "timezone": tz,
        "events_without_session": int(events.get_column(C.SESSION_ID).null_count()),
        "return_only_sessions": int(facts.filter(~pl.col("visit")).height),
    }
    notes: list[str] = []
    unpriced = int(facts.get_column("unpriced").sum())
    if unpriced:
        notes.append(f"{unpriced} purchase events have no price: they add no revenue")
    if by in PERIODS:
        facts = facts.with_columns(period_start(pl.col("start"), tz, by).alias(GROUP))
    elif by == ENGAGED:
        groups, how = engaged_users(
            events, impressions, cfg.engaged, list(cfg.retention.activity_types)
        )
        meta["engaged_means"] = how
        notes.append(CAUTION_ENGAGED)
        facts = facts.join(groups, on=C.USER_ID, how="left").with_columns(
            pl.when(pl.col(C.USER_ID).is_null())
            .then(pl.lit(ANONYMOUS))
            .otherwise(pl.col(GROUP).fill_null(NOT_ENGAGED))
            .alias(GROUP)
        )
    elif by in events.columns and by not in (C.TIMESTAMP, C.SOURCE_FILE, C.SOURCE_LINE):
        # A session belongs to the segment of its first event that carries a value.
        first = (
            events.filter(pl.col(C.SESSION_ID).is_not_null() & pl.col(by).is_not_null())
            .sort(C.TIMESTAMP)
            .group_by(C.SESSION_ID)
            .agg(pl.col(by).first().cast(pl.String).alias(GROUP))
        )
        facts = facts.join(first, on=C.SESSION_ID, how="left").with_columns(
            pl.col(GROUP).fill_null(NO_VALUE)
        )
        notes.append(
            f"each session counts whole under the {by} of its first event with one; this is not "
            f"revenue per {by} value"
        )
    else:
        raise InputDataError(
            f"business metrics cannot be grouped by {by!r}; use day, week, month, engaged or an "
            f"events column ({', '.join(c for c in C.STRING_COLUMNS if c in events.columns)})"
        )
    table = business_metrics(facts, GROUP)
    if by in PERIODS:
        table = table.select(GROUP, period_label(GROUP, by).alias("label"), pl.exclude(GROUP))
    total = business_metrics(facts.with_columns(pl.lit("all").alias(GROUP)), GROUP)
    tables = {"business": table, "total": total, "funnel": funnel(facts)}
    if by == C.ARM:
        arms = table.rename({GROUP: "arm"}).filter(pl.col("arm") != NO_VALUE)
        check_arms(arms.rename({"arm": GROUP}), cfg.control_arm, "events")
        tables["arm_difference"] = compare_to_control(
            arms, "arm", "orders", "sessions", cfg.control_arm, cfg.confidence, "conversion"
        )
    if by in PERIODS:
        # The period holding the data end has not ended: its numbers are not comparable yet.
        meta["partial_period"] = str(_period_of(end, tz, by))
    return Report("business", by, tables, meta, notes)


def build_report(cfg: RecoConfig, kind: str, by: str | None, period: str | None = None) -> Report:
    """Read the ingested files of `cfg`'s workdir and build one report (the CLI's one call)."""
    from .ctr import ctr_report

    rc = cfg.report
    if kind == "ctr":
        frames = load_frames(cfg.workdir_path, events=False, impressions=True)
        return ctr_report(frames["impressions"], frames.get("events"), rc, by)
    cfg.data.require_events(f"reco report {kind}")
    frames = load_frames(cfg.workdir_path, events=True, impressions=False)
    if frames["events"].height == 0:
        raise InputDataError(
            f"{cfg.workdir_path / 'data'} holds no events (an impression-only config?); "
            f"the {kind} report needs events"
        )
    if kind == "retention":
        return retention_report(
            frames["events"], frames.get("impressions"), rc, by or "cohort", period
        )
    return business_report(frames["events"], frames.get("impressions"), rc, by or "month")
