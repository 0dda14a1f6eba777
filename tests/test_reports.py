"""Retention, rec-engaged users, experiment arms and business metrics on hand-made data.

Every expected value below is worked out by hand from the CSV files in tests/data/reports/
(the comments show the arithmetic).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from reco_cli.config import RecoConfig, ReportConfig
from reco_cli.errors import ConfigError, InputDataError
from reco_cli.ingest import run_ingest
from reco_cli.reports import (
    business_metrics,
    business_report,
    funnel,
    retention_report,
    session_facts,
)

DATA = Path(__file__).resolve().parent / "data" / "reports"


def ingest(tmp_path: Path, name: str, extra_columns: tuple[str, ...] = ()) -> pl.DataFrame:
    """The canonical events of one test file, through the real ingest (nothing written)."""
    names = ("user_id", "item_id", "timestamp", *extra_columns)
    header = (DATA / name).read_text().splitlines()[0].split(",")
    columns = {c: c for c in (*names, "event_type") if c in header}
    cfg = RecoConfig.model_validate(
        {
            "workdir": str(tmp_path / "work"),
            "data": {
                "events": {
                    "path": str(DATA / name),
                    "columns": columns,
                    "default_event_type": "view",
                }
            },
        }
    )
    return run_ingest(cfg, write=False).events


def report_cfg(**values: Any) -> ReportConfig:
    return ReportConfig.model_validate(values)


def rows(frame: pl.DataFrame, key: str) -> dict[Any, dict[str, Any]]:
    return {r[key]: r for r in frame.iter_rows(named=True)}


# --- retention cohorts ------------------------------------------------------------------------


@pytest.fixture
def retention_events(tmp_path: Path) -> pl.DataFrame:
    return ingest(tmp_path, "retention_events.csv")


def test_triangle_with_immature_cells(retention_events: pl.DataFrame) -> None:
    cfg = report_cfg(retention={"activity_types": ["purchase"]})
    report = retention_report(retention_events, None, cfg)
    tri = report.tables["triangle"]
    cell = {(str(r["cohort"]), r["offset"]): r for r in tri.iter_rows(named=True)}
    # Data end 2024-04-10 12:00: April is not over, so every April cell is NA (null), never 0.
    assert report.meta["data_end_utc"] == "2024-04-10T12:00:00+00:00"
    # January cohort {a, b}: a again in February, b again in March.
    assert cell[("2024-01-01", 0)]["rate"] == 1.0
    assert cell[("2024-01-01", 1)]["rate"] == 0.5
    assert cell[("2024-01-01", 2)]["rate"] == 0.5
    assert cell[("2024-01-01", 3)]["rate"] is None and not cell[("2024-01-01", 3)]["mature"]
    # February cohort {c, d}: d again in March; April (+2) not over.
    assert cell[("2024-02-01", 1)]["rate"] == 0.5
    assert cell[("2024-02-01", 2)]["rate"] is None
    # March cohort {e}: e came back on 10 April, but April is immature: NA, not 100% or 0%.
    assert cell[("2024-03-01", 0)]["rate"] == 1.0
    assert cell[("2024-03-01", 1)]["rate"] is None
    # The triangle stops at the data end: no cell beyond April exists.
    assert ("2024-01-01", 4) not in cell
    # Averages leave immature cells out: +1 = (1 + 1) / (2 + 2) from Jan and Feb only.
    avg = rows(report.tables["average"], "offset")
    assert avg[0]["rate"] == 1.0 and avg[0]["users"] == 5
    assert avg[1]["rate"] == 0.5 and avg[1]["cohorts"] == 2
    assert avg[2]["rate"] == 0.5 and avg[2]["cohorts"] == 1
    assert 3 not in avg


def test_n_day_retention_and_maturity(retention_events: pl.DataFrame) -> None:
    report = retention_report(retention_events, None, report_cfg())
    nd = rows(report.tables["n_day"].with_columns(pl.col("cohort").cast(pl.String)), "cohort")
    jan, feb, mar = nd["2024-01-01"], nd["2024-02-01"], nd["2024-03-01"]
    # a: next purchase after 15 days; b: after 65 days.
    assert (jan["retained_30d"], jan["rate_30d"]) == (1, 0.5)
    assert (jan["retained_60d"], jan["rate_60d"]) == (1, 0.5)
    # b's 90 days end 24 April, after the data end: the whole cohort's 90-day value is NA.
    assert jan["rate_90d"] is None
    # c never again, d after 14 days; d's 60 days end 20 April > data end.
    assert feb["rate_30d"] == 0.5 and feb["rate_60d"] is None
    # e: first 15 March, 30 days end 14 April > data end.
    assert mar["rate_30d"] is None
    avg = rows(report.tables["n_day_average"], "days")
    assert (avg[30]["users"], avg[30]["retained"], avg[30]["rate"]) == (4, 2, 0.5)
    assert (avg[60]["users"], avg[60]["rate"]) == (2, 0.5)
    assert avg[90]["cohorts"] == 0 and avg[90]["rate"] is None
    wide = report.main
    assert wide.columns[:4] == ["cohort", "label", "users", "month_0"]
    assert wide.columns[-3:] == ["rate_30d", "rate_60d", "rate_90d"]


def test_weekly_cohorts(retention_events: pl.DataFrame) -> None:
    report = retention_report(retention_events, None, report_cfg(), period="week")
    tri = report.tables["triangle"]
    # a: first Friday 2024-01-05, week of Monday 2024-01-01; back on Saturday 20 Jan = +2 weeks.
    a_week = tri.filter(pl.col("cohort") == datetime(2024, 1, 1).date())
    assert a_week.get_column("users")[0] == 1
    assert a_week.filter(pl.col("offset") == 2).get_column("rate")[0] == 1.0
    assert report.main.columns[3] == "week_0"


def test_period_boundary_depends_on_the_reporting_zone(tmp_path: Path) -> None:
    events = ingest(tmp_path, "tz_events.csv", ("session_id",))

    def jan_plus_one(tz: str) -> float | None:
        tri = retention_report(events, None, report_cfg(timezone=tz)).tables["triangle"]
        cell = tri.filter(
            (pl.col("cohort") == datetime(2024, 1, 1).date()) & (pl.col("offset") == 1)
        )
        return cell.get_column("rate")[0]

    # f buys at 23:30 UTC on 31 Jan and 00:30 UTC on 1 Feb: two months in UTC, one in New York.
    assert jan_plus_one("UTC") == 1.0
    assert jan_plus_one("America/New_York") == 0.0
    # N-day retention counts hours, not calendar periods: the same in both zones.
    for tz in ("UTC", "America/New_York"):
        nd = retention_report(events, None, report_cfg(timezone=tz)).tables["n_day"]
        assert nd.get_column("retained_30d")[0] == 1
    # Business by day: one day in New York, two in UTC.
    ny = business_report(events, None, report_cfg(timezone="America/New_York"), "day").main
    utc = business_report(events, None, report_cfg(timezone="UTC"), "day").main
    assert ny.get_column("label").to_list() == ["2024-01-31", "2024-03-15"]
    assert ny.get_column("sessions").to_list() == [2, 1]
    assert utc.get_column("label").to_list() == ["2024-01-31", "2024-02-01", "2024-03-15"]


def test_no_activity_is_a_clear_error(retention_events: pl.DataFrame) -> None:
    with pytest.raises(InputDataError, match="no activity events"):
        retention_report(retention_events, None, report_cfg(retention={"activity_types": ["view"]}))


def test_unknown_grouping(retention_events: pl.DataFrame) -> None:
    with pytest.raises(InputDataError, match="cannot be grouped by 'colour'"):
        retention_report(retention_events, None, report_cfg(), by="colour")
    with pytest.raises(InputDataError, match="cannot be grouped by 'colour'"):
        business_report(retention_events, None, report_cfg(), by="colour")


# --- rec-engaged versus the rest --------------------------------------------------------------


@pytest.fixture
def engaged_events(tmp_path: Path) -> pl.DataFrame:
    return ingest(tmp_path, "engaged_events.csv", ("quantity", "price", "source", "session_id"))


def test_engaged_retention_and_revenue(engaged_events: pl.DataFrame) -> None:
    report = retention_report(engaged_events, None, report_cfg(), by="engaged")
    groups = rows(report.main, "group")
    eng, rest = groups["engaged"], groups["not engaged"]
    # u1, u3, u5 have an event with source=recommendation; u2 and u4 do not.
    assert (eng["users"], rest["users"]) == (3, 2)
    assert eng["share"] == pytest.approx(0.6)
    # Data end 20 Feb 10:00: u5 (first 15 Feb) is not eligible at 30 days.
    assert (eng["eligible_30d"], eng["retained_30d"], eng["rate_30d"]) == (2, 2, 1.0)
    # u2 never again, u4 again after 47 days (its return on day 1 is not activity).
    assert (rest["eligible_30d"], rest["retained_30d"], rest["rate_30d"]) == (2, 0, 0.0)
    # Nobody has 60 days of data: NA, not 0.
    assert eng["eligible_60d"] == 0 and eng["rate_60d"] is None
    # Net revenue: engaged 2x5 + 1x5 = 15 over 3 users; the rest 20 + 30 - 10 + 8 = 48 over 2.
    assert eng["net_revenue"] == 15.0 and eng["net_revenue_per_user"] == 5.0
    assert rest["net_revenue"] == 48.0 and rest["net_revenue_per_user"] == 24.0
    assert (eng["orders"], rest["orders"]) == (2, 3)
    assert any("not an experiment" in note for note in report.notes)
    assert "source" in report.meta["engaged_means"]
    # Curves use only users with the longest horizon (90 days) of data: nobody here.
    assert report.tables["curves"].height == 0


def test_retention_curves_over_fixed_users(engaged_events: pl.DataFrame) -> None:
    cfg = report_cfg(retention={"days": [30]})
    curves = retention_report(engaged_events, None, cfg, by="engaged").tables["curves"]
    engaged = rows(curves.filter(pl.col("group") == "engaged"), "day")
    # u1 and u3 have 30 days of data (u5 does not); u1 is back after 9 days, u3 after 17.
    assert {r["eligible"] for r in engaged.values()} == {2}
    assert (engaged[8]["retained"], engaged[9]["retained"], engaged[17]["retained"]) == (0, 1, 2)
    rest = rows(curves.filter(pl.col("group") == "not engaged"), "day")
    assert rest[30]["rate"] == 0.0  # u4 came back after 47 days


def test_engaged_within_days(engaged_events: pl.DataFrame) -> None:
    # u3's recommendation click is 17 days after their first event: not within 7 days.
    cfg = report_cfg(engaged={"within_days": 7})
    groups = rows(retention_report(engaged_events, None, cfg, by="engaged").main, "group")
    assert (groups["engaged"]["users"], groups["not engaged"]["users"]) == (2, 3)


def test_engaged_from_impressions(engaged_events: pl.DataFrame) -> None:
    # Without a source column: u2 bought i3 one hour after it was recommended to them.
    events = engaged_events.with_columns(pl.lit(None, pl.String).alias("source"))
    shown = pl.DataFrame(
        {
            "user_id": ["u2", "u4"],
            "item_id": ["i3", "i4"],
            "timestamp": [datetime(2024, 1, 2, 9, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC)],
            "clicked": [None, None],
        },
        schema_overrides={"clicked": pl.Boolean},
    )
    groups = retention_report(events, shown, report_cfg(), by="engaged").main
    engaged = groups.filter(pl.col("group") == "engaged")
    # u4 bought i4 three days after it was shown: outside the 24-hour attribution window.
    assert engaged.get_column("users").to_list() == [1]


def test_engaged_needs_a_signal(retention_events: pl.DataFrame) -> None:
    with pytest.raises(InputDataError, match="cannot tell rec-engaged users"):
        retention_report(retention_events, None, report_cfg(), by="engaged")


def test_business_by_engaged(engaged_events: pl.DataFrame) -> None:
    report = business_report(engaged_events, None, report_cfg(), by="engaged")
    groups = rows(report.main, "group")
    eng, rest = groups["engaged"], groups["not engaged"]
    # Engaged sessions s1 s2 s4 s5 s9; orders s1 and s5: a session without a purchase lowers
    # conversion.
    assert (eng["sessions"], eng["orders"], eng["conversion"]) == (5, 2, 0.4)
    assert (eng["revenue"], eng["aov"], eng["revenue_per_session"]) == (15.0, 7.5, 3.0)
    # s7 holds only u4's return: not a visit, but the return reduces net revenue.
    assert (rest["sessions"], rest["orders"], rest["conversion"]) == (3, 3, 1.0)
    assert (rest["revenue"], rest["returns"], rest["net_revenue"]) == (58.0, 10.0, 48.0)
    assert rest["aov"] == pytest.approx(58 / 3)
    assert (rest["buyers"], rest["repeat_buyers"], rest["repeat_purchase_rate"]) == (2, 1, 0.5)
    total = report.tables["total"].row(0, named=True)
    assert (total["sessions"], total["orders"], total["conversion"]) == (8, 5, 0.625)
    assert (total["revenue"], total["returns"], total["net_revenue"]) == (73.0, 10.0, 63.0)
    assert total["aov"] == pytest.approx(14.6)
    assert total["repeat_purchase_rate"] == 0.25
    assert report.meta["return_only_sessions"] == 1


def test_business_by_month_marks_the_partial_period(engaged_events: pl.DataFrame) -> None:
    report = business_report(engaged_events, None, report_cfg(), by="month")
    months = rows(report.main, "label")
    # January: visits s1-s6 (s7 is return-only), orders s1 s3 s5 s6 = 10 + 20 + 5 + 30.
    jan = months["2024-01"]
    assert (jan["sessions"], jan["orders"], jan["revenue"], jan["net_revenue"]) == (
        6,
        4,
        65.0,
        55.0,
    )
    assert (months["2024-02"]["sessions"], months["2024-02"]["revenue"]) == (2, 8.0)
    assert report.meta["partial_period"] == "2024-02-01"


def test_funnel_counts_sessions_per_stage() -> None:
    ts = datetime(2024, 1, 1, tzinfo=UTC)
    events = pl.DataFrame(
        {
            "session_id": ["A", "A", "A", "B", "B", "C", "D", "E"],
            "user_id": ["u"] * 8,
            "event_type": [
                "view",
                "add_to_cart",
                "purchase",
                "view",
                "add_to_cart",
                "view",
                "view",
                "purchase",
            ],
            "timestamp": [ts] * 8,
            "quantity": [None] * 8,
            "price": [None, None, 4.0, None, None, None, None, 6.0],
        },
        schema_overrides={"quantity": pl.Float64, "price": pl.Float64},
    )
    table = rows(funnel(session_facts(events)), "stage")
    # E bought without a logged view or cart: it counts as an order, not as a funnel purchase.
    assert [table[s]["sessions"] for s in ("view", "add_to_cart", "purchase")] == [4, 2, 1]
    assert table["add_to_cart"]["share_of_first"] == 0.5
    assert table["purchase"]["share_of_first"] == 0.25
    assert table["purchase"]["share_of_previous"] == 0.5
    metrics = business_metrics(session_facts(events).with_columns(pl.lit("x").alias("g")), "g")
    assert metrics.row(0, named=True)["conversion"] == 2 / 5


# --- experiment arms --------------------------------------------------------------------------


@pytest.fixture
def arm_events(tmp_path: Path) -> pl.DataFrame:
    return ingest(tmp_path, "arm_events.csv", ("arm", "session_id"))


def test_retention_by_arm_with_interval(arm_events: pl.DataFrame) -> None:
    cfg = report_cfg(control_arm="A", retention={"days": [30]})
    report = retention_report(arm_events, None, cfg, by="arm")
    arms = rows(report.main, "group")
    # A: a1 back after 4 days; a2, a3 never. B: b1 (2 days), b2 (18 days) back, b3 never;
    # x9 started on the data end day, so is not eligible.
    assert (arms["A"]["eligible_30d"], arms["A"]["retained_30d"]) == (3, 1)
    assert (arms["B"]["users"], arms["B"]["eligible_30d"], arms["B"]["retained_30d"]) == (4, 3, 2)
    diff = report.tables["arm_difference"].row(0, named=True)
    assert (diff["arm"], diff["control"], diff["metric"]) == ("B", "A", "retention_30d")
    assert diff["difference"] == pytest.approx(1 / 3)
    # Three users a side: the interval is wide and includes 0.
    assert diff["ci_low"] < 0 < diff["ci_high"] and diff["significant"] is False


def test_business_by_arm(arm_events: pl.DataFrame, tmp_path: Path) -> None:
    report = business_report(arm_events, None, report_cfg(control_arm="A"), by="arm")
    arms = rows(report.main, "group")
    assert (arms["A"]["sessions"], arms["A"]["orders"]) == (4, 3)
    assert (arms["B"]["sessions"], arms["B"]["orders"]) == (6, 5)
    diff = report.tables["arm_difference"].row(0, named=True)
    assert diff["difference"] == pytest.approx(5 / 6 - 3 / 4)
    # No prices in this file: revenue is unknown (not 0) and the report says why.
    assert arms["A"]["revenue"] is None and arms["A"]["aov"] is None
    assert any("no price" in note for note in report.notes)
    # The chart falls back to conversion with intervals.
    from reco_cli.charts import write_chart

    chart = write_chart(report, tmp_path / "conversion.png")
    assert chart.read_bytes().startswith(b"\x89PNG")


def test_unknown_control_arm(arm_events: pl.DataFrame) -> None:
    with pytest.raises(ConfigError, match="control_arm 'Z'"):
        retention_report(arm_events, None, report_cfg(control_arm="Z"), by="arm")


def test_arm_needs_values(retention_events: pl.DataFrame) -> None:
    with pytest.raises(InputDataError, match="no experiment arm"):
        retention_report(retention_events, None, report_cfg(), by="arm")


def test_case_06_days_in_the_reporting_zone(tmp_path: Path) -> None:
    # Four events around the Berlin DST switch: in Berlin all fall on 31 March, in UTC the first
    # (23:30Z on the 30th) does not. Sessions: u1's two events are an hour apart, so two.
    events = ingest(tmp_path, "case06_offsets_dst.csv")
    berlin = business_report(events, None, report_cfg(timezone="Europe/Berlin"), "day")
    assert berlin.main.select("label", "sessions").rows() == [("2024-03-31", 4)]
    utc = business_report(events, None, report_cfg(timezone="UTC"), "day")
    assert utc.main.select("label", "sessions").rows() == [("2024-03-30", 1), ("2024-03-31", 3)]
    assert berlin.meta["timezone"] == "Europe/Berlin"


def test_a_second_event_in_the_same_visit_is_not_a_return() -> None:
    from datetime import timedelta

    from reco_cli.reports import GAP, user_return_gaps

    t0 = datetime(2024, 1, 1, 10, tzinfo=UTC)
    active = pl.DataFrame(
        {
            "user_id": ["a", "a", "b", "b", "b"],
            "timestamp": [
                t0,
                t0 + timedelta(seconds=30),
                t0,
                t0 + timedelta(seconds=20),
                t0 + timedelta(days=3),
            ],
            "session_id": ["a1", "a1", "b1", "b1", "b2"],
        },
        schema_overrides={"timestamp": pl.Datetime("us", "UTC")},
    )
    gaps = user_return_gaps(active).sort("user_id")
    # a never came back (the second event is the same visit); b came back 3 days later.
    assert gaps[GAP].to_list() == [None, timedelta(days=3)]


def test_users_and_sessions_without_a_group_value_are_their_own_row(tmp_path: Path) -> None:
    """u3 has no arm: it is a "(none)" row with its real numbers, never an arm or the control."""
    cfg = RecoConfig.model_validate(
        {
            "workdir": str(tmp_path / "work"),
            "data": {
                "events": {
                    "path": str(DATA / "none_groups.csv"),
                    "columns": {
                        "user_id": "user_id",
                        "item_id": "item_id",
                        "event_type": "event",
                        "timestamp": "timestamp",
                        "session_id": "session",
                        "price": "price",
                        "arm": "arm",
                    },
                }
            },
        }
    )
    events = run_ingest(cfg, write=False).events
    retention = retention_report(events, None, report_cfg(), "arm")
    rows = {r["group"]: r for r in retention.tables["groups"].iter_rows(named=True)}
    assert (rows["(none)"]["orders"], rows["(none)"]["net_revenue"]) == (1, 2.5)
    assert set(retention.tables["arm_difference"]["arm"].to_list()) == {"B"}
    assert set(retention.tables["arm_difference"]["control"].to_list()) == {"A"}
    business = business_report(events, None, report_cfg(), "arm")
    table = {r["group"]: r for r in business.main.iter_rows(named=True)}
    assert (table["(none)"]["buyers"], table["A"]["buyers"], table["A"]["repeat_buyers"]) == (
        1,
        1,
        1,
    )
