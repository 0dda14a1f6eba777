"""The shared real data sets (skipped when ../shared/datasets is absent, as on a user's clone)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reco_cli.config import load_config
from reco_cli.ingest import run_ingest

from .conftest import ROOT, SHARED, write_config

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/datasets not present")


def shared_config(tmp_path: Path, name: str) -> Path:
    cfg = yaml.safe_load((ROOT / "configs" / name).read_text())
    cfg["workdir"] = str(tmp_path / "work")
    for section in ("events", "items"):
        if cfg["data"].get(section):
            cfg["data"][section]["path"] = str((ROOT / cfg["data"][section]["path"]).resolve())
    return write_config(tmp_path, cfg)


def test_taobao_ingest_counts(tmp_path: Path) -> None:
    report = run_ingest(load_config(shared_config(tmp_path, "taobao.yaml")), write=False).report
    assert report["totals"] | {} == {
        "path": "all files",
        "read": 84476,
        "kept": 84440,
        "rejected": 1,
        "excluded": 35,
        "duplicates": 0,
        "balanced": True,
    }
    assert report["rejected_by_reason"] == {"missing timestamp": 1}
    assert report["distinct"]["users"] == 815
    assert report["events_by_type"] == {
        "add_to_cart": 4497,
        "favourite": 2356,
        "purchase": 1750,
        "view": 75837,
    }


def test_movielens_ingest_counts(tmp_path: Path) -> None:
    result = run_ingest(load_config(shared_config(tmp_path, "movielens.yaml")), write=False)
    assert result.report["totals"]["kept"] == 100836
    assert result.report["distinct"] == {"users": 610, "items": 9724, "sessions": 7145}
    assert result.items is not None and result.items.height == 9742
    # Quoted titles with commas survive.
    titles = set(result.items["title"].to_list())
    assert "American President, The (1995)" in titles
