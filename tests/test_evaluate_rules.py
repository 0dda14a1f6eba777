"""reco evaluate and the business rules: the served lists, and each rule left out in turn."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from reco_cli import render
from reco_cli.bundle import load_bundle
from reco_cli.cli import app
from reco_cli.evaluate import bundle_exclusions, run_evaluation, served_lists
from reco_cli.metrics import PAD
from reco_cli.rank import Recommender

from .test_evaluate import sample_cfg, sample_workdir  # noqa: F401  (a module fixture)

runner = CliRunner()


@pytest.fixture(scope="module")
def evaluated(
    sample_workdir: tuple[Path, dict[str, Any]],  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Any, dict[str, Any]]:
    cfg = sample_cfg(sample_workdir, evaluate={"bootstrap": 0, "rule_impact": True})
    result = run_evaluation(cfg)
    # Evaluation keeps one bundle: a later run in this workdir would prune this one.
    kept = tmp_path_factory.mktemp("eval-bundle") / "bundle"
    shutil.copytree(result["model_dir"], kept)
    return cfg, result | {"model_dir": str(kept)}


def test_every_rule_is_left_out_once(evaluated: tuple[Any, dict[str, Any]]) -> None:
    _, result = evaluated
    block = result["rules"]
    assert block["users"] == result["counts"]["warm_users"]
    assert block["k"] == 10
    assert [(r["name"], r["type"], r["key"]) for r in block["rules"]] == [
        ("exclude_seen", "exclude_seen", "recommend.rules[0]"),
        ("parcel-size", "filter", "recommend.rules[1]"),
        ("garden-campaign", "boost", "recommend.rules[2]"),
        ("diversity", "max_per_category", "recommend.rules[3]"),
        ("featured", "promote", "recommend.rules[4]"),
    ]
    for rule in block["rules"]:
        assert 0 <= rule["lists_changed"] <= 1
        assert rule["delta_ci95"] is None  # bootstrap: 0
        for key, value in block["all_rules"].items():
            # The delta is what the rule adds: all rules minus all but this rule.
            assert rule["delta"][key] == pytest.approx(value - rule["without"][key], abs=2e-6)
            k = int(key.rsplit("@", 1)[1])
            if rule["lists_changed"] == 0 and k <= block["k"]:
                assert rule["delta"][key] == 0  # a rule that changed no list changed no metric
    # The promotion reaches nearly every list: only customers who bought the item escape it.
    featured = block["rules"][4]
    assert featured["lists_changed"] > 0.95
    assert featured["items_changed_per_list"] == pytest.approx(featured["lists_changed"], abs=0.01)


def test_exclude_seen_share_counted_independently(
    sample_workdir: tuple[Path, dict[str, Any]],  # noqa: F811
) -> None:
    """With exclude_seen the only rule, leaving it out gives the model's own top 10 (exact
    score, ties by item index): a list changes exactly when that held an item the user bought
    before the cut."""
    cfg = sample_cfg(
        sample_workdir,
        evaluate={"bootstrap": 0, "rule_impact": True},
        recommend={"rules": [{"type": "exclude_seen", "events": ["purchase"]}]},
    )
    result = run_evaluation(cfg)
    bundle = load_bundle(cfg.workdir_path, location=Path(result["model_dir"]))
    users = _warm_users(cfg, result)
    bought = bundle_exclusions(bundle)
    scores = np.asarray(bundle["user_vectors"])[users] @ np.asarray(bundle["item_vectors"]).T
    changed = 0
    for row, u in enumerate(users):
        order = np.lexsort((np.arange(scores.shape[1]), -scores[row]))[:10]
        own = bought.indices[bought.indptr[u] : bought.indptr[u + 1]]
        changed += bool(np.intersect1d(order, own).size)
    (rule,) = result["rules"]["rules"]
    assert rule["lists_changed"] == pytest.approx(changed / len(users), abs=1e-4)
    # With one rule, "all rules" is the model with its exclusions: the methods table's model.
    assert result["rules"]["all_rules"] == result["methods"]["model"]


def test_the_measured_lists_are_what_reco_recommend_serves(
    evaluated: tuple[Any, dict[str, Any]],
) -> None:
    cfg, result = evaluated
    bundle = load_bundle(cfg.workdir_path, location=Path(result["model_dir"]))
    users = _warm_users(cfg, result)[:100]
    rules = cfg.recommend.effective_rules
    recs = served_lists(bundle, users, rules, 10)
    recommender = Recommender(bundle, rules=rules)
    ids = np.asarray(bundle["user_ids"])
    for row, u in enumerate(users):
        served = [r.item_id for r in recommender.recommend(str(ids[u]), 10).items]
        assert served == [str(bundle["item_ids"][i]) for i in recs[row] if i != PAD]


def test_rule_impact_can_be_switched_off(sample_workdir: tuple[Path, dict[str, Any]]) -> None:  # noqa: F811
    cfg = sample_cfg(sample_workdir, evaluate={"bootstrap": 0, "rule_impact": False})
    result = run_evaluation(cfg)
    assert result["rules"] is None
    assert "rules_s" not in result["timings"]


def test_cli_shows_the_leave_one_rule_out_table(
    evaluated: tuple[Any, dict[str, Any]], tmp_path: Path
) -> None:
    cfg, _ = evaluated
    config = tmp_path / "c.yaml"
    raw = cfg.model_dump(mode="json")
    raw["evaluate"]["bootstrap"] = 200
    raw["evaluate"]["rule_impact"] = True
    config.write_text(json.dumps(raw))
    done = runner.invoke(app, ["evaluate", "-c", str(config), "--format", "json"])
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    text = render.evaluation_markdown(result)
    assert "Business rules on the served lists (warm users)" in text
    assert (
        "| rule | type | lists changed @10 | ndcg@10 | recall@10 | coverage@10 "
        "| ndcg@10 95% interval |"
    ) in text
    for name in ("all rules", "model alone"):
        assert f"| {name} |" in text
    for rule in result["rules"]["rules"]:
        lo, hi = rule["delta_ci95"]
        assert lo - 1e-6 <= rule["delta"]["ndcg@10"] <= hi + 1e-6
        assert f"| {rule['name']} | {rule['type']} | {rule['lists_changed']:.1%} |" in text
    console = Console(width=200, file=io.StringIO(), force_terminal=False)
    render.evaluation_report(result, console)
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "garden-campaign" in shown and "lists changed @10" in shown
    rows = list(csv.DictReader(io.StringIO(render.evaluation_csv(result))))
    methods = {r["method"] for r in rows}
    assert {"rules: all", "rules: without diversity", "rules: without featured"} <= methods


def _warm_users(cfg: Any, result: dict[str, Any]) -> np.ndarray:
    from .test_evaluate import scored_lists

    _, _, test, _ = scored_lists(cfg, result)
    users: np.ndarray = test.users
    return users
