"""Shared fixtures: tiny configs written into a temporary folder, and the real sample."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
SAMPLE = ROOT / "sample_data" / "online_retail_20k.csv"
SHARED = ROOT.parent / "shared" / "datasets"


def write_config(tmp_path: Path, config: dict[str, Any], name: str = "config.yaml") -> Path:
    """Write a config whose workdir lives under tmp_path (unless it sets one)."""
    config = dict(config)
    config.setdefault("workdir", str(tmp_path / "work"))
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


# The cases' files: user_id, item_id, an `event` column and an ISO timestamp.
WITH_EVENT = {
    "user_id": "user_id",
    "item_id": "item_id",
    "event_type": "event",
    "timestamp": "timestamp",
}


def events_config(path: Path | str, **events: Any) -> dict[str, Any]:
    """A minimal config reading one events file with user_id,item_id,timestamp columns."""
    columns = events.pop(
        "columns", {"user_id": "user_id", "item_id": "item_id", "timestamp": "timestamp"}
    )
    if "event_type" not in columns:
        events.setdefault("default_event_type", "view")
    return {"data": {"events": {"path": str(path), "columns": columns, **events}}}


@pytest.fixture
def sample_config(tmp_path: Path) -> Path:
    """configs/default.yaml with its paths made absolute and its workdir in tmp_path."""
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    cfg["workdir"] = str(tmp_path / "work")
    cfg["data"]["events"]["path"] = str(SAMPLE)
    if cfg["data"].get("items"):
        cfg["data"]["items"]["path"] = str(SAMPLE)
    return write_config(tmp_path, cfg)


@pytest.fixture(scope="session")
def trained_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """configs/default.yaml ingested and trained once for the whole session (about 3 s); tests
    must only read its workdir. Returns the config path."""
    from typer.testing import CliRunner

    from reco_cli.cli import app

    tmp = tmp_path_factory.mktemp("sample")
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    cfg["workdir"] = str(tmp / "work")
    cfg["data"]["events"]["path"] = str(SAMPLE)
    cfg["data"]["items"]["path"] = str(SAMPLE)
    path = write_config(tmp, cfg)
    runner = CliRunner()
    for command in ("ingest", "train"):
        result = runner.invoke(app, [command, "-c", str(path)])
        assert result.exit_code == 0, result.output
    return path
