"""End to end over the shipped sample through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from reco_cli.cli import app

runner = CliRunner()


def test_ingest_train_recommend_on_sample(sample_config: Path) -> None:
    result = runner.invoke(app, ["ingest", "-c", str(sample_config), "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    totals = report["totals"]
    assert totals["read"] == 20000
    assert (
        totals["read"]
        == totals["kept"] + totals["rejected"] + totals["excluded"] + totals["duplicates"]
    )
    assert totals["duplicates"] == 7
    result = runner.invoke(app, ["train", "-c", str(sample_config)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["recommend", "-c", str(sample_config), "--user", "12583", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["fallback"] is False
    assert len(payload["items"]) == 10
