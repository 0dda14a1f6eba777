"""`reco evaluate` through the CLI on the shipped sample: exit codes, stdout, stderr, --against."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from reco_cli.cli import app

from .conftest import ROOT, SAMPLE, SHARED, write_config

runner = CliRunner()


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """configs/default.yaml as shipped (gates included), ingested once into a temporary workdir."""
    tmp = tmp_path_factory.mktemp("cli-eval")
    raw = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    raw["workdir"] = str(tmp / "work")
    raw["data"]["events"]["path"] = str(SAMPLE)
    raw["data"]["items"]["path"] = str(SAMPLE)
    config = write_config(tmp, raw)
    result = runner.invoke(app, ["ingest", "-c", str(config)])
    assert result.exit_code == 0, result.output
    return tmp, raw


def config_with(sample: tuple[Path, dict[str, Any]], name: str, **evaluate: Any) -> Path:
    tmp, raw = sample
    raw = {**raw, "evaluate": {**raw["evaluate"], **evaluate}}
    return write_config(tmp, raw, name)


def evaluate(*args: str) -> Any:
    return runner.invoke(app, ["evaluate", *args])


def test_shipped_gates_pass_and_json_is_the_saved_report(sample) -> None:  # type: ignore[no-untyped-def]
    tmp, _ = sample
    result = evaluate("-c", str(tmp / "config.yaml"), "--format", "json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["passed"] is True
    assert {g["gate"] for g in report["gates"]} >= {"ndcg@10", "lift_over_popular.ndcg@10"}
    saved = json.loads(Path(report["output"]).read_text())
    assert saved["methods"] == report["methods"]
    assert Path(report["output"]).parent == tmp / "work" / "eval"
    assert not (tmp / "work" / "model").exists()  # the served model is never written


def test_table_markdown_and_csv(sample) -> None:  # type: ignore[no-untyped-def]
    tmp, _ = sample
    config = str(tmp / "config.yaml")
    table = evaluate("-c", config)
    assert table.exit_code == 0, table.stderr
    assert "ndcg@10" in table.stdout and "cold users" in table.stdout
    assert "95% bootstrap interval" in table.stdout
    md = evaluate("-c", config, "--format", "markdown")
    assert md.exit_code == 0
    assert "| metric | model (exact) | exact | popular | repeat | random |" in md.stdout
    rows = list(csv.DictReader(io.StringIO(evaluate("-c", config, "-f", "csv").stdout)))
    assert {r["method"] for r in rows} >= {"model", "exact", "popular", "repeat", "random"}
    assert {r["population"] for r in rows} == {"warm", "cold"}
    ndcg = [r for r in rows if r["method"] == "model" and r["metric"] == "ndcg" and r["k"] == "10"]
    assert len(ndcg) == 1 and 0 < float(ndcg[0]["value"]) < 1


def test_an_impossible_gate_exits_1_and_names_it(sample) -> None:  # type: ignore[no-untyped-def]
    config = config_with(sample, "impossible.yaml", gates={"ndcg@10": {"min": 0.99}})
    result = evaluate("-c", str(config), "--format", "json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["passed"] is False  # the report is still printed
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "gate failed: ndcg@10:" in lines[0] and "is below min 0.99" in lines[0]
    assert "Traceback" not in result.output


def test_against_a_saved_run(sample, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tmp, _ = sample
    config = str(tmp / "config.yaml")
    first = evaluate("-c", config, "--format", "json")
    saved = tmp_path / "main-evaluation.json"
    saved.write_text(first.stdout)
    again = evaluate("-c", config, "--against", str(saved), "--format", "json")
    assert again.exit_code == 0, again.stderr
    drop = [g for g in json.loads(again.stdout)["gates"] if g["kind"] == "against"]
    # Deterministic with one thread: the same data and config give the same numbers.
    assert drop and drop[0]["gate"] == "ndcg@10 drop" and drop[0]["value"] == 0.0
    # A saved run that was much better: the drop exceeds max_drop (0.003 in default.yaml).
    better = json.loads(first.stdout)
    better["methods"]["model"]["ndcg@10"] += 0.01
    saved.write_text(json.dumps(better))
    worse = evaluate("-c", config, "--against", str(saved))
    assert worse.exit_code == 1
    assert "gate failed: ndcg@10 drop:" in worse.stderr
    assert "exceeds max_drop 0.003" in worse.stderr


def test_against_a_file_that_is_not_an_evaluation(sample, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tmp, _ = sample
    bad = tmp_path / "x.json"
    bad.write_text("[1, 2]")
    result = evaluate("-c", str(tmp / "config.yaml"), "--against", str(bad))
    assert result.exit_code == 4
    assert result.stderr.count("\n") == 1 and "is not a reco evaluation" in result.stderr
    missing = evaluate("-c", str(tmp / "config.yaml"), "--against", str(tmp_path / "nope.json"))
    assert missing.exit_code == 4 and "not found" in missing.stderr
    # Well-formed JSON of the wrong shape: still one line and exit 4, never a traceback.
    for content, problem in (
        ('{"methods": [1]}', "no methods.model"),
        ('{"methods": {"model": {"ndcg@10": "high"}}}', "methods.model.ndcg@10 is not a number"),
        ('{"methods": {"model": {}}, "split": "time"}', "split is not an object"),
    ):
        bad.write_text(content)
        result = evaluate("-c", str(tmp / "config.yaml"), "--against", str(bad))
        assert result.exit_code == 4, content
        assert problem in result.stderr and "Traceback" not in result.stderr


def test_a_bad_gate_key_is_a_config_error(sample) -> None:  # type: ignore[no-untyped-def]
    config = config_with(sample, "badgate.yaml", gates={"ndgc@10": {"min": 0.1}})
    result = evaluate("-c", str(config))
    assert result.exit_code == 3
    assert "evaluate.gates" in result.stderr and "unknown metric 'ndgc'" in result.stderr
    assert result.stdout == ""


def test_evaluate_before_ingest_says_what_to_run(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    raw["workdir"] = str(tmp_path / "empty")
    raw["data"]["events"]["path"] = str(SAMPLE)
    raw["data"]["items"]["path"] = str(SAMPLE)
    result = evaluate("-c", str(write_config(tmp_path, raw)))
    assert result.exit_code == 4
    assert "run `reco ingest" in result.stderr


@pytest.mark.shared
@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/datasets not present")
@pytest.mark.parametrize("name", ["movielens.yaml", "taobao.yaml"])
def test_shipped_real_data_configs_meet_their_gates(tmp_path: Path, name: str) -> None:
    raw = yaml.safe_load((ROOT / "configs" / name).read_text())
    raw["workdir"] = str(tmp_path / "work")
    for section in ("events", "items"):
        if raw["data"].get(section):
            raw["data"][section]["path"] = str((ROOT / raw["data"][section]["path"]).resolve())
    config = str(write_config(tmp_path, raw))
    assert runner.invoke(app, ["ingest", "-c", config]).exit_code == 0
    result = evaluate("-c", config, "--format", "json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["passed"] and len(report["gates"]) >= 4
