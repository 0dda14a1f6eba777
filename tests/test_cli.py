"""The command line: every documented exit code, stdout/stderr separation, help texts."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from reco_cli.cli import app

from .conftest import DATA, events_config, write_config

runner = CliRunner()
CASES = DATA / "cases"
FAST = {"train": {"no_components": 8, "epochs": 5}}


def reco(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(result) -> str:  # type: ignore[no-untyped-def]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.stderr
    return " ".join(lines)


@pytest.fixture
def trained(tmp_path: Path) -> Path:
    cfg = (
        events_config(CASES / "09_unknown_ids" / "train.csv", default_event_type="purchase") | FAST
    )
    path = write_config(tmp_path, cfg)
    assert reco("ingest", "-c", path).exit_code == 0
    assert reco("train", "-c", path).exit_code == 0
    return path


def test_exit_0_and_json_on_stdout_only(trained: Path) -> None:
    result = reco("recommend", "-c", trained, "--user", "u1", "-k", "2", "--format", "json")
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert payload["user_id"] == "u1" and payload["fallback"] is False
    assert [i["rank"] for i in payload["items"]] == [1, 2]
    assert result.stderr == ""


def test_users_file_csv(trained: Path, tmp_path: Path) -> None:
    users = tmp_path / "users.txt"
    users.write_text("u1\n# a comment\nu2\nu999\n\n")
    result = reco("recommend", "-c", trained, "--users-file", users, "-k", "2", "--format", "csv")
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["user_id"] for r in rows] == ["u1", "u1", "u2", "u2", "u999", "u999"]
    assert {r["fallback"] for r in rows if r["user_id"] == "u999"} == {"true"}
    assert "u999" in result.stderr  # the fallback is said on stderr, not mixed into the CSV


def test_table_output_marks_fallback(trained: Path) -> None:
    result = reco("recommend", "-c", trained, "--user", "nobody", "-k", "2")
    assert result.exit_code == 0
    assert "fallback: popular items" in result.stdout
    assert "popular" in result.stdout


def test_exit_2_usage_error() -> None:
    result = reco("recommend", "--no-such-flag")
    assert result.exit_code == 2


def test_exit_3_config_errors(tmp_path: Path) -> None:
    cfg = events_config(tmp_path / "x.csv")
    cfg["data"]["events"]["colums"] = {}
    result = reco("ingest", "-c", write_config(tmp_path, cfg))
    assert result.exit_code == 3
    line = one_error_line(result)
    assert "unknown key 'data.events.colums'" in line and "allowed: path, format" in line
    cfg = events_config(tmp_path / "x.csv") | {"train": {"loss": "wrap", "no_components": -1}}
    result = reco("train", "-c", write_config(tmp_path, cfg))
    assert result.exit_code == 3
    assert (
        "train.loss: Input should be 'warp', 'bpr', 'logistic' or 'warp-kos' (got 'wrap')"
        in result.stderr
    )
    assert "train.no_components" in result.stderr
    result = reco("train", "-c", tmp_path / "missing.yaml")
    assert result.exit_code == 3 and "not found" in one_error_line(result)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("data:\n  events: [unclosed\n")
    result = reco("ingest", "-c", bad_yaml)
    assert result.exit_code == 3 and "not valid YAML at line" in one_error_line(result)
    dup = tmp_path / "dup.yaml"
    dup.write_text("seed: 1\nseed: 2\n")
    result = reco("ingest", "-c", dup)
    assert result.exit_code == 3 and "duplicate key 'seed' at line 2" in one_error_line(result)


def test_exit_3_event_weight_for_unknown_type(tmp_path: Path) -> None:
    cfg = events_config(tmp_path / "x.csv") | {"train": {"event_weights": {"purchse": 5}}}
    result = reco("train", "-c", write_config(tmp_path, cfg))
    assert result.exit_code == 3
    assert "train.event_weights.purchse" in result.stderr


def test_exit_4_input_data(tmp_path: Path) -> None:
    result = reco("ingest", "-c", write_config(tmp_path, events_config(tmp_path / "nope.csv")))
    assert result.exit_code == 4
    assert "nope.csv' not found" in one_error_line(result)
    # train before ingest: the data is missing
    result = reco("train", "-c", write_config(tmp_path, events_config(tmp_path / "nope.csv")))
    assert result.exit_code == 4 and "run `reco ingest" in one_error_line(result)


def test_exit_5_no_model(tmp_path: Path) -> None:
    path = write_config(tmp_path, events_config(tmp_path / "x.csv"))
    result = reco("recommend", "-c", path, "--user", "u1")
    assert result.exit_code == 5
    assert "run `reco train" in one_error_line(result)
    result = reco("inspect", "-c", path)
    assert result.exit_code == 5


def test_exit_6_unknown_user_with_fallback_error(trained: Path) -> None:
    result = reco("recommend", "-c", trained, "--user", "U1", "--fallback", "error")
    assert result.exit_code == 6
    line = one_error_line(result)
    assert "user 'U1' is not in the model (3 users)" in line and "did you mean 'u1'" in line
    assert result.stdout == ""


def test_exit_7_training_diverged_writes_no_model(tmp_path: Path) -> None:
    case = CASES / "11_non_finite_values"
    cfg = {
        "data": {
            "events": {
                "path": str(case / "b_interactions.csv"),
                "columns": {"user_id": "user_id", "item_id": "item_id"},
                "default_event_type": "purchase",
            },
            "items": {
                "path": str(case / "b_item_features.csv"),
                "columns": {"item_id": "item_id", "price": "price", "category": "category"},
            },
        },
        "train": {
            "loss": "bpr",
            "learning_rate": 1.0,
            "epochs": 10,
            "item_features": ["price", "category"],
            "normalize_features": False,
        },
    }
    path = write_config(tmp_path, cfg)
    assert reco("ingest", "-c", path).exit_code == 0
    result = reco("train", "-c", path)
    assert result.exit_code == 7
    line = one_error_line(result)
    assert "learning_rate=1.0, loss=bpr" in line and "normalize_features" in line
    assert not (tmp_path / "work" / "model").exists()
    assert (
        not list((tmp_path / "work" / "models").glob("*"))
        if (tmp_path / "work" / "models").exists()
        else True
    )
    # The same data with feature normalisation on (the default) trains.
    cfg["train"]["normalize_features"] = True
    cfg["train"]["learning_rate"] = 0.05
    assert reco("train", "-c", write_config(tmp_path, cfg)).exit_code == 0


def test_exit_70_internal_error_shows_traceback(
    trained: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import reco_cli.rank as rank

    def boom(*_a: object, **_k: object) -> None:
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(rank.Recommender, "recommend", boom)
    result = reco("recommend", "-c", trained, "--user", "u1")
    assert result.exit_code == 70
    assert "Traceback" in result.stderr and "simulated bug" in result.stderr


def test_debug_flag_shows_traceback_of_expected_errors(tmp_path: Path) -> None:
    path = write_config(tmp_path, events_config(tmp_path / "x.csv"))
    result = reco("--debug", "recommend", "-c", path, "--user", "u1")
    assert result.exit_code == 5 and "Traceback" in result.stderr


def test_every_command_has_help_with_an_example() -> None:
    result = reco("--help")
    assert result.exit_code == 0 and "Example" in result.stdout
    for command in ("ingest", "train", "recommend", "inspect"):
        help_text = reco(command, "--help")
        assert help_text.exit_code == 0, command
        assert "Example" in help_text.stdout, command


def test_inspect_shows_index_decision(trained: Path) -> None:
    result = reco("inspect", "-c", trained, "--format", "json")
    assert result.exit_code == 0
    manifest = json.loads(result.stdout)
    assert manifest["index"]["metric"] == "angular"
    assert manifest["index"]["serve_from"] in ("annoy", "exact")
    assert manifest["sizes"]["users"] == 3 and manifest["sizes"]["items"] == 4


def test_shipped_configs_are_valid() -> None:
    from reco_cli.config import load_config

    root = Path(__file__).resolve().parents[1] / "configs"
    configs = sorted(root.glob("*.yaml"))
    assert configs
    for path in configs:
        cfg = load_config(path)
        assert cfg.train.num_threads == 1, f"{path.name}: shipped configs must be reproducible"
        assert yaml.safe_load(path.read_text())  # plain YAML too


def test_usage_errors_for_missing_or_empty_users(trained: Path) -> None:
    assert reco("recommend", "-c", trained).exit_code == 2
    assert reco("recommend", "-c", trained, "--user", "").exit_code == 2
    assert reco("recommend", "-c", trained, "--user", "u1", "-k", "0").exit_code == 2


def test_users_file_that_is_a_folder_or_empty(trained: Path, tmp_path: Path) -> None:
    result = reco("recommend", "-c", trained, "--users-file", tmp_path)
    assert result.exit_code == 4 and "is a folder" in one_error_line(result)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nobody\n\n")
    result = reco("recommend", "-c", trained, "--users-file", empty)
    assert result.exit_code == 4 and "holds no user ids" in one_error_line(result)


def test_exit_74_when_the_system_fails_a_write(
    trained: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import reco_cli.render as render

    def full(*_a: object, **_k: object) -> str:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(render, "recommendations_csv", full)
    result = reco("recommend", "-c", trained, "--user", "u1", "-f", "csv")
    assert result.exit_code == 74
    assert "No space left on device" in one_error_line(result)


def test_workdir_that_is_a_file_or_holds_a_real_model_folder(tmp_path: Path) -> None:
    src = CASES / "09_unknown_ids" / "train.csv"
    afile = tmp_path / "afile"
    afile.write_text("x")
    cfg = events_config(src, default_event_type="purchase") | {"workdir": str(afile)}
    result = reco("ingest", "-c", write_config(tmp_path, cfg))
    assert result.exit_code == 3 and "is a file, not a folder" in one_error_line(result)
    work = tmp_path / "w"
    (work / "model").mkdir(parents=True)
    cfg = events_config(src, default_event_type="purchase") | {"workdir": str(work)} | FAST
    path = write_config(tmp_path, cfg)
    assert reco("ingest", "-c", path).exit_code == 0
    result = reco("train", "-c", path)
    assert result.exit_code == 5 and "is a real directory" in one_error_line(result)
    assert not list((work / "models").glob("*")) if (work / "models").exists() else True


def test_summary_commands_refuse_csv(trained: Path) -> None:
    assert reco("inspect", "-c", trained, "-f", "csv").exit_code == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"recommend": {"rules": [{"type": "boost", "items": ["i1"], "weight": float("inf")}]}},
            "recommend.rules[0].weight",
        ),
        (
            {"recommend": {"rules": [{"type": "filter", "column": "item_id", "in": []}]}},
            "matches nothing",
        ),
        (
            {"recommend": {"rules": [{"type": "promote", "items": ["i1"], "slots": [11]}]}},
            "beyond recommend.k (10)",
        ),
        ({"evaluate": {"gates": {"ndcg@10": {"min": 0.5, "max": 0.1}}}}, "could never pass"),
        ({"evaluate": {"gates": {"ndcg@10": {"min": float("nan")}}}}, "evaluate.gates.ndcg@10.min"),
        ({"train": {"epochs": True}}, "expected a number"),
        ({"seed": -1}, "seed"),
    ],
)
def test_impossible_settings_are_config_errors(tmp_path: Path, extra: dict, message: str) -> None:  # type: ignore[type-arg]
    cfg = (
        events_config(CASES / "09_unknown_ids" / "train.csv", default_event_type="purchase") | extra
    )
    result = reco("ingest", "-c", write_config(tmp_path, cfg))
    assert result.exit_code == 3, result.stderr
    assert message in one_error_line(result)
