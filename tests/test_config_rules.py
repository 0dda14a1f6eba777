"""recommend.rules in the config: validation with key paths, the exclude_seen translation, and
keyword-derived item columns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from reco_cli.cli import app
from reco_cli.config import (
    RULE_TYPES,
    ExcludeSeenRule,
    KeywordColumn,
    RecoConfig,
    RecommendConfig,
    load_config,
)
from reco_cli.errors import ConfigError
from reco_cli.ingest import keyword_column

from .conftest import ROOT, write_config

runner = CliRunner()


def base(**recommend: Any) -> dict[str, Any]:
    return {
        "data": {
            "events": {
                "path": "events.csv",
                "columns": {"user_id": "u", "item_id": "i", "timestamp": "t"},
                "default_event_type": "purchase",
            },
            "items": {
                "path": "items.csv",
                "columns": {"item_id": "i", "title": "name", "price": "p", "margin": "m"},
                "numeric_columns": ["margin"],
                "keyword_columns": {"category": {"keywords": {"bags": ["BAG"]}}},
            },
        },
        "recommend": recommend,
    }


def error_of(tmp_path: Path, config: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as exc:
        load_config(write_config(tmp_path, config))
    return str(exc.value)


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates(path: Path) -> None:
    cfg = load_config(path)
    # Round trip through the manifest snapshot gives the same rules.
    again = RecoConfig.model_validate(cfg.model_dump(mode="json"))
    assert again.recommend.effective_rules == cfg.recommend.effective_rules


def test_default_config_rules() -> None:
    cfg = load_config(ROOT / "configs" / "default.yaml")
    rules = cfg.recommend.effective_rules
    assert [(r.type, r.name) for r in rules] == [
        ("exclude_seen", "exclude_seen"),
        ("filter", "parcel-size"),
        ("boost", "garden-campaign"),
        ("max_per_category", "diversity"),
        ("promote", "featured"),
    ]
    assert cfg.recommend.exclude_seen == ["purchase"]  # mirrors the exclude_seen rule
    assert "category" in cfg.data.items.all_columns  # type: ignore[union-attr]


def test_exclude_seen_becomes_a_rule() -> None:
    default = RecommendConfig()
    assert [(r.type, r.events, r.path) for r in default.effective_rules] == [  # type: ignore[union-attr]
        ("exclude_seen", ["purchase"], "recommend.exclude_seen")
    ]
    assert RecommendConfig(exclude_seen=[]).effective_rules == []
    boost_only = RecommendConfig.model_validate(
        {
            "exclude_seen": ["purchase", "add_to_cart"],
            "rules": [{"type": "filter", "column": "c", "equals": 1}],
        }
    )
    first, second = boost_only.effective_rules
    assert isinstance(first, ExcludeSeenRule)
    assert (first.events, first.name, first.path) == (
        ["purchase", "add_to_cart"],
        "exclude_seen",
        "recommend.exclude_seen",
    )
    assert second.path == "recommend.rules[0]"
    own = RecommendConfig.model_validate(
        {"rules": [{"type": "exclude_seen", "events": ["view"], "lookback_days": 7}]}
    )
    assert own.exclude_seen == ["view"]  # the legacy key mirrors the rule
    assert len(own.effective_rules) == 1


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ([{"type": "bogus"}], "recommend.rules[0].type: unknown rule type 'bogus' (allowed: "),
        (
            [
                {"type": "boost", "items": ["a"], "weight": 1},
                {"type": "filter", "column": "colour", "equals": "red"},
            ],
            "recommend.rules[1].column: 'colour' is not an item metadata column",
        ),
        (
            [{"type": "boost", "column": "margin", "weight": -0.2}],
            "recommend.rules[0].weight: Input should be greater than or equal to 0 (got -0.2)",
        ),
        (
            [{"type": "boost", "column": "title", "weight": 1}],
            "recommend.rules[0].column: 'title' is a text column; this rule needs a numeric one",
        ),
        (
            [{"type": "filter", "column": "price", "in": ["cheap"]}],
            "recommend.rules[0]: column 'price' is numeric, but the filter compares it with text",
        ),
        ([{"type": "filter", "column": "title"}], "recommend.rules[0]: a filter needs a condition"),
        (
            [{"type": "boost", "weight": 1}],
            "recommend.rules[0]: a boost needs exactly one of column (numeric) or items",
        ),
        (
            [{"type": "max_per_category", "limit": 0}],
            "recommend.rules[0].limit: Input should be greater than or equal to 1",
        ),
        (
            [{"type": "promote", "items": ["a"], "slots": [0]}],
            "recommend.rules[0].slots[0]: Input should be greater than or equal to 1",
        ),
        (
            [{"type": "filter", "column": "title", "equals": "x", "colour": 1}],
            "unknown key 'recommend.rules[0].colour' (allowed: name, type, column, action, equals, in,",
        ),
        (
            [
                {"type": "promote", "items": ["a"], "slots": [1], "name": "x"},
                {"type": "boost", "items": ["b"], "weight": 1, "name": "x"},
            ],
            "recommend.rules[1].name: 'x' is already the name of recommend.rules[0]",
        ),
        (
            [{"type": "exclude_seen", "events": ["sniff"]}],
            "recommend.rules[0].events[0]: Input should be 'view', 'click'",
        ),
    ],
)
def test_rule_errors_name_the_key_path(
    tmp_path: Path, rules: list[dict[str, Any]], expected: str
) -> None:
    message = error_of(tmp_path, base(rules=rules))
    assert expected in message, message
    assert len(message.splitlines()) == 1


def test_exclude_seen_and_rules_must_agree(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        base(exclude_seen=["view"], rules=[{"type": "exclude_seen", "events": ["purchase"]}]),
    )
    assert "recommend.exclude_seen ['view'] disagrees with the exclude_seen rule(s)" in message


def test_a_rule_column_needs_item_metadata(tmp_path: Path) -> None:
    config = base(rules=[{"type": "max_per_category", "limit": 2}])
    del config["data"]["items"]
    assert (
        "recommend.rules[0].column: 'category' is not an item metadata column (no data.items"
        in (error_of(tmp_path, config))
    )


def test_keyword_column_errors(tmp_path: Path) -> None:
    config = base()
    config["data"]["items"]["keyword_columns"] = {
        "category": {"source": "desc", "keywords": {"a": ["b"]}}
    }
    assert "data.items.keyword_columns.category.source: 'desc' is not a text column" in error_of(
        tmp_path, config
    )
    config["data"]["items"]["keyword_columns"] = {"title": {"keywords": {"a": ["b"]}}}
    assert "'title' is already in data.items.columns" in error_of(tmp_path, config)
    config["data"]["items"]["keyword_columns"] = {"category": {"keywords": {"a": []}}}
    assert "keywords.a: give a non-empty list" in error_of(tmp_path, config)


def test_keyword_column_first_listed_whole_word_wins() -> None:
    spec = KeywordColumn(
        keywords={
            "christmas": ["CHRISTMAS"],
            "lights": ["T-LIGHT", "lantern"],
            "bags": ["BAG"],
            "bottles": ["HOT WATER BOTTLE"],
        },
        default="other",
    )
    titles = pl.DataFrame(
        {
            "title": [
                "CHRISTMAS T-LIGHT HOLDER",  # both match: the first listed value wins
                "SCARF  HOT WATER  BOTTLE",  # a phrase matches across repeated spaces
                "set/9 t-lights",  # T-LIGHTS is not the whole word T-LIGHT
                "Paper Lantern",  # any case
                "JUMBO BAG RED",
                "BAGGY JEANS",  # not a whole word
                None,
            ]
        }
    )
    got = titles.select(keyword_column(spec).alias("c")).get_column("c").to_list()
    assert got == ["christmas", "bottles", "other", "lights", "bags", "other", "other"]
    no_default = KeywordColumn(keywords={"bags": ["BAG"]})
    got = titles.select(keyword_column(no_default).alias("c")).get_column("c").to_list()
    assert got == [None, None, None, None, "bags", None, None]


def test_cli_misconfigured_rule_exits_3_naming_the_key_path(tmp_path: Path) -> None:
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    cfg["recommend"]["rules"][2] = {"type": "filter", "column": "in_stock", "equals": True}
    path = write_config(tmp_path, cfg)
    result = runner.invoke(app, ["recommend", "-c", str(path), "--user", "12583"])
    assert result.exit_code == 3
    assert result.stdout == ""
    assert "recommend.rules[2].column: 'in_stock' is not an item metadata column" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    cfg["recommend"]["rules"][2] = {"type": "boost", "column": "price", "weight": -1}
    result = runner.invoke(app, ["recommend", "-c", str(write_config(tmp_path, cfg))])
    assert result.exit_code == 3
    assert "recommend.rules[2].weight: Input should be greater than or equal to 0" in result.stderr


def test_readme_documents_every_rule_type() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Business rules") :]
    for rule_type in RULE_TYPES:
        assert f"### {rule_type}" in section
        assert f"type: {rule_type}" in section  # with an example
