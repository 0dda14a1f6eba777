"""Splits, test-set accounting, baselines and gates of `reco evaluate` (library level)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml

from reco_cli import columns as C
from reco_cli.bundle import load_bundle, model_pointer
from reco_cli.config import RecoConfig, RecommendConfig, load_config
from reco_cli.errors import ConfigError, InputDataError
from reco_cli.evaluate import (
    build_test_set,
    bundle_exclusions,
    check_gates,
    eval_dir,
    run_evaluation,
    score_methods,
)
from reco_cli.ingest import run_ingest
from reco_cli.interactions import build_interactions
from reco_cli.metrics import PAD
from reco_cli.rank import Recommender
from reco_cli.splits import split_events

from .conftest import DATA, ROOT, SAMPLE, events_config, write_config

CASES = DATA / "cases"
SMALL_TRAIN = {"no_components": 4, "epochs": 5, "num_threads": 1}


def load(tmp_path: Path, raw: dict[str, Any]) -> RecoConfig:
    return load_config(write_config(tmp_path, raw))


def case_config(tmp_path: Path, path: Path | list[str], evaluate: dict[str, Any], **extra: Any):
    raw = events_config(str(path))
    raw["data"]["events"]["path"] = path if isinstance(path, list) else str(path)
    raw["train"] = dict(SMALL_TRAIN)
    raw["index"] = {"mode": "exact"}
    raw["evaluate"] = {"k": [3], "headline": "ndcg@3", "bootstrap": 50, **evaluate}
    raw.update(extra)
    return load(tmp_path, raw)


def classify(cfg: RecoConfig, events: pl.DataFrame):  # type: ignore[no-untyped-def]
    from reco_cli.interactions import exclusion_matrix

    split = split_events(events, cfg)
    inter = build_interactions(split.train, cfg.train)
    excluded = exclusion_matrix(
        split.train, inter.user_ids, inter.item_ids, list(cfg.recommend.exclude_seen)
    )
    return split, inter, build_test_set(split.test, split.train, inter, excluded, cfg)


# --- case 19: a time split exposes cold users and items -----------------------------------------


CASE19 = {"cutoff": "2024-01-10T00:00:00Z", "positive_events": ["view"]}


def test_case_19_split_and_cold_start_numbers(tmp_path: Path) -> None:
    cfg = case_config(tmp_path, CASES / "19_split_leakage_coldstart" / "interactions.csv", CASE19)
    run_ingest(cfg)
    result = run_evaluation(cfg)
    split = result["split"]
    assert split["train"]["events"] == 9
    assert split["test"]["events"] == 8
    assert split["train"]["last"] == "2024-01-09T09:00:00+00:00"
    assert split["cutoff"] == "2024-01-10T00:00:00+00:00"
    assert split["test"]["first"] == "2024-01-10T09:00:00+00:00"
    counts = result["counts"]
    assert counts["pairs"] == 8
    assert (counts["cold_users"], counts["cold_user_pairs"]) == (2, 4)
    assert (counts["cold_items"], counts["cold_item_pairs"]) == (1, 1)  # i6; (u2, i6)
    assert (counts["warm_users"], counts["warm_pairs"]) == (3, 3)
    assert counts["excluded_pairs"] == 0
    # Cold users are scored in their own block with the fallback, not mixed into warm figures.
    assert result["cold_users"]["fallback"] == "popular"
    assert result["cold_users"]["users_scored"] == 2  # (u5, i1) and (u6, i2) are on known items
    # Popular top 3 is i1, i2, i3: u5's i1 and u6's i2 are both found (i6 is unknown).
    assert result["cold_users"]["metrics"]["recall@3"] == pytest.approx(1.0)
    assert result["cold_users"]["metrics"]["precision@3"] == pytest.approx(1 / 3)


def test_case_19_who_is_cold_and_which_rows_are_scored(tmp_path: Path) -> None:
    cfg = case_config(tmp_path, CASES / "19_split_leakage_coldstart" / "interactions.csv", CASE19)
    events = run_ingest(cfg, write=False).events
    _, inter, test = classify(cfg, events)
    assert inter.user_ids[test.users].tolist() == ["u1", "u2", "u3"]
    rows, cols = test.positives.nonzero()
    scored = sorted(zip(inter.user_ids[test.users][rows], inter.item_ids[cols], strict=True))
    assert scored == [("u1", "i4"), ("u2", "i4"), ("u3", "i2")]
    assert test.cold_users.tolist() == ["u5", "u6"]


def test_popularity_comes_from_training_rows_only(tmp_path: Path) -> None:
    cfg = case_config(tmp_path, CASES / "19_split_leakage_coldstart" / "interactions.csv", CASE19)
    run_ingest(cfg)
    result = run_evaluation(cfg)
    bundle = load_bundle(cfg.workdir_path, location=Path(result["model_dir"]))
    order = bundle["item_ids"][bundle["popular_order"]].tolist()
    # Training: i1 x3, i2 x3, i3 x2, i4 x1 (over all rows i2 would lead and i6 would be known).
    assert order == ["i1", "i2", "i3", "i4"]
    # The evaluation model learnt only the past: its bundle ends before the cut.
    assert bundle.manifest["data"]["last_event"] < result["split"]["cutoff"]


def test_evaluation_never_touches_the_served_model(tmp_path: Path) -> None:
    cfg = case_config(tmp_path, CASES / "19_split_leakage_coldstart" / "interactions.csv", CASE19)
    run_ingest(cfg)
    run_evaluation(cfg)
    assert not model_pointer(cfg.workdir_path).exists()
    assert (eval_dir(cfg.workdir_path) / "evaluation.json").is_file()
    from reco_cli.model import train_model

    served = train_model(cfg).bundle_dir
    before = sorted(p.name for p in served.iterdir())
    run_evaluation(cfg)
    assert model_pointer(cfg.workdir_path).resolve() == served.resolve()
    assert sorted(p.name for p in served.iterdir()) == before


# --- cases 08 and 09: repeats, exclusions, unknown ids --------------------------------------------


def case08(tmp_path: Path, exclude_seen: list[str]) -> RecoConfig:
    columns = {
        "user_id": "user_id",
        "item_id": "item_id",
        "event_type": "event",
        "timestamp": "timestamp",
    }
    raw = events_config(CASES / "08_duplicate_events" / "interactions.csv", columns=columns)
    raw["train"] = dict(SMALL_TRAIN)
    raw["recommend"] = {"exclude_seen": exclude_seen}
    raw["evaluate"] = {
        "cutoff": "2024-01-04T00:00:00Z",
        "positive_events": ["view"],
        "k": [3],
        "headline": "ndcg@3",
    }
    return load(tmp_path, raw)


def test_case_08_repeat_pair_is_removed_by_the_exclusion_and_counted(tmp_path: Path) -> None:
    cfg = case08(tmp_path, ["view"])
    ingest = run_ingest(cfg, write=False)
    assert ingest.report["duplicates_removed"] == 2
    split, _, test = classify(cfg, ingest.events)
    assert split.test.height == 3
    c = test.counts
    assert c["pairs"] == 3  # (u2,i1), (u2,i3), (u3,i3): the duplicate view counts once
    assert c["excluded_pairs"] == 1 and c["excluded_pairs_by_event_type"] == {"view": 1}
    # Ground truth left: (u2,i3) and (u3,i3); i3 was never seen before the cut.
    assert (c["cold_items"], c["cold_item_pairs"], c["warm_pairs"]) == (1, 2, 0)


def test_case_08_without_exclusions_the_repeat_is_a_positive(tmp_path: Path) -> None:
    cfg = case08(tmp_path, [])
    _, inter, test = classify(cfg, run_ingest(cfg, write=False).events)
    assert test.counts["excluded_pairs"] == 0
    assert test.counts["warm_pairs"] == 1
    assert inter.item_ids[test.positives.nonzero()[1]].tolist() == ["i1"]


def test_case_08_nothing_to_score_is_one_clear_error(tmp_path: Path) -> None:
    cfg = case08(tmp_path, ["view"])
    run_ingest(cfg)
    with pytest.raises(InputDataError, match="no warm user has a test positive"):
        run_evaluation(cfg)


def test_case_09_unknown_users_and_items_are_classified_not_raised(tmp_path: Path) -> None:
    paths = [str(CASES / "09_unknown_ids" / f) for f in ("train.csv", "test.csv")]
    cfg = case_config(
        tmp_path, paths, {"cutoff": "2024-01-10T00:00:00Z", "positive_events": ["view"]}
    )
    run_ingest(cfg)
    c = run_evaluation(cfg)["counts"]
    assert (c["warm_pairs"], c["cold_item_pairs"], c["cold_user_pairs"]) == (1, 2, 1)
    assert (c["cold_items"], c["cold_users"]) == (1, 1)


# --- splits on the real sample ------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_workdir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """configs/default.yaml on the shipped sample, ingested once for this module."""
    tmp = tmp_path_factory.mktemp("sample")
    raw = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    raw["workdir"] = str(tmp / "work")
    raw["data"]["events"]["path"] = str(SAMPLE)
    raw["data"]["items"]["path"] = str(SAMPLE)
    run_ingest(load(tmp, raw))
    return tmp, raw


def sample_cfg(sample_workdir: tuple[Path, dict[str, Any]], **sections: Any) -> RecoConfig:
    tmp, raw = sample_workdir
    # The leave-one-rule-out passes (tests/test_evaluate_rules.py) only when a test asks.
    sections["evaluate"] = {"rule_impact": False, **sections.get("evaluate", {})}
    raw = {**raw, **{k: {**raw.get(k, {}), **v} for k, v in sections.items()}}
    return load(tmp, raw)


def sample_events(cfg: RecoConfig) -> pl.DataFrame:
    from reco_cli.model import read_events

    return read_events(cfg.workdir_path)


def test_time_split_has_nothing_after_the_cut_in_training(sample_workdir) -> None:  # type: ignore[no-untyped-def]
    cfg = sample_cfg(sample_workdir, evaluate={"test_days": 30})
    events = sample_events(cfg)
    split = split_events(events, cfg)
    cutoff = split.train.get_column(C.TIMESTAMP).max()
    last = events.get_column(C.TIMESTAMP).max()
    assert split.info["rule"] == "last 30 days"
    assert split.info["cutoff"] == (last - np.timedelta64(30, "D")).isoformat()  # type: ignore[operator]
    assert cutoff < split.test.get_column(C.TIMESTAMP).min()
    assert split.train.height + split.test.height == events.height


def test_default_split_is_the_last_fifth_of_the_span(sample_workdir) -> None:  # type: ignore[no-untyped-def]
    cfg = sample_cfg(sample_workdir)
    events = sample_events(cfg)
    split = split_events(events, cfg)
    ts = events.get_column(C.TIMESTAMP)
    first, last = ts.min(), ts.max()
    assert split.info["cutoff"] == (first + (last - first) * 0.8).isoformat()  # type: ignore[operator]


def test_last_n_split_holds_out_each_users_latest_positives(sample_workdir) -> None:  # type: ignore[no-untyped-def]
    cfg = sample_cfg(sample_workdir, evaluate={"split": "last_n", "last_n": 2})
    split = split_events(sample_events(cfg), cfg)
    train_last = split.train.group_by(C.USER_ID).agg(pl.col(C.TIMESTAMP).max().alias("a"))
    test_first = split.test.group_by(C.USER_ID).agg(pl.col(C.TIMESTAMP).min().alias("b"))
    both = train_last.join(test_first, on=C.USER_ID)
    assert both.height > 100
    assert (both["a"] < both["b"]).all()
    bought = pl.col(C.EVENT_TYPE) == "purchase"
    held = split.test.filter(bought).group_by(C.USER_ID).len()
    total = sample_events(cfg).filter(bought).group_by(C.USER_ID).agg(pl.len().alias("all"))
    held = held.join(total, on=C.USER_ID)
    # At least min(2, all their purchases); more when purchases share the cut's timestamp.
    assert (held["len"] >= held["all"].clip(upper_bound=2)).all()
    assert (held["len"] == 2).sum() > 100
    assert split.info["train_events_after_first_test_event"] > 0  # reported, not hidden


def test_cutoff_outside_the_log_is_a_clear_error(sample_workdir) -> None:  # type: ignore[no-untyped-def]
    cfg = sample_cfg(sample_workdir, evaluate={"cutoff": "2030-01-01T00:00:00Z"})
    with pytest.raises(InputDataError, match="leaves no test events"):
        split_events(sample_events(cfg), cfg)


# --- exclusions, the served path, baselines -----------------------------------------------------


def scored_lists(cfg: RecoConfig, result: dict[str, Any]):  # type: ignore[no-untyped-def]
    """Recompute the evaluation's lists from its bundle (the same split, test set and methods)."""
    bundle = load_bundle(cfg.workdir_path, location=Path(result["model_dir"]))
    split = split_events(sample_events(cfg), cfg)
    inter = build_interactions(split.train, cfg.train)
    test = build_test_set(split.test, split.train, inter, bundle_exclusions(bundle), cfg)
    scored = score_methods(bundle, split.train, inter, test.users, max(cfg.evaluate.k), cfg)
    return bundle, inter, test, scored


def test_excluded_items_are_never_recommended_nor_counted(sample_workdir) -> None:  # type: ignore[no-untyped-def]
    cfg = sample_cfg(sample_workdir, evaluate={"bootstrap": 0})
    result = run_evaluation(cfg)
    assert result["counts"]["excluded_pairs"] > 0
    bundle, _, test, scored = scored_lists(cfg, result)
    excluded = bundle_exclusions(bundle)[test.users].toarray() != 0
    assert not (test.positives.toarray().astype(bool) & excluded).any()
    for name, recs in scored.recs.items():
        shown = np.take_along_axis(excluded, np.where(recs == PAD, 0, recs), axis=1)
        assert not (shown & (recs != PAD)).any(), name


def test_repeat_baseline_wins_when_rebuying_is_allowed(sample_workdir) -> None:  # type: ignore[no-untyped-def]
    excl = run_evaluation(sample_cfg(sample_workdir, evaluate={"bootstrap": 0}))
    # Re-buying allowed: no exclude_seen key and no exclude_seen rule.
    allow = run_evaluation(
        sample_cfg(
            sample_workdir,
            evaluate={"bootstrap": 0},
            recommend={"exclude_seen": [], "rules": []},
        )
    )
    assert allow["counts"]["excluded_pairs"] == 0
    assert (
        allow["counts"]["warm_pairs"]
        == excl["counts"]["warm_pairs"] + excl["counts"]["excluded_pairs"]
    )
    # Re-buys are positives again and the user's own history finds them.
    assert allow["methods"]["repeat"]["recall@10"] > 1.5 * allow["methods"]["popular"]["recall@10"]


@pytest.mark.parametrize("mode", ["annoy", "exact"])
def test_served_lists_equal_reco_recommend(sample_workdir, mode: str) -> None:  # type: ignore[no-untyped-def]
    cfg = sample_cfg(sample_workdir, index={"mode": mode}, evaluate={"bootstrap": 0})
    result = run_evaluation(cfg)
    assert result["candidate_path"]["serve_from"] == mode
    bundle, inter, test, scored = scored_lists(cfg, result)
    # The "model" method is the model with recommend.exclude_seen only (the business rules are
    # measured separately, under "rules").
    model_alone = RecommendConfig(exclude_seen=cfg.recommend.exclude_seen).effective_rules
    recommender = Recommender(bundle, rules=model_alone)
    users = test.users[:150]
    same = 0
    for row, u in enumerate(users):
        served = recommender.recommend(str(inter.user_ids[u]), 10)
        ours = [str(bundle["item_ids"][i]) for i in scored.recs["model"][row, :10] if i != PAD]
        same += [r.item_id for r in served.items] == ours
    assert same >= len(users) - 2  # float rounding may swap a near-tie


def test_gates_absolute_lift_and_against() -> None:
    methods = {
        "model": {"ndcg@10": 0.10, "recall@10": 0.2},
        "popular": {"ndcg@10": 0.08, "recall@10": 0.25},
        "exact": {"ndcg@10": 0.10, "recall@10": 0.2},
        "repeat": {"ndcg@10": 0.0, "recall@10": 0.0},
        "random": {"ndcg@10": 0.0, "recall@10": 0.0},
    }
    raw = {
        "k": [10],
        "gates": {
            "ndcg@10": {"min": 0.05, "max_drop": 0.01},
            "lift_over_popular.ndcg@10": {"min": 0.3},
            "lift_over_popular.recall@10": {"min": -0.5},
            "lift_over_random.ndcg@10": {"min": 0.0},
        },
    }
    from reco_cli.config import EvaluateConfig

    ev = EvaluateConfig.model_validate(raw)
    saved = {"methods": {"model": {"ndcg@10": 0.12}}}
    gates = check_gates(methods, ev, saved)
    verdict = {(g["gate"], g["bound"]): g["passed"] for g in gates}
    assert verdict == {
        ("ndcg@10", "min"): True,
        ("lift_over_popular.ndcg@10", "min"): False,  # 0.10 / 0.08 - 1 = 0.25 < 0.3
        ("lift_over_popular.recall@10", "min"): True,
        ("lift_over_random.ndcg@10", "min"): True,  # a zero baseline: infinite lift
        ("ndcg@10 drop", "max_drop"): False,  # dropped 0.02 > 0.01
    }


@pytest.mark.parametrize(
    ("evaluate", "message"),
    [
        ({"gates": {"ndcg@7": {"min": 0.1}}}, "k=7 is not in evaluate.k"),
        ({"gates": {"nDCG@10": {"min": 0.1}}}, "is not a metric key"),
        ({"gates": {"lift_over_mean.ndcg@10": {"min": 0}}}, "unknown baseline 'mean'"),
        ({"gates": {"ndcg@10": {}}}, "a gate needs min, max or max_drop"),
        ({"headline": "coverage@10"}, "must be a per-user metric"),
        ({"positive_events": ["rating"]}, "set evaluate.min_rating"),
        ({"split": "last_n", "test_days": 3}, "apply to split: time"),
        ({"positive_events": ["return"]}, "never positives"),
    ],
)
def test_bad_evaluate_config_names_the_key(tmp_path: Path, evaluate: dict, message: str) -> None:
    raw = events_config("x.csv")
    raw["evaluate"] = evaluate
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, raw)


@pytest.mark.slow
def test_sample_default_config_report_is_complete(sample_workdir) -> None:  # type: ignore[no-untyped-def]
    result = run_evaluation(sample_cfg(sample_workdir))
    assert set(result["methods"]) == {"model", "exact", "popular", "repeat", "random"}
    assert result["methods"]["random"]["coverage@20"] > result["methods"]["popular"]["coverage@20"]
    lo, hi = result["headline"]["ci95"]["model"]
    assert lo <= result["headline"]["value"] <= hi
    c = result["counts"]
    assert (
        c["pairs"]
        == c["warm_pairs"] + c["excluded_pairs"] + c["cold_item_pairs"] + c["cold_user_pairs"]
    )


def test_events_without_timestamps_cannot_be_split(tmp_path: Path) -> None:
    path = CASES / "19_split_leakage_coldstart" / "interactions.csv"
    raw = events_config(str(path), columns={"user_id": "user_id", "item_id": "item_id"})
    cfg = load(tmp_path, raw)
    run_ingest(cfg)
    with pytest.raises(InputDataError, match="no event has a timestamp"):
        run_evaluation(cfg)
