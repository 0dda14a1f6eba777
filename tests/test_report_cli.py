"""`reco report` through the CLI: each subcommand on the shipped samples and on hand-made data.

The sample numbers asserted here are the real ones the README quotes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from reco_cli.cli import app
from reco_cli.config import load_config

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data" / "reports"
runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.report.timezone


@pytest.fixture
def at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from the repository root, as the shipped configs' relative paths expect."""
    monkeypatch.chdir(ROOT)


def run(*args: str) -> object:
    return runner.invoke(app, list(args))


def test_online_retail_retention_and_business(at_root: None, tmp_path: Path) -> None:
    work = str(tmp_path / "work")
    cfg = ["-c", "configs/default.yaml", "--workdir", work]
    assert runner.invoke(app, ["ingest", *cfg]).exit_code == 0
    chart = tmp_path / "charts" / "retention.png"
    result = runner.invoke(
        app, ["report", "retention", *cfg, "--format", "json", "--chart", str(chart)]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["meta"]["timezone"] == "Europe/London"
    assert payload["meta"]["data_end_local"] == "2011-12-09 12:50:00 GMT"
    dec = payload["tables"]["cohorts"][0]
    # December 2010 cohort: 440 customers, 115 of them bought again in January 2011.
    assert (dec["label"], dec["users"]) == ("2010-12", 440)
    assert dec["month_1"] == pytest.approx(115 / 440)
    assert dec["month_12"] is None  # December 2011 is not over at the data end
    assert chart.read_bytes().startswith(PNG)
    assert "wrote" in result.stderr

    result = runner.invoke(app, ["report", "business", *cfg, "--format", "json"])
    assert result.exit_code == 0, result.output
    tables = json.loads(result.stdout)["tables"]
    total = tables["total"][0]
    # Every invoice is a purchase: conversion is trivially 1.
    assert total["conversion"] == 1.0
    assert (total["sessions"], total["orders"]) == (8935, 8935)
    assert total["revenue"] == pytest.approx(366070.15)
    assert total["aov"] == pytest.approx(366070.15 / 8935)
    assert total["returns"] == pytest.approx(7260.39)
    assert [s["stage"] for s in tables["funnel"]] == ["purchase"]

    svg = tmp_path / "revenue.svg"
    result = runner.invoke(
        app, ["report", "business", *cfg, "--by", "week", "--format", "csv", "--chart", str(svg)]
    )
    assert result.exit_code == 0
    assert svg.read_text().lstrip().startswith("<?xml")
    assert result.stdout.splitlines()[0].startswith("group,label,sessions,orders,conversion")

    # No impression log in this config: a one-line error, exit 4.
    result = runner.invoke(app, ["report", "ctr", *cfg])
    assert result.exit_code == 4
    assert "impressions.parquet not found" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_open_bandit_ctr(at_root: None, tmp_path: Path) -> None:
    cfg = ["-c", "configs/open_bandit.yaml", "--workdir", str(tmp_path / "work")]
    result = runner.invoke(app, ["ingest", *cfg])
    assert result.exit_code == 0, result.output
    assert "Impression rows per input file" in result.stdout
    chart = tmp_path / "ctr.html"
    result = runner.invoke(app, ["report", "ctr", *cfg, "--format", "json", "--chart", str(chart)])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["by"] is None or payload["tables"]["ctr"][0].get("position") == 1
    totals = payload["tables"]["totals"][0]
    assert (totals["impressions"], totals["attributed_clicks"]) == (20000, 115)
    positions = {r["position"]: (r["clicks"], r["impressions"]) for r in payload["tables"]["ctr"]}
    assert positions == {1: (40, 6623), 2: (43, 6650), 3: (32, 6727)}
    assert "<svg" in chart.read_text()

    result = runner.invoke(app, ["report", "ctr", *cfg, "--by", "arm"])
    assert result.exit_code == 0, result.output
    assert "bts" in result.stdout and "random" in result.stdout
    result = runner.invoke(app, ["report", "ctr", *cfg, "--by", "arm", "--format", "json"])
    tables = json.loads(result.stdout)["tables"]
    arms = {r["arm"]: (r["clicks"], r["impressions"]) for r in tables["ctr"]}
    assert arms == {"bts": (69, 10000), "random": (46, 10000)}
    diff = tables["arm_difference"][0]
    assert (diff["arm"], diff["control"]) == ("bts", "random")
    assert diff["difference"] == pytest.approx(0.0023)
    assert diff["ci_low"] > 0  # bts's higher CTR is outside the 95% interval's reach of 0

    # No events in this config: retention and training say so (a config matter: exit 3).
    result = runner.invoke(app, ["report", "retention", *cfg])
    assert result.exit_code == 3
    assert "reco report retention needs data.events" in result.stderr
    result = runner.invoke(app, ["train", *cfg])
    assert result.exit_code == 3
    assert "reco train needs data.events" in result.stderr


def case22_config(tmp_path: Path) -> Path:
    path = str(DATA / "case22_events.csv")
    columns = {c: c for c in ("user_id", "item_id", "timestamp", "request_id")}
    cfg = {
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
        "report": {"ctr": {"min_impressions": 2}},
    }
    out = tmp_path / "case22.yaml"
    out.write_text(yaml.safe_dump(cfg))
    return out


def test_ctr_table_on_case_22(tmp_path: Path) -> None:
    config = str(case22_config(tmp_path))
    assert runner.invoke(app, ["ingest", "-c", config]).exit_code == 0
    result = runner.invoke(app, ["report", "ctr", "-c", config, "--by", "item"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for expected in ("attributed clicks", "duplicate clicks", "orphan clicks", "50.00%", "75.00%"):
        assert expected in out
    result = runner.invoke(app, ["report", "ctr", "-c", config, "--by", "item", "--format", "csv"])
    lines = result.stdout.splitlines()
    assert lines[0].startswith("item_id,impressions,clicks,ctr")
    assert lines[1].startswith("i1,4,3,0.75,")
    assert lines[1].endswith(",false")  # 4 impressions >= report.ctr.min_impressions (2)
    args = ["report", "ctr", "-c", config, "--by", "item", "-f", "csv", "--min-impressions", "5"]
    result = runner.invoke(app, args)
    assert result.stdout.splitlines()[1].endswith(",true")


def test_engaged_report_prints_the_caution(tmp_path: Path) -> None:
    columns = {
        c: c
        for c in (
            "user_id",
            "item_id",
            "event_type",
            "timestamp",
            "quantity",
            "price",
            "source",
            "session_id",
        )
    }
    cfg = {
        "workdir": str(tmp_path / "work"),
        "data": {"events": {"path": str(DATA / "engaged_events.csv"), "columns": columns}},
        "report": {"retention": {"days": [30]}},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert runner.invoke(app, ["ingest", "-c", str(path)]).exit_code == 0
    chart = tmp_path / "curves.png"
    result = runner.invoke(
        app, ["report", "retention", "-c", str(path), "--by", "engaged", "--chart", str(chart)]
    )
    assert result.exit_code == 0, result.output
    assert "not an experiment" in result.stdout
    assert chart.read_bytes().startswith(PNG)
    result = runner.invoke(
        app, ["report", "business", "-c", str(path), "--by", "engaged", "--format", "csv"]
    )
    assert result.exit_code == 0
    assert "not an experiment" in result.stderr  # machine output stays clean on stdout
    assert result.stdout.splitlines()[1].startswith("engaged,5,2,0.4,15.0")


def test_usage_and_input_errors(tmp_path: Path) -> None:
    config = str(case22_config(tmp_path))
    result = runner.invoke(app, ["report", "retention", "-c", config])
    assert result.exit_code == 4
    assert "run `reco ingest" in result.stderr
    result = runner.invoke(app, ["report", "retention", "-c", config, "--chart", "x.pdf"])
    assert result.exit_code == 2
    assert runner.invoke(app, ["ingest", "-c", config]).exit_code == 0
    result = runner.invoke(app, ["report", "business", "-c", config, "--by", "colour"])
    assert result.exit_code == 4
    assert result.stderr.startswith("Error: business metrics cannot be grouped by 'colour'")
    assert "Traceback" not in result.stderr


def test_every_report_command_has_help() -> None:
    for command in ("retention", "ctr", "business"):
        result = runner.invoke(app, ["report", command, "--help"])
        assert result.exit_code == 0
        assert "Example" in result.stdout
