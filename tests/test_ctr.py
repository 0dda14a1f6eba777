"""CTR: click attribution (case 22), time-window joins, clicked labels, arms, low volume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from reco_cli.config import RecoConfig, ReportConfig
from reco_cli.ctr import ctr_report
from reco_cli.errors import InputDataError
from reco_cli.ingest import run_ingest

DATA = Path(__file__).resolve().parent / "data" / "reports"


def mixed_log(tmp_path: Path, name: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(events, impressions) from one file mixing impression and click rows."""
    path = str(DATA / name)
    columns = {"user_id": "user_id", "item_id": "item_id", "timestamp": "timestamp"}
    with_request = "request_id" in (DATA / name).read_text().splitlines()[0]
    if with_request:
        columns["request_id"] = "request_id"
    cfg = RecoConfig.model_validate(
        {
            "workdir": str(tmp_path / "work"),
            "data": {
                "events": {
                    "path": path,
                    "columns": {**columns, "event_type": "event_type"},
                    "exclude_event_types": ["impression"],
                },
                "impressions": {
                    "path": path,
                    "columns": columns,
                    "where": {"event_type": ["impression"]},
                },
            },
        }
    )
    result = run_ingest(cfg, write=False)
    assert result.impressions is not None
    return result.events, result.impressions


def cfg(**values: Any) -> ReportConfig:
    return ReportConfig.model_validate(values)


def by_key(frame: pl.DataFrame) -> dict[Any, dict[str, Any]]:
    key = frame.columns[0]
    return {r[key]: r for r in frame.iter_rows(named=True)}


def test_case_22_duplicates_and_orphans(tmp_path: Path) -> None:
    events, impressions = mixed_log(tmp_path, "case22_events.csv")
    report = ctr_report(impressions, events, cfg(ctr={"min_impressions": 2}), by="item")
    totals = report.tables["totals"].row(0, named=True)
    assert totals["impressions"] == 6
    assert totals["click_rows"] == 6
    assert totals["attributed_clicks"] == 3
    assert totals["orphan_clicks"] == 1  # req5/i2: its impression was never logged
    assert totals["duplicate_clicks"] == 2  # the 200 ms double fire and the click 2 h later
    assert totals["ctr"] == 0.5
    assert totals["naive_ctr"] == 1.0
    items = by_key(report.main)
    assert (items["i1"]["impressions"], items["i1"]["clicks"], items["i1"]["ctr"]) == (4, 3, 0.75)
    assert (items["i2"]["impressions"], items["i2"]["clicks"], items["i2"]["ctr"]) == (1, 0, 0.0)
    assert (items["i3"]["impressions"], items["i3"]["clicks"], items["i3"]["ctr"]) == (1, 0, 0.0)
    # The naive per-item CTRs the case lists, explained by the duplicate and orphan counts.
    assert [items[i]["naive_ctr"] for i in ("i1", "i2", "i3")] == [1.25, 1.0, 0.0]
    assert items["i1"]["duplicate_clicks"] == 2 and items["i2"]["orphan_clicks"] == 1
    # Low volume (< 2 impressions) is flagged and listed after the others.
    assert [r["low_volume"] for r in report.main.iter_rows(named=True)] == [False, True, True]
    assert report.main.get_column("ctr").max() <= 1  # type: ignore[operator]
    statuses = report.tables["clicks"].get_column("status").value_counts().sort("status")
    assert dict(statuses.iter_rows()) == {"attributed": 3, "duplicate": 2, "orphan": 1}


def test_user_item_join_within_a_window(tmp_path: Path) -> None:
    events, impressions = mixed_log(tmp_path, "ctr_window.csv")
    report = ctr_report(impressions, events, cfg(), by="item")
    t = report.tables["totals"].row(0, named=True)
    # u1's 10:10 click joins the 10:00 impression, 10:20 is its duplicate, 12:05 joins the
    # 12:00 impression; u2 clicked 60 min after being shown (window 30); u3 clicked before.
    assert (t["impressions"], t["attributed_clicks"], t["duplicate_clicks"]) == (4, 2, 1)
    assert (t["orphan_clicks"], t["ctr"], t["naive_ctr"]) == (2, 0.5, 1.25)
    wider = ctr_report(impressions, events, cfg(ctr={"attribution_window_minutes": 90}), "item")
    t = wider.tables["totals"].row(0, named=True)
    assert (t["attributed_clicks"], t["orphan_clicks"]) == (3, 1)


def test_grouping_without_a_click_side_value(tmp_path: Path) -> None:
    events, impressions = mixed_log(tmp_path, "case22_events.csv")
    report = ctr_report(impressions, events, cfg(), by="day")
    day = report.main.row(0, named=True)
    assert (day["label"], day["impressions"], day["clicks"], day["orphan_clicks"]) == (
        "2024-04-01",
        6,
        3,
        1,
    )
    with pytest.raises(InputDataError, match="no position values"):
        ctr_report(impressions, events, cfg(), by="position")
    with pytest.raises(InputDataError, match="cannot be grouped by 'colour'"):
        ctr_report(impressions, events, cfg(), by="colour")


def label_log(tmp_path: Path) -> pl.DataFrame:
    """The two Open Bandit-style files (one per arm, clicked label) of tests/data/reports."""
    config = RecoConfig.model_validate(
        {
            "workdir": str(tmp_path / "work"),
            "data": {
                "impressions": {
                    "path": str(DATA / "impressions_arm_*.csv"),
                    "columns": {
                        "item_id": "item_id",
                        "timestamp": "timestamp",
                        "position": "position",
                        "clicked": "click",
                    },
                    "arms": {"a": "*impressions_arm_a.csv", "b": "*impressions_arm_b.csv"},
                }
            },
        }
    )
    result = run_ingest(config, write=False)
    assert result.impressions is not None
    return result.impressions


def test_clicked_label_by_arm_position_and_day(tmp_path: Path) -> None:
    impressions = label_log(tmp_path)
    report = ctr_report(impressions, None, cfg(control_arm="a"), by="arm")
    arms = by_key(report.main)
    assert (arms["a"]["impressions"], arms["a"]["clicks"]) == (4, 1)
    assert (arms["b"]["impressions"], arms["b"]["clicks"]) == (4, 3)
    assert report.meta["mode"] == "label"
    diff = report.tables["arm_difference"].row(0, named=True)
    assert (diff["arm"], diff["control"], diff["difference"]) == ("b", "a", 0.5)
    positions = by_key(ctr_report(impressions, None, cfg(), by="position").main)
    assert [(positions[p]["impressions"], positions[p]["clicks"]) for p in (1, 2, 3)] == [
        (4, 2),
        (2, 2),
        (0 + 2, 0),
    ]
    # In UTC the rows fall on two days; in Tokyo (UTC+9) all eight are on 2 June.
    utc = ctr_report(impressions, None, cfg(), by="day").main
    assert utc.select("label", "impressions", "clicks").rows() == [
        ("2024-06-01", 3, 2),
        ("2024-06-02", 5, 2),
    ]
    tokyo = ctr_report(impressions, None, cfg(timezone="Asia/Tokyo"), by="day").main
    assert tokyo.select("label", "impressions", "clicks").rows() == [("2024-06-02", 8, 4)]


def test_label_mode_without_labels(tmp_path: Path) -> None:
    events, impressions = mixed_log(tmp_path, "case22_events.csv")
    with pytest.raises(InputDataError, match="no clicked values"):
        ctr_report(impressions, events, cfg(ctr={"clicks": "label"}))
    with pytest.raises(InputDataError, match="no clicks"):
        ctr_report(impressions, None, cfg())
