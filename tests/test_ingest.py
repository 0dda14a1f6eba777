"""Ingest: row accounting, ids, null tokens, timestamps, event mapping, sessions, duplicates."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from reco_cli.config import load_config
from reco_cli.errors import InputDataError
from reco_cli.ingest import run_ingest

from .conftest import DATA, SAMPLE, WITH_EVENT, events_config, write_config

CASES = DATA / "cases"


def ingest(tmp_path: Path, config: dict, write: bool = False):  # type: ignore[no-untyped-def]
    return run_ingest(load_config(write_config(tmp_path, config)), write=write)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def balanced(report: dict) -> bool:
    return all(f["balanced"] for f in report["files"]) and report["totals"]["balanced"]


# --- the real sample --------------------------------------------------------------------------


def test_online_retail_sample_accounting(sample_config: Path) -> None:
    result = run_ingest(load_config(sample_config), write=False)
    report = result.report
    totals = report["totals"]
    assert totals["read"] == 20000
    assert (totals["kept"], totals["rejected"], totals["excluded"], totals["duplicates"]) == (
        19801,
        0,
        192,
        7,
    )
    assert balanced(report)
    # Cancellations (negative quantity) are returns, not purchases.
    assert report["events_by_type"] == {"purchase": 19468, "return": 333}
    # Rows without CustomerID are kept as anonymous sessions (the invoice is the session).
    assert report["anonymous_events"] == 4955
    assert report["distinct"]["users"] == 3040
    # Ids are strings: alphanumeric stock codes stay as written.
    assert "85123A" in set(result.events["item_id"].to_list())
    assert result.events.schema["timestamp"] == pl.Datetime("us", "UTC")
    # Every dropped row is in rejects with its file and line.
    assert result.rejects.height == totals["rejected"] + totals["excluded"] + totals["duplicates"]
    assert result.rejects["source_line"].min() >= 2


def test_sample_times_are_london_local(sample_config: Path) -> None:
    events = run_ingest(load_config(sample_config), write=False).events
    first = events.row(0, named=True)
    # 2010-12-01 08:34 in London is GMT (no summer time) -> 08:34 UTC.
    assert first["timestamp"] == utc(2010, 12, 1, 8, 34)
    summer = events.filter(pl.col("source_line") == 3).row(0, named=True)  # 2011-06-16 14:45 BST
    assert summer["timestamp"] == utc(2011, 6, 16, 13, 45)


def test_ingest_writes_canonical_files_and_switches_pointer(sample_config: Path) -> None:
    cfg = load_config(sample_config)
    first = run_ingest(cfg)
    data = cfg.workdir_path / "data"
    assert data.is_symlink()
    for name in ("events.parquet", "rejects.parquet", "items.parquet", "ingest_report.json"):
        assert (data / name).is_file()
    second = run_ingest(cfg)
    assert second.version_dir != first.version_dir
    assert data.resolve() == second.version_dir.resolve()
    assert pl.read_parquet(data / "events.parquet").height == 19801


# --- case 01: ids keep their leading zeros ----------------------------------------------------


def test_case01_ids_are_strings(tmp_path: Path) -> None:
    cfg = events_config(
        CASES / "01_id_leading_zeros" / "interactions.csv",
        columns=WITH_EVENT,
    )
    result = ingest(tmp_path, cfg)
    ev = result.events
    assert ev.height == 6
    assert sorted(ev["user_id"].unique().to_list()) == ["0042", "007", "42", "7"]
    assert sorted(ev["item_id"].unique().to_list()) == ["00123", "00456", "123", "789"]
    assert ev.select("user_id", "item_id").unique().height == 6


def test_case01_variant_integer_parquet_ids(tmp_path: Path) -> None:
    path = tmp_path / "ints.parquet"
    pl.DataFrame(
        {"user_id": [7, 42], "item_id": [123, 123], "timestamp": ["2024-05-01T10:00:00Z"] * 2}
    ).write_parquet(path)
    result = ingest(tmp_path, events_config(path))
    assert sorted(result.events["user_id"].to_list()) == ["42", "7"]
    assert any("cannot be recovered" in n for n in result.report["notes"])


# --- case 02: a late odd value never aborts the load or becomes null --------------------------


def test_case02_late_string_user_id(tmp_path: Path) -> None:
    result = ingest(
        tmp_path, events_config(CASES / "02_schema_inference_window" / "late_string_user_id.csv")
    )
    assert result.events.height == 151
    assert "guest-17" in result.events["user_id"].to_list()


def test_case02_late_float_weight(tmp_path: Path) -> None:
    cols = {
        "user_id": "user_id",
        "item_id": "item_id",
        "weight": "weight",
        "timestamp": "timestamp",
    }
    result = ingest(
        tmp_path,
        events_config(CASES / "02_schema_inference_window" / "late_float_weight.csv", columns=cols),
    )
    assert result.events.height == 151
    assert result.events["weight"].sum() == pytest.approx(152.5)


def test_case02_variant_junk_number_is_rejected_with_line(tmp_path: Path) -> None:
    src = (CASES / "02_schema_inference_window" / "late_float_weight.csv").read_text()
    path = tmp_path / "junk.csv"
    path.write_text(src.rstrip("\n") + "\nu99,i1,abc,2024-06-01T12:00:00Z\n")
    cols = {
        "user_id": "user_id",
        "item_id": "item_id",
        "weight": "weight",
        "timestamp": "timestamp",
    }
    result = ingest(tmp_path, events_config(path, columns=cols))
    assert result.report["rejected_by_reason"] == {"non-numeric weight 'abc'": 1}
    bad = result.rejects.row(0, named=True)
    assert (bad["source_line"], bad["raw_weight"]) == (153, "abc")


def test_too_many_rejects_fail_with_exit_4_and_write_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "user_id,item_id,weight,timestamp\nu1,i1,x,2024-01-01T00:00:00Z\nu2,i2,1,2024-01-01T00:00:00Z\n"
    )
    cols = {
        "user_id": "user_id",
        "item_id": "item_id",
        "weight": "weight",
        "timestamp": "timestamp",
    }
    config = events_config(path, columns=cols)
    with pytest.raises(InputDataError, match=r"bad.csv:2") as exc:
        ingest(tmp_path, config, write=True)
    assert exc.value.exit_code == 4
    assert "non-numeric weight 'x' x1" in str(exc.value)
    assert not (tmp_path / "work" / "data").exists()


# --- case 04: null tokens and padded ids ------------------------------------------------------


def test_case04_null_tokens_and_trimming(tmp_path: Path) -> None:
    cfg = events_config(
        CASES / "04_null_tokens_whitespace" / "interactions.csv",
        columns=WITH_EVENT,
        null_values=["", "NULL", "null", "None", "N/A", "NaN", "nan"],
    )
    cfg["data"]["max_reject_fraction"] = 0.5
    result = ingest(tmp_path, cfg)
    report = result.report
    assert report["rejected_by_reason"] == {"missing user_id": 4}
    assert result.events.height == 6
    assert sorted(result.events["user_id"].unique().to_list()) == ["NA", "u1", "u2"]
    assert sorted(result.events["item_id"].unique().to_list()) == ["i1", "i2", "i3", "i4"]
    assert report["id_values_trimmed"] == {"user_id": 2, "item_id": 1}
    assert report["suspicious_id_values"] == {"user_id": {"NA": 1}}
    assert "NA" not in report["config"]["null_values"]


def test_case04_variant_default_null_tokens_drop_na(tmp_path: Path) -> None:
    cfg = events_config(CASES / "04_null_tokens_whitespace" / "interactions.csv")
    cfg["data"]["max_reject_fraction"] = 0.6
    result = ingest(tmp_path, cfg)
    # The defaults include NA; `None` is not a default token, so no row has user 'None' here.
    assert result.report["rejected_by_reason"] == {"missing user_id": 5}
    assert sorted(result.events["user_id"].unique().to_list()) == ["u1", "u2"]


# --- case 06: timestamps ----------------------------------------------------------------------

TS_CASE = CASES / "06_timestamps"


def test_case06_mixed_formats_refused_without_config(tmp_path: Path) -> None:
    with pytest.raises(InputDataError) as exc:
        ingest(tmp_path, events_config(TS_CASE / "a_mixed_formats.csv"))
    text = str(exc.value)
    assert "day-first or month-first" in text
    for shape in ("9999-99-99 99:99:99", "99/99/9999 99:99", "9999999999", "9999-99-99'"):
        assert shape in text
    assert "x1 (e.g. '03/02/2024 11:00')" in text


def test_case06_configured_formats_parse_all(tmp_path: Path) -> None:
    cfg = events_config(
        TS_CASE / "a_mixed_formats.csv",
        timestamp_format=["%Y-%m-%d %H:%M:%S", "%m/%d/%Y %H:%M", "iso8601", "unix_s", "%Y-%m-%d"],
        timezone="Europe/Berlin",
    )
    ev = ingest(tmp_path, cfg).events.sort("user_id")
    assert ev["timestamp"].to_list() == [
        utc(2024, 3, 1, 9),
        utc(2024, 3, 2, 10),
        utc(2024, 3, 3, 12),
        utc(2024, 3, 4, 12),
        utc(2024, 3, 4, 23),
    ]


def test_case06_offsets_to_utc(tmp_path: Path) -> None:
    ev = ingest(tmp_path, events_config(TS_CASE / "b_offsets_dst.csv")).events.sort("source_line")
    assert ev["timestamp"].to_list() == [
        utc(2024, 3, 30, 23, 30),
        utc(2024, 3, 31, 0, 30),
        utc(2024, 3, 31, 1, 30),
        utc(2024, 3, 31, 0, 30),
    ]


def test_case06_aware_naive_mix(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="1 of 2 timestamps have no UTC offset"):
        ingest(tmp_path, events_config(TS_CASE / "c_aware_naive_mixed.csv"))
    ev = ingest(
        tmp_path, events_config(TS_CASE / "c_aware_naive_mixed.csv", timezone="Europe/Berlin")
    ).events
    assert sorted(ev["timestamp"].to_list()) == [utc(2024, 3, 31, 0, 30), utc(2024, 3, 31, 1, 30)]


def test_case06_variant_dst_gap_rejected_and_ambiguous_counted(tmp_path: Path) -> None:
    path = tmp_path / "dst.csv"
    path.write_text(
        "user_id,item_id,timestamp\n"
        "u1,i1,2024-03-31 01:30:00\n"  # before the spring jump: 00:30Z
        "u1,i2,2024-03-31 02:30:00\n"  # does not exist in Berlin
        "u2,i1,2024-10-27 02:30:00\n"  # happens twice: the earlier instant is 00:30Z
    )
    cfg = events_config(path, timezone="Europe/Berlin", timestamp_format="%Y-%m-%d %H:%M:%S")
    cfg["data"]["max_reject_fraction"] = 0.5
    result = ingest(tmp_path, cfg)
    assert result.report["rejected_by_reason"] == {
        "local time does not exist in Europe/Berlin (DST gap) '2024-03-31 02:30:00'": 1
    }
    assert result.report["timestamps"]["ambiguous_dst_taken_earliest"] == 1
    assert sorted(result.events["timestamp"].to_list()) == [
        utc(2024, 3, 31, 0, 30),
        utc(2024, 10, 27, 0, 30),
    ]


def test_wrong_timestamp_format_fails_whole_column(tmp_path: Path) -> None:
    cfg = events_config(TS_CASE / "b_offsets_dst.csv", timestamp_format="%d.%m.%Y")
    with pytest.raises(InputDataError, match="no timestamp matches") as exc:
        ingest(tmp_path, cfg)
    assert exc.value.exit_code == 4


def test_unix_ms_and_naive_default_to_utc(tmp_path: Path) -> None:
    path = tmp_path / "ms.csv"
    path.write_text("user_id,item_id,timestamp\nu1,i1,1709553600000\n")
    ev = ingest(tmp_path, events_config(path, timestamp_format="unix_ms")).events
    assert ev["timestamp"].to_list() == [utc(2024, 3, 4, 12)]
    path2 = tmp_path / "naive.csv"
    path2.write_text("user_id,item_id,timestamp\nu1,i1,2024-03-04 12:00:00\n")
    result = ingest(tmp_path, events_config(path2))
    assert result.events["timestamp"].to_list() == [utc(2024, 3, 4, 12)]
    assert result.report["timestamps"]["naive_read_as_utc"] is True


# --- case 08: duplicates ----------------------------------------------------------------------


def test_case08_exact_duplicates_removed(tmp_path: Path) -> None:
    cfg = events_config(
        CASES / "08_duplicate_events" / "interactions.csv",
        columns=WITH_EVENT,
    )
    result = ingest(tmp_path, cfg)
    assert result.report["duplicates_removed"] == 2
    assert result.events.height == 8
    dup_lines = sorted(
        result.rejects.filter(pl.col("kind") == "duplicate")["source_line"].to_list()
    )
    assert dup_lines == [3, 11]  # the second copy of each pair is the one dropped


# --- event types, returns, sessions -----------------------------------------------------------


def test_event_type_mapping_and_unknown_types(tmp_path: Path) -> None:
    path = tmp_path / "ev.csv"
    path.write_text(
        "user_id,item_id,behavior,timestamp\n"
        "u1,i1,pv,2024-01-01T00:00:00Z\n"
        "u1,i2,buy,2024-01-01T00:01:00Z\n"
        "u1,i3,cart,2024-01-01T00:02:00Z\n"
        "u1,i3,purchase,2024-01-01T00:03:00Z\n"
        + "".join(f"u2,i{i},wat,2024-01-02T00:00:00Z\n" for i in range(2))
    )
    cfg = events_config(
        path,
        columns={
            "user_id": "user_id",
            "item_id": "item_id",
            "event_type": "behavior",
            "timestamp": "timestamp",
        },
        event_types={"pv": "view", "buy": "purchase", "cart": "add_to_cart"},
    )
    cfg["data"]["max_reject_fraction"] = 0.5
    result = ingest(tmp_path, cfg)
    assert result.report["events_by_type"] == {"add_to_cart": 1, "purchase": 2, "view": 1}
    assert result.report["rejected_by_reason"] == {"unknown event type 'wat'": 2}


def test_sessions_built_from_inactivity_gap(tmp_path: Path) -> None:
    path = tmp_path / "gap.csv"
    path.write_text(
        "user_id,item_id,timestamp\n"
        "u1,i1,2024-01-01T10:00:00Z\n"
        "u1,i2,2024-01-01T10:29:00Z\n"  # 29 min later: same session
        "u1,i3,2024-01-01T11:00:00Z\n"  # 31 min later: new session
        "u2,i1,2024-01-01T10:05:00Z\n"
    )
    result = ingest(tmp_path, events_config(path))
    ev = result.events.sort("user_id", "timestamp")
    assert ev["session_id"].to_list() == ["u1#s1", "u1#s1", "u1#s2", "u2#s1"]
    assert result.report["sessions_built_from_gaps"] is True
    assert result.report["distinct"]["sessions"] == 3


def test_anonymous_events_need_a_session(tmp_path: Path) -> None:
    path = tmp_path / "anon.csv"
    path.write_text(
        "user_id,item_id,session,timestamp\n"
        ",i1,s1,2024-01-01T10:00:00Z\n"
        ",i2,,2024-01-01T10:00:00Z\n"
        "u1,i2,,2024-01-01T10:00:00Z\n"
    )
    cfg = events_config(
        path,
        columns={
            "user_id": "user_id",
            "item_id": "item_id",
            "session_id": "session",
            "timestamp": "timestamp",
        },
    )
    cfg["data"]["max_reject_fraction"] = 0.5
    result = ingest(tmp_path, cfg)
    assert result.report["rejected_by_reason"] == {"missing user_id and session_id": 1}
    assert result.report["anonymous_events"] == 1
    # u1 had no session id: one is built from the gap rule.
    assert result.events.filter(pl.col("user_id") == "u1")["session_id"].to_list() == ["u1#s1"]


def test_folder_of_parts_with_empty_and_header_only_files(tmp_path: Path) -> None:
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / "a.csv").write_text(
        "user_id,item_id,timestamp\nu1,i1,2024-01-01T00:00:00Z\nu1,i1,2024-01-01T00:00:00Z\n"
    )
    (parts / "b.csv").write_text("")
    (parts / "c.csv").write_text("user_id,item_id,timestamp\n")
    (parts / "d.csv").write_text(
        "user_id,item_id,timestamp\nu2,i1,2024-01-02T00:00:00Z\nu1,i1,2024-01-01T00:00:00Z\n"
    )
    result = ingest(tmp_path, events_config(parts))
    files = {Path(f["path"]).name: f for f in result.report["files"]}
    assert [files[n]["read"] for n in ("a.csv", "b.csv", "c.csv", "d.csv")] == [2, 0, 0, 2]
    assert (files["a.csv"]["kept"], files["a.csv"]["duplicates"]) == (1, 1)
    # A duplicate across files is counted in the file where the repeat appears.
    assert (files["d.csv"]["kept"], files["d.csv"]["duplicates"]) == (1, 1)
    assert balanced(result.report)


def test_missing_file_and_missing_column_errors(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="not found"):
        ingest(tmp_path, events_config(tmp_path / "nope.csv"))
    path = tmp_path / "semi.csv"
    path.write_text("user_id;item_id;timestamp\nu1;i1;2024-01-01T00:00:00Z\n")
    with pytest.raises(InputDataError) as exc:
        ingest(tmp_path, events_config(path))
    text = str(exc.value)
    assert "the header found is ['user_id;item_id;timestamp']" in text
    assert 'separator: ";"' in text


def test_sample_path_constant_is_shipped() -> None:
    assert SAMPLE.is_file()


def test_epoch_unit_mismatch_is_refused(tmp_path: Path) -> None:
    seconds = tmp_path / "s.csv"
    seconds.write_text("user_id,item_id,timestamp\nu1,i1,1709553600\nu2,i2,1709553700\n")
    with pytest.raises(InputDataError, match="look like seconds; set timestamp_format: unix_s"):
        ingest(tmp_path, events_config(seconds, timestamp_format="unix_ms"))
    millis = tmp_path / "ms.csv"
    millis.write_text("user_id,item_id,timestamp\nu1,i1,1709553600000\n")
    with pytest.raises(
        InputDataError, match="look like milliseconds; set timestamp_format: unix_ms"
    ):
        ingest(tmp_path, events_config(millis, timestamp_format="unix_s"))


def test_out_of_range_timestamps_are_rejected_and_odd_dates_warned(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_text(
        "user_id,item_id,timestamp\n"
        "u1,i1,1709553600\n"
        "u2,i2,1709553600000\n"  # a millisecond value among seconds: year 56,000
        + "".join(f"u{i},i1,{1709553600 + i}\n" for i in range(3, 10))
    )
    cfg = events_config(path, timestamp_format="unix_s")
    cfg["data"]["max_reject_fraction"] = 0.2
    result = ingest(tmp_path, cfg)
    assert result.report["rejected_by_reason"] == {
        "timestamp outside 1900..2200 '1709553600000'": 1
    }
    future = tmp_path / "future.csv"
    future.write_text(
        "user_id,item_id,timestamp\nu1,i1,2150-01-01T00:00:00Z\nu2,i1,1980-01-01T00:00:00Z\n"
    )
    report = ingest(tmp_path, events_config(future)).report
    assert report["timestamps"]["in_the_future"] == 1
    assert report["timestamps"]["before_1990"] == 1
