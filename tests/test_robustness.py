"""Robustness on real customer exports: dialects, non-finite values, index metadata, kills,
and property-based dirt. Each failure case from ../shared/cases has a test and a variant."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reco_cli.bundle import load_bundle
from reco_cli.config import load_config
from reco_cli.errors import InputDataError, ModelBundleError, TrainingDivergedError
from reco_cli.index import check_finite
from reco_cli.ingest import run_ingest
from reco_cli.model import train_model
from reco_cli.rank import Recommender

from .conftest import DATA, events_config, write_config

CASES = DATA / "cases"
DIALECT = CASES / "05_file_dialect"
UI = {"user_id": "user_id", "item_id": "item_id"}


def ingest(tmp_path: Path, config: dict, write: bool = False):  # type: ignore[no-untyped-def]
    return run_ingest(load_config(write_config(tmp_path, config)), write=write)


# --- case 05: file dialects -------------------------------------------------------------------


def test_case05_utf8_bom_is_fine(tmp_path: Path) -> None:
    ev = ingest(tmp_path, events_config(DIALECT / "a_utf8_bom.csv", columns=UI)).events
    assert ev["item_id"].to_list() == ["café", "naïve"]


@pytest.mark.parametrize("name", ["b_utf16le_excel_unicode_text.txt", "b2_utf16le_ascii_only.csv"])
def test_case05_utf16_refused_with_the_key_to_set(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputDataError) as exc:
        ingest(tmp_path, events_config(DIALECT / name, columns=UI, format="csv"))
    assert name in str(exc.value) and "file is UTF-16 encoded" in str(exc.value)
    assert "data.events.encoding: utf-16" in str(exc.value)


def test_case05_utf16_transcoded_with_encoding(tmp_path: Path) -> None:
    cols = UI | {"weight": "weight"}
    ev = ingest(
        tmp_path,
        events_config(DIALECT / "b2_utf16le_ascii_only.csv", columns=cols, encoding="utf-16"),
    ).events
    assert ev.height == 2 and ev["weight"].to_list() == [1.0, 3.0]
    assert ev.columns[0] == "user_id"
    excel = events_config(
        DIALECT / "b_utf16le_excel_unicode_text.txt",
        columns=UI,
        encoding="utf-16",
        separator="\t",
        format="csv",
    )
    assert ingest(tmp_path, excel).events["item_id"].to_list() == ["café", "naïve"]


def test_case05_cp1252_error_names_line_and_byte(tmp_path: Path) -> None:
    with pytest.raises(InputDataError) as exc:
        ingest(tmp_path, events_config(DIALECT / "c_cp1252.csv", columns=UI))
    text = str(exc.value)
    assert "c_cp1252.csv" in text and "byte 0xE9 on line 2" in text and "cp1252" in text
    ev = ingest(
        tmp_path, events_config(DIALECT / "c_cp1252.csv", columns=UI, encoding="cp1252")
    ).events
    assert ev["item_id"].to_list() == ["café", "naïve"]


def test_case05_semicolons_and_decimal_commas(tmp_path: Path) -> None:
    with pytest.raises(InputDataError) as exc:
        ingest(
            tmp_path,
            events_config(
                DIALECT / "d_semicolon_decimal_comma.csv", columns=UI | {"weight": "weight"}
            ),
        )
    assert "['user_id;item_id;weight']" in str(exc.value) and 'separator: ";"' in str(exc.value)
    cfg = events_config(
        DIALECT / "d_semicolon_decimal_comma.csv",
        columns=UI | {"weight": "weight"},
        separator=";",
        decimal_comma=True,
    )
    assert ingest(tmp_path, cfg).events["weight"].to_list() == [4.5, 3.0]
    ev = ingest(
        tmp_path, events_config(DIALECT / "e_semicolon_no_decimals.csv", columns=UI, separator=";")
    ).events
    assert ev.select("user_id", "item_id").rows() == [("u1", "i1"), ("u2", "i2")]


def test_case05_quoted_newline_is_one_record(tmp_path: Path) -> None:
    result = ingest(
        tmp_path,
        events_config(DIALECT / "f_quoted_newline.csv", columns=UI | {"query": "search_query"}),
    )
    ev = result.events.sort("user_id")
    assert ev.height == 2 and result.report["totals"]["read"] == 2
    assert ev["query"].to_list() == ["red\nshoes", "boots"]


def test_case05_variant_ragged_row_rejected_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("user_id,item_id\nu1,i1\nu2,i2,extra\nu3,i3\n")
    cfg = events_config(path, columns=UI)
    cfg["data"]["max_reject_fraction"] = 0.5
    result = ingest(tmp_path, cfg)
    assert result.events["user_id"].to_list() == ["u1", "u3"]
    assert result.report["rejected_by_reason"] == {
        "more fields than the header (an unquoted separator?)": 1
    }
    assert result.rejects["source_line"].to_list() == [3]


def test_float_like_ids_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "floats.csv"
    path.write_text("user_id,item_id\n77.0,i1\n78.0,i2\nu3,i1\n")
    report = ingest(tmp_path, events_config(path, columns=UI)).report
    assert report["float_like_ids"] == {"user_id": {"count": 2, "example": "77.0"}}


# --- case 11: non-finite values -------------------------------------------------------------


def test_case11_weights_empty_nan_inf_negative(tmp_path: Path) -> None:
    cfg = events_config(
        CASES / "11_non_finite_values" / "a_weights.csv", columns=UI | {"weight": "weight"}
    )
    cfg["data"]["max_reject_fraction"] = 0.6
    result = ingest(tmp_path, cfg)
    assert result.report["rejected_by_reason"] == {
        "negative weight -3": 1,
        "non-finite weight 'NaN'": 1,
        "non-finite weight 'inf'": 1,
    }
    assert result.report["empty_weights_set_to"] == {"value": 1.0, "rows": 1}
    assert sorted(result.events["weight"].to_list()) == [1.0, 1.0, 2.0]


def test_case11_variant_non_finite_vectors_abort_with_ids() -> None:
    vectors = np.ones((3, 4), dtype=np.float32)
    vectors[1, 2] = np.nan
    with pytest.raises(
        TrainingDivergedError, match=r"1 item vectors are not finite \(e\.g\. 'b'\)"
    ):
        check_finite(vectors, np.array(["a", "b", "c"]), "item")


# --- case 17: index metadata ------------------------------------------------------------------


def _trained(tmp_path: Path, **train: object) -> Path:
    cfg = events_config(
        CASES / "17_annoy_index_metadata" / "interactions.csv",
        columns=UI,
        default_event_type="purchase",
    )
    cfg["train"] = {"no_components": 16, "epochs": 5} | train
    cfg["index"] = {"mode": "annoy", "n_trees": 10}
    path = write_config(tmp_path, cfg)
    run_ingest(load_config(path))
    train_model(load_config(path))
    return path


def test_case17_index_opened_only_with_manifest_dimension(tmp_path: Path) -> None:
    cfg = load_config(_trained(tmp_path))
    bundle = load_bundle(cfg.workdir_path)
    assert bundle.index_info["dimension"] == 16 + 3 and bundle.index_info["metric"] == "angular"
    assert Recommender(bundle).serve_from == "annoy"
    bundle.manifest["index"]["dimension"] = 35  # what a changed config would have asked for
    with pytest.raises(
        ModelBundleError,
        match="manifest index dimension 35 / items 60 do not match the item vectors \\(19 / 60\\)",
    ):
        Recommender(bundle)
    bundle.manifest["index"]["dimension"] = 19
    bundle.manifest["index"]["metric"] = "euclidean"
    with pytest.raises(ModelBundleError, match="index metric 'euclidean' is not 'angular'"):
        Recommender(bundle)


def test_case17_variant_edited_index_file_is_refused(tmp_path: Path) -> None:
    cfg = load_config(_trained(tmp_path))
    index = (cfg.workdir_path / "model").resolve() / "index.ann"
    index.write_bytes(index.read_bytes()[:-16])
    with pytest.raises(ModelBundleError, match=r"index\.ann does not match its checksum"):
        Recommender.open(cfg.workdir_path)


def test_case17_retraining_with_other_shape_rebuilds_the_index(tmp_path: Path) -> None:
    _trained(tmp_path)
    cfg = load_config(_trained(tmp_path, no_components=32))
    bundle = load_bundle(cfg.workdir_path)
    assert bundle.index_info["dimension"] == 35
    assert len(Recommender(bundle).recommend("u1", 5).items) == 5


# --- artifacts survive SIGKILL ----------------------------------------------------------------


def _reco_process(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "reco_cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_sigkill_during_train_and_ingest_leaves_previous_outputs_usable(
    sample_config: Path, tmp_path: Path
) -> None:
    # A slower index check widens the window in which a new bundle is being written.
    text = sample_config.read_text().replace(
        "  target_recall: 0.95", "  target_recall: 0.95\n  check_users: 1000"
    )
    sample_config.write_text(text)
    cfg = load_config(sample_config)
    assert cfg.index.check_users == 1000
    run_ingest(cfg)
    train_model(cfg)
    durations = {}
    for command in ("ingest", "train"):
        start = time.perf_counter()
        assert _reco_process(command, "-c", str(sample_config)).wait() == 0
        durations[command] = time.perf_counter() - start
    interrupted = 0
    for fraction in (0.5, 0.75, 0.9):
        for command in ("ingest", "train"):
            before = {p.name for p in cfg.workdir_path.glob("*/.partial-*")}
            proc = _reco_process(command, "-c", str(sample_config))
            time.sleep(durations[command] * fraction)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            after = {p.name for p in cfg.workdir_path.glob("*/.partial-*")}
            interrupted += bool(after - before)
            # Whatever moment it died at, the pointers lead to complete, verified outputs.
            bundle = load_bundle(cfg.workdir_path)
            assert len(Recommender(bundle).recommend("12583", 5).items) == 5
            data = (cfg.workdir_path / "data").resolve()
            assert pl.read_parquet(data / "events.parquet").height == 19801
            assert json.loads((data / "ingest_report.json").read_text())["totals"]["read"] == 20000
    # Some kills landed while a new version was half-written; it was never used.
    assert interrupted >= 1, durations


# --- property-based: random dirty logs never crash and always balance -------------------------

ids = st.one_of(
    st.sampled_from(["u1", " u1", "u1 ", "007", "7", "NA", "", "NULL", "ü-ß", "用户", "77.0"]),
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters='\x00\r\n"'),
        max_size=6,
    ),
)
stamps = st.one_of(
    st.sampled_from(
        ["2024-01-01T10:00:00Z", "2024-01-02T09:00:00+02:00", "2023-12-31T23:59:59Z", "", "garbage"]
    ),
    st.datetimes(
        min_value=__import__("datetime").datetime(2020, 1, 1),
        max_value=__import__("datetime").datetime(2025, 1, 1),
    ).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")),
)
rows = st.lists(
    st.tuples(
        ids,
        ids,
        st.sampled_from(["view", "purchase", "pv", "", "odd"]),
        stamps,
        st.sampled_from(["1", "2.5", "", "nan", "-1", "x"]),
    ),
    min_size=0,
    max_size=25,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=rows, duplicate=st.booleans())
def test_dirty_logs_never_crash_and_rows_balance(
    tmp_path: Path, data: list[tuple[str, ...]], duplicate: bool
) -> None:
    if duplicate and data:
        data = [*data, data[0]]
    path = tmp_path / "dirty.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user_id", "item_id", "event", "timestamp", "weight"])
        writer.writerows(data)
    cfg = events_config(
        path,
        columns={
            "user_id": "user_id",
            "item_id": "item_id",
            "event_type": "event",
            "timestamp": "timestamp",
            "weight": "weight",
        },
        event_types={"pv": "view"},
        timestamp_format="iso8601",
    )
    cfg["data"]["max_reject_fraction"] = 1.0
    try:
        result = ingest(tmp_path, cfg)
    except InputDataError as exc:
        # Only a whole-column failure or an empty result may stop it, never a crash.
        assert "no timestamp matches" in str(exc) or "no events kept" in str(exc)
        return
    totals = result.report["totals"]
    assert totals["read"] == len(data)
    assert totals["balanced"]
    assert result.events.height == totals["kept"]
    assert result.rejects.height == totals["rejected"] + totals["excluded"] + totals["duplicates"]
    assert (
        result.events["user_id"]
        .drop_nulls()
        .str.strip_chars()
        .equals(result.events["user_id"].drop_nulls())
    )
    assert os.path.exists(path)


def test_case17_changed_config_is_noted_not_silently_served(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from reco_cli.cli import app

    path = _trained(tmp_path)
    text = path.read_text().replace("no_components: 16", "no_components: 32")
    path.write_text(text)
    result = CliRunner().invoke(app, ["recommend", "-c", str(path), "--user", "u1", "-f", "json"])
    assert result.exit_code == 0
    assert "trained with train.no_components=16 (config now: 32); run `reco train`" in result.stderr
    assert json.loads(result.stdout)["items"]


# --- export dirt found by trying to break it ---------------------------------------------------


def test_blank_lines_are_not_records(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_text("user_id,item_id\nu1,i1\n\nu2,i2\n\n")
    result = ingest(tmp_path, events_config(path, columns=UI))
    files = result.report["files"][0]
    assert (files["read"], files["kept"], files["rejected"], files["blank_lines"]) == (2, 2, 0, 2)
    assert result.events.sort("user_id")["source_line"].to_list() == [2, 4]


def test_reject_lines_are_physical_lines_after_quoted_newlines(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('user_id,item_id,query\nu1,i1,"red\nshoes\nsale"\nu2,,boots\n')
    cfg = events_config(path, columns=UI | {"query": "query"})
    cfg["data"]["max_reject_fraction"] = 0.5
    rejects = ingest(tmp_path, cfg).rejects
    assert rejects.select("source_line", "reason").rows() == [(5, "missing item_id")]


def test_a_file_listed_twice_is_read_once(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("user_id,item_id\nu1,i1\nu2,i2\n")
    cfg = events_config(path, columns=UI)
    cfg["data"]["events"]["path"] = [str(path), str(tmp_path / "*.csv")]
    result = ingest(tmp_path, cfg)
    assert result.report["totals"]["read"] == 2 and len(result.report["files"]) == 1
    assert any("listed more than once" in n for n in result.report["notes"])


def test_folder_sources_skip_hidden_and_non_data_files(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "part1.csv").write_text("user_id,item_id\nu1,i1\n")
    (folder / ".part2.csv").write_text("user_id,item_id\nu9,i9\n")
    (folder / "README.txt").write_text("how this export was made\n")
    result = ingest(tmp_path, events_config(folder, columns=UI))
    assert result.events["user_id"].to_list() == ["u1"]
    assert any("skipped 2 entries" in n for n in result.report["notes"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x1f\x8b\x08\x00rest", "gzip-compressed; decompress it first"),
        (b"user_id,item_id\ru1,i1\r", "bare carriage return"),
        (b"user_id,item_id,user_id\nu1,i1,u2\n", "appears 2 times in the header"),
    ],
)
def test_undecipherable_exports_are_refused_clearly(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "odd.csv"
    path.write_bytes(content)
    with pytest.raises(InputDataError, match=message):
        ingest(tmp_path, events_config(path, columns=UI))


def test_decimal_comma_means_dots_are_thousands(tmp_path: Path) -> None:
    path = tmp_path / "eu.csv"
    path.write_text('user_id;item_id;price\nu1;i1;"1.234,50"\nu2;i2;"3,5"\nu3;i3;12\n')
    cfg = events_config(path, columns=UI | {"price": "price"}, separator=";", decimal_comma=True)
    assert ingest(tmp_path, cfg).events.sort("user_id")["price"].to_list() == [1234.5, 3.5, 12.0]


def test_repeated_header_lines_and_stray_boms(tmp_path: Path) -> None:
    path = tmp_path / "concat.csv"
    path.write_text("user_id,item_id\nu1,i1\nuser_id,item_id\n\ufeffu2,i2\n")
    cfg = events_config(path, columns=UI)
    cfg["data"]["max_reject_fraction"] = 0.5
    result = ingest(tmp_path, cfg)
    assert result.report["rejected_by_reason"] == {"a repeated header line": 1}
    assert sorted(result.events["user_id"].to_list()) == ["u1", "u2"]


def test_scientific_notation_ids_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "sci.csv"
    path.write_text("user_id,item_id\n1.2E+11,i1\nu2,i2\n")
    report = ingest(tmp_path, events_config(path, columns=UI)).report
    assert report["float_like_ids"] == {"user_id": {"count": 1, "example": "1.2E+11"}}


def test_nothing_kept_publishes_nothing(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text("user_id,item_id\nu1,i1\n")
    cfg = events_config(good, columns=UI)
    ingest(tmp_path, cfg, write=True)
    before = (tmp_path / "work" / "data").resolve()
    empty = tmp_path / "empty.csv"
    empty.write_text("user_id,item_id\n")
    with pytest.raises(InputDataError, match="no events kept"):
        ingest(tmp_path, events_config(empty, columns=UI), write=True)
    assert (tmp_path / "work" / "data").resolve() == before


def test_partial_versions_of_killed_writers_are_cleaned(tmp_path: Path) -> None:
    from reco_cli.publish import prune, publish_version

    root, pointer = tmp_path / "models", tmp_path / "model"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    root.mkdir()
    (root / f".partial-20200101T000000000000Z-abc.{dead.pid}").mkdir()
    alive = root / f".partial-20200101T000000000000Z-def.{os.getpid()}"
    alive.mkdir()
    publish_version(root, pointer, lambda out: (out / "x").write_text("1"), keep=3)
    prune(root, pointer, keep=3)
    left = sorted(p.name for p in root.iterdir())
    assert alive.name in left
    assert not any(name.endswith(f".{dead.pid}") for name in left)
    assert pointer.resolve().parent == root.resolve()
