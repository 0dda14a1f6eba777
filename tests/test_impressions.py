"""Ingesting impression logs: every row kept, rejected, excluded or removed as a duplicate."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from reco_cli.config import RecoConfig, load_config
from reco_cli.errors import ConfigError, InputDataError
from reco_cli.ingest import run_ingest

DATA = Path(__file__).resolve().parent / "data" / "reports"
COLUMNS = {
    "item_id": "item_id",
    "timestamp": "timestamp",
    "position": "position",
    "clicked": "click",
}


def config(tmp_path: Path, **impressions: Any) -> RecoConfig:
    impressions.setdefault("columns", COLUMNS)
    return RecoConfig.model_validate(
        {
            "workdir": str(tmp_path / "work"),
            "data": {"impressions": impressions, "max_reject_fraction": 1.0},
        }
    )


def test_accounting_of_bad_rows(tmp_path: Path) -> None:
    result = run_ingest(config(tmp_path, path=str(DATA / "impressions_bad.csv")), write=False)
    report = result.report["impressions"]
    totals = report["totals"]
    assert (totals["read"], totals["kept"], totals["rejected"], totals["duplicates"]) == (
        7,
        2,
        4,
        1,
    )
    assert report["rejected_by_reason"] == {
        "clicked is not 0/1 or true/false: 'maybe'": 1,
        "missing item_id": 1,
        "position is not a whole number >= 0: '1.5'": 1,
        "unparseable timestamp 'not a time'": 1,
    }
    assert report["clicked_label"] == 1
    impressions = result.impressions
    assert impressions is not None
    assert impressions.get_column("item_id").to_list() == ["1", "5"]
    assert impressions.schema["position"] == pl.Int64
    assert impressions.schema["clicked"] == pl.Boolean
    assert impressions.get_column("impression_id").to_list() == [0, 1]


def test_reject_share_limit(tmp_path: Path) -> None:
    cfg = config(tmp_path, path=str(DATA / "impressions_bad.csv"))
    cfg.data.max_reject_fraction = 0.05
    with pytest.raises(InputDataError, match=r"4 impression rows \(57.1%\) would be rejected"):
        run_ingest(cfg, write=False)


def test_arms_from_files_and_written_outputs(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        path=str(DATA / "impressions_arm_*.csv"),
        arms={"a": "*_arm_a.csv", "b": "*_arm_b.csv"},
    )
    result = run_ingest(cfg)
    data = tmp_path / "work" / "data"
    written = pl.read_parquet(data / "impressions.parquet")
    assert written.group_by("arm").len().sort("arm").rows() == [("a", 4), ("b", 4)]
    assert written.get_column("clicked").sum() == 4  # "1" x3 and "true"
    assert (data / "impression_rejects.parquet").is_file()
    assert not (data / "events.parquet").exists()  # an impression-only config has no events
    saved = json.loads((data / "ingest_report.json").read_text())
    assert saved["impressions"]["arms"] == {"a": 4, "b": 4}
    assert result.report["impressions"]["time_span"]["first"] == "2024-06-01T22:00:00+00:00"


def test_a_file_without_an_arm(tmp_path: Path) -> None:
    cfg = config(tmp_path, path=str(DATA / "impressions_arm_*.csv"), arms={"a": "*_arm_a.csv"})
    with pytest.raises(InputDataError, match=re.escape("impressions_arm_b.csv: matches 0 of")):
        run_ingest(cfg, write=False)


def test_where_excludes_rows_by_config(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        path=str(DATA / "case22_events.csv"),
        columns={"item_id": "item_id", "timestamp": "timestamp", "request_id": "request_id"},
        where={"event_type": ["impression"]},
    )
    report = run_ingest(cfg, write=False).report["impressions"]
    assert (report["totals"]["kept"], report["totals"]["excluded"]) == (6, 6)
    assert report["reject_share"] == 0.0


def test_config_checks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=re.escape("either columns.arm")):
        config(tmp_path, path="x.csv", columns={**COLUMNS, "arm": "a"}, arms={"a": "x*"})
    with pytest.raises(ValueError, match=re.escape("columns.timestamp is required")):
        config(tmp_path, path="x.csv", columns={"item_id": "item_id"})
    with pytest.raises(ValueError, match="assigned by reco"):
        config(tmp_path, path="x.csv", columns={**COLUMNS, "impression_id": "id"})
    path = tmp_path / "c.yaml"
    path.write_text("data: {}\n")
    with pytest.raises(ConfigError, match="data needs events"):
        load_config(path)
    path.write_text("data:\n  impressions: {path: x.csv, columns: {item_id: a, timestamp: b}}\n")
    with pytest.raises(ConfigError, match=re.escape("reco train needs data.events")):
        load_config(path).data.require_events("reco train")
    path.write_text(
        "data:\n  impressions: {path: x.csv, columns: {item_id: a, timestamp: b}}\n"
        "report: {timezone: Mars/Olympus}\n"
    )
    with pytest.raises(
        ConfigError, match=re.escape("report.timezone: unknown time zone 'Mars/Olympus'")
    ):
        load_config(path)
