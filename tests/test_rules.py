"""The rule engine on a small hand-made candidate list: one test per rule type, exact outputs.

The catalogue (item index: id, category, price, in_stock), candidates scored 8..1 in id order:

    0 a bag  1.0 true     4 e mug  5.0 yes
    1 b bag  2.0 false    5 f card 6.0 true
    2 c bag  3.0 true     6 g  -   -   true
    3 d mug  4.0 true     7 h bag  8.0 0
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from reco_cli.config import RecommendConfig
from reco_cli.rules import (
    Catalogue,
    Ranked,
    Seen,
    UserContext,
    apply_rules,
    compile_rules,
    static_pass_fraction,
)

DAY = 86_400
NOW = 1_700_000_000.0
IDS = np.array(list("abcdefgh"))
CATALOGUE = Catalogue(
    IDS,
    {
        "category": np.array(["bag", "bag", "bag", "mug", "mug", "card", "", "bag"]),
        "price": np.array([1, 2, 3, 4, 5, 6, np.nan, 8], dtype=np.float64),
        "in_stock": np.array(["true", "false", "true", "TRUE", "yes", "true", "true", "0"]),
    },
)
ITEMS = np.arange(8)
SCORES = np.array([8, 7, 6, 5, 4, 3, 2, 1], dtype=np.float64)


def rank(rules: list[dict[str, Any]], k: int = 5, user: UserContext | None = None) -> Ranked:
    # No implicit exclude_seen rule in front: these tests list every rule they want.
    legacy = {} if any(r["type"] == "exclude_seen" for r in rules) else {"exclude_seen": []}
    cfg = RecommendConfig.model_validate({**legacy, "rules": rules})
    compiled = compile_rules(cfg.effective_rules, CATALOGUE)
    # Candidates arrive in any order: the engine sorts them by score.
    shuffled = np.array([3, 0, 7, 5, 1, 6, 2, 4])
    return apply_rules(
        compiled,
        ITEMS[shuffled],
        SCORES[shuffled],
        user or UserContext(now=NOW),
        k,
        score_of=lambda items: SCORES[items],
    )


def ids(ranked: Ranked) -> str:
    return "".join(IDS[ranked.items])


def test_no_rules_is_the_model_order() -> None:
    ranked = rank([])
    assert ids(ranked) == "abcde"
    assert ranked.reasons == ["model"] * 5
    assert ranked.scores.tolist() == [8, 7, 6, 5, 4]
    # Scaled to [0, 1] over the 8 candidates: (s - 1) / 7.
    assert ranked.rank_scores == pytest.approx([1, 6 / 7, 5 / 7, 4 / 7, 3 / 7])


def test_exclude_seen_with_and_without_lookback() -> None:
    user = UserContext(
        seen={
            "purchase": Seen(np.array([1, 3]), np.array([NOW - 10 * DAY, NOW - 400 * DAY])),
            "view": Seen(np.array([0]), np.array([NOW])),
        },
        now=NOW,
    )
    everything = rank([{"type": "exclude_seen", "events": ["purchase"]}], user=user)
    assert ids(everything) == "acefg"
    year = rank([{"type": "exclude_seen", "events": ["purchase"], "lookback_days": 365}], user=user)
    # d was bought 400 days before the data's end: outside the look-back, so eligible again.
    assert ids(year) == "acdef"
    assert year.trace[0].note == (
        "1 item(s) with an earlier purchase in the last 365 days; 1 older one(s) stay eligible"
    )
    both = rank([{"type": "exclude_seen", "events": ["purchase", "view"]}], user=user)
    assert ids(both) == "cefgh"
    trace = both.trace[0]
    assert (trace.rule, trace.type, trace.dropped) == ("exclude_seen", "exclude_seen", 3)
    assert IDS[trace.removed].tolist() == ["a", "b", "d"]
    assert IDS[trace.added].tolist() == ["f", "g", "h"]
    assert [(IDS[i], a, b) for i, a, b in trace.moved] == [("c", 3, 1), ("e", 5, 2)]


def test_filter_conditions_and_actions() -> None:
    # Booleans match true/yes/1-style text in any case; "false" and "0" do not.
    assert ids(rank([{"type": "filter", "column": "in_stock", "equals": True}])) == "acdef"
    # not_in keeps items without a value (g); matching is case-insensitive.
    assert ids(rank([{"type": "filter", "column": "category", "not_in": ["BAG"]}])) == "defg"
    assert ids(rank([{"type": "filter", "column": "category", "in": ["mug", "card"]}])) == "def"
    # min/max: a missing price (g) never passes.
    assert ids(rank([{"type": "filter", "column": "price", "min": 2, "max": 5}])) == "bcde"
    dropped = rank([{"type": "filter", "column": "category", "equals": "mug", "action": "exclude"}])
    assert ids(dropped) == "abcfg"
    assert dropped.trace[0].dropped == 2
    assert dropped.trace[0].note == "6 of 8 catalogue items pass (exclude on category)"
    by_id = rank([{"type": "filter", "column": "item_id", "not_in": ["a", "c"]}], k=3)
    assert ids(by_id) == "bde"


def test_boost_by_item_list() -> None:
    ranked = rank([{"type": "boost", "items": ["g", "nope"], "weight": 0.5, "name": "campaign"}])
    # g: (2 - 1) / 7 + 0.5 = 0.643, between c (0.714) and d (0.571).
    assert ids(ranked) == "abcgd"
    assert ranked.reasons == ["model", "model", "model", "boosted:campaign", "model"]
    assert ranked.rank_scores == pytest.approx([1, 6 / 7, 5 / 7, 1 / 7 + 0.5, 4 / 7])
    assert ranked.scores.tolist() == [8, 7, 6, 2, 5]  # model scores are reported unchanged
    assert ranked.trace[0].note == (
        "1 candidate(s) moved up; 1 listed item(s) not in the model: nope"
    )


def test_boost_by_numeric_column() -> None:
    # price scaled to [0, 1] over the catalogue: (p - 1) / 7, missing = 0; weight 2 makes the
    # boosted score (7 + i) / 7 for item i, so the dearest items rise.
    ranked = rank([{"type": "boost", "column": "price", "weight": 2}], k=4)
    assert ids(ranked) == "hfed"
    assert ranked.reasons == ["boosted:boost-price"] * 3 + ["model"]
    assert ranked.rank_scores == pytest.approx([2, 12 / 7, 11 / 7, 10 / 7])


def test_boost_never_pushes_negative_scores_down() -> None:
    cfg = RecommendConfig.model_validate(
        {"exclude_seen": [], "rules": [{"type": "boost", "items": ["b"], "weight": 0.1}]}
    )
    rules = compile_rules(cfg.effective_rules, CATALOGUE)
    negative = -SCORES  # a, the best, has -8... all raw scores negative
    ranked = apply_rules(rules, ITEMS[::-1], negative[::-1], UserContext(), 3)
    # Order by raw score: h (-1), g (-2), f (-3). b is at 1/7 after scaling, + 0.1: still last.
    assert ids(ranked) == "hgf"
    boosted = apply_rules(rules, np.array([0, 1]), np.array([-5.0, -5.5]), UserContext(), 2)
    assert ids(boosted) == "ab"  # b: 0 + 0.1 < a: 1.0; a boost only ever adds
    assert boosted.rank_scores == pytest.approx([1.0, 0.1])


def test_max_per_category() -> None:
    two = rank([{"type": "max_per_category", "column": "category", "limit": 2}])
    # c and h are the 3rd and 4th bag; g has no category and is never capped.
    assert ids(two) == "abdef"
    assert two.trace[0].dropped == 2
    assert IDS[two.trace[0].removed].tolist() == ["c"]
    one = rank([{"type": "max_per_category", "limit": 1}], k=8)
    assert ids(one) == "adfg"


def test_promote_into_slots() -> None:
    ranked = rank([{"type": "promote", "items": ["h", "f"], "slots": [2, 4], "name": "spring"}])
    assert ids(ranked) == "ahbfc"
    assert ranked.reasons == ["model", "promoted:spring", "model", "promoted:spring", "model"]
    assert ranked.rank_scores[1] is None and ranked.rank_scores[3] is None
    assert ranked.scores.tolist() == [8, 1, 7, 3, 6]


def test_promote_only_items_that_pass_every_filter() -> None:
    user = UserContext(seen={"purchase": Seen(np.array([7]), np.array([NOW]))}, now=NOW)
    rules = [
        {"type": "exclude_seen", "events": ["purchase"]},
        # Listed after the promotion, the filter still decides who may be promoted.
        {"type": "promote", "items": ["zz", "h", "b", "f", "e"], "slots": [1, 2]},
        {"type": "filter", "column": "in_stock", "equals": True},
    ]
    ranked = rank(rules, user=user)
    # zz is not in the model, h was bought, b is out of stock: f and e take slots 1 and 2.
    assert ids(ranked) == "feacd"
    assert ranked.trace[1].note == (
        "2 item(s) pinned; 2 listed item(s) fail the filters; 1 listed item(s) not in the model: zz"
    )


def test_promote_beyond_the_list_moves_up_and_scores_unseen_items() -> None:
    cfg = RecommendConfig.model_validate(
        {"exclude_seen": [], "rules": [{"type": "promote", "items": ["h"], "slots": [9]}]}
    )
    rules = compile_rules(cfg.effective_rules, CATALOGUE)
    ranked = apply_rules(
        rules, np.array([0, 1]), np.array([2.0, 1.0]), UserContext(), 10, score_of=lambda i: -i
    )
    # Two candidates only: h keeps its promise of a place, right after them, with its score.
    assert ids(ranked) == "abh"
    assert ranked.scores.tolist() == [2.0, 1.0, -7.0]


def test_cap_holds_whatever_the_order_with_promote() -> None:
    cap = {"type": "max_per_category", "limit": 2}
    promote = {"type": "promote", "items": ["h"], "slots": [1]}
    # Promotion first: the pinned bag uses one of the two places, so b and c give way.
    assert ids(rank([promote, cap])) == "hadef"
    # Cap first: the promotion re-applies it, so b (the lowest ranked free bag) gives way.
    after = rank([cap, promote])
    assert ids(after) == "hadef"
    assert IDS[after.trace[1].removed].tolist() == ["b"]


def test_the_issue_example_in_order() -> None:
    user = UserContext(seen={"purchase": Seen(np.array([0]), np.array([NOW]))}, now=NOW)
    ranked = rank(
        [
            {"type": "exclude_seen", "events": ["purchase"], "lookback_days": 365},
            {"type": "filter", "column": "in_stock", "equals": True},
            {"type": "filter", "column": "category", "not_in": ["card"]},
            {"type": "boost", "column": "price", "weight": 0.2},
            {"type": "boost", "items": ["g"], "weight": 0.7, "name": "winter-campaign"},
            {"type": "max_per_category", "column": "category", "limit": 1},
            {"type": "promote", "items": ["e"], "slots": [3]},
        ],
        k=4,
        user=user,
    )
    # a was bought; b and h are out of stock; f is a card. Left: c 6, d 5, e 4, g 2, scaled
    # over those to c 1, d .75, e .5, g 0; + 0.2 x price (scaled (p - 1) / 7, g has none):
    # c 1.057, d .836, e .614, g 0; + 0.7 for g: g .7 passes e. The cap keeps one mug (d, not
    # e); the promotion pins e at slot 3 and, the cap re-applied, d gives way. Three items
    # remain for k = 4.
    assert IDS[ranked.items].tolist() == ["c", "g", "e"]
    assert ranked.reasons == ["model", "boosted:winter-campaign", "promoted:promote"]
    assert ranked.available == 3
    assert ranked.rank_scores == pytest.approx([1 + 0.2 * 2 / 7, 0.7, None])
    assert [t.rule for t in ranked.trace] == [
        "exclude_seen",
        "filter-in_stock",
        "filter-category",
        "boost-price",
        "winter-campaign",
        "max_per_category-category",
        "promote",
    ]
    assert [t.dropped for t in ranked.trace] == [1, 2, 1, 0, 0, 1, 1]
    promote = ranked.trace[-1]
    assert (IDS[promote.removed].tolist(), IDS[promote.added].tolist()) == (["d"], ["e"])
    assert [(IDS[i], a, b) for i, a, b in promote.moved] == [("g", 3, 2)]
    assert [t.touched for t in ranked.trace] == [True, True, True, False, True, True, True]


def test_static_pass_fraction() -> None:
    cfg = RecommendConfig.model_validate(
        {
            "exclude_seen": [],
            "rules": [
                {"type": "filter", "column": "in_stock", "equals": True},
                {"type": "filter", "column": "price", "max": 4},
            ],
        }
    )
    rules = compile_rules(cfg.effective_rules, CATALOGUE)
    assert static_pass_fraction(rules, len(CATALOGUE)) == 3 / 8  # a, c, d
