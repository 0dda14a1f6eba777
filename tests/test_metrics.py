"""Metric functions against hand-worked values and an independent, loop-based implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from reco_cli.metrics import (
    PAD,
    bootstrap_ci,
    hit_matrix,
    list_metrics,
    per_user_metrics,
    top_k,
)


def positives(rows: list[set[int]], n_items: int) -> sp.csr_matrix:
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in sorted(items)]
    return sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(len(rows), n_items))


def metrics_for(recs: list[list[int]], pos: list[set[int]], k: int, n_items: int = 10):
    matrix = np.array(recs, dtype=np.int64)
    hits = hit_matrix(matrix, positives(pos, n_items))
    n_pos = np.array([len(p) for p in pos])
    return {name: values.tolist() for name, values in per_user_metrics(hits, n_pos, k).items()}


def test_fewer_positives_than_k_by_hand() -> None:
    # Positives {1, 3}; list 3, 5, 1, 7: hits at ranks 1 and 3.
    m = metrics_for([[3, 5, 1, 7]], [{1, 3}], k=4)
    assert m["precision"] == [pytest.approx(2 / 4)]
    assert m["recall"] == [pytest.approx(1.0)]
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3)  # ideal over min(k, P) = 2 ranks
    assert m["ndcg"] == [pytest.approx(dcg / idcg)]  # 0.9197
    assert m["map"] == [pytest.approx((1 / 1 + 2 / 3) / 2)]
    assert m["mrr"] == [pytest.approx(1.0)]
    assert m["hit_rate"] == [1.0]


def test_first_hit_at_rank_two_by_hand() -> None:
    m = metrics_for([[5, 1, 2]], [{1}], k=3)
    assert m["precision"] == [pytest.approx(1 / 3)]
    assert m["recall"] == [1.0]
    assert m["ndcg"] == [pytest.approx(1 / math.log2(3))]  # 0.6309
    assert m["map"] == [pytest.approx(0.5)]
    assert m["mrr"] == [0.5]


def test_all_positives_found_scores_one() -> None:
    m = metrics_for([[3, 1]], [{1, 3}], k=2)
    assert all(v == [pytest.approx(1.0)] for v in m.values())


def test_more_positives_than_k_caps_the_ideal() -> None:
    # 5 positives, k = 2, both slots hit: ndcg and map are 1 (ideal over min(k, P) = 2), recall 2/5.
    m = metrics_for([[0, 1]], [{0, 1, 2, 3, 4}], k=2)
    assert m["ndcg"] == [pytest.approx(1.0)]
    assert m["map"] == [pytest.approx(1.0)]
    assert m["recall"] == [pytest.approx(0.4)]


def test_user_without_positives_is_nan_and_not_averaged() -> None:
    m = metrics_for([[0, 1], [0, 1]], [set(), {1}], k=2)
    assert all(math.isnan(v[0]) for v in m.values())
    assert m["recall"][1] == 1.0


def test_short_list_precision_divides_by_k() -> None:
    # Only one item could be recommended (the rest padded): precision@5 = 1/5, not 1/1.
    m = metrics_for([[4, PAD, PAD, PAD, PAD]], [{4}], k=5)
    assert m["precision"] == [pytest.approx(0.2)]
    assert m["recall"] == [1.0]


def test_k_beyond_list_width_counts_misses() -> None:
    m = metrics_for([[4, 2]], [{4, 9}], k=5)
    assert m["precision"] == [pytest.approx(1 / 5)]
    assert m["recall"] == [pytest.approx(0.5)]


def test_duplicate_recommendations_are_rejected() -> None:
    with pytest.raises(ValueError, match="repeats item 3"):
        metrics_for([[1, 2], [3, 3]], [{1}, {3}], k=2)


def test_padding_is_not_a_duplicate() -> None:
    metrics_for([[1, PAD, PAD]], [{1}], k=3)


def test_list_metrics_by_hand() -> None:
    share = np.array([0.5, 0.25, 0.125, 0.125])
    got = list_metrics(np.array([[0, 1], [0, 2]]), 2, share)
    assert got["coverage"] == pytest.approx(3 / 4)
    assert got["novelty"] == pytest.approx(((1 + 2) / 2 + (1 + 3) / 2) / 2)
    assert got["mean_popularity"] == pytest.approx(((0.5 + 0.25) / 2 + (0.5 + 0.125) / 2) / 2)


# --- an independent implementation, straight from the textbook definitions -------------------


def naive(rec: list[int], pos: set[int], k: int) -> dict[str, float]:
    rec = [i for i in rec[:k] if i != PAD]
    hits = [1 if i in pos else 0 for i in rec]
    dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
    idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(pos))))
    ap, found = 0.0, 0
    for r, h in enumerate(hits):
        if h:
            found += 1
            ap += found / (r + 1)
    first = next((r for r, h in enumerate(hits) if h), None)
    return {
        "precision": sum(hits) / k,
        "recall": sum(hits) / len(pos),
        "ndcg": dcg / idcg,
        "map": ap / min(k, len(pos)),
        "mrr": 0.0 if first is None else 1 / (first + 1),
        "hit_rate": float(sum(hits) > 0),
    }


@pytest.mark.parametrize("seed", range(5))
def test_matches_naive_implementation_on_random_inputs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_users, n_items, width = 60, 40, 15
    recs = np.full((n_users, width), PAD, dtype=np.int64)
    pos: list[set[int]] = []
    for u in range(n_users):
        length = int(rng.integers(0, width + 1))
        recs[u, :length] = rng.choice(n_items, size=length, replace=False)
        pos.append(set(rng.choice(n_items, size=int(rng.integers(1, 12)), replace=False).tolist()))
    hits = hit_matrix(recs, positives(pos, n_items))
    for k in (1, 5, 10, 20):
        got = per_user_metrics(hits, np.array([len(p) for p in pos]), k)
        for u in range(n_users):
            want = naive(recs[u].tolist(), pos[u], k)
            for name, value in want.items():
                assert got[name][u] == pytest.approx(value), (name, k, u)


# --- the ranking step ---------------------------------------------------------------------------


def test_top_k_matches_a_full_sort_and_never_returns_excluded() -> None:
    rng = np.random.default_rng(7)
    scores = rng.normal(size=(30, 50))
    excluded = sp.random(30, 50, density=0.3, format="csr", random_state=3)
    recs = top_k(scores.copy(), excluded, 10)
    dense_ex = excluded.toarray() != 0
    for u in range(30):
        allowed = [i for i in np.argsort(-scores[u], kind="stable") if not dense_ex[u, i]]
        assert recs[u].tolist() == allowed[:10]
        assert not dense_ex[u, recs[u]].any()


def test_top_k_ties_go_to_the_lower_index_and_pads_when_all_excluded() -> None:
    scores = np.array([[1.0, 2.0, 2.0, 0.5], [1.0, 1.0, 1.0, 1.0]])
    excluded = sp.csr_matrix(np.array([[0, 0, 0, 0], [1, 1, 1, 0]]))
    recs = top_k(scores, excluded, 3)
    assert recs.tolist() == [[1, 2, 0], [3, PAD, PAD]]


def test_bootstrap_interval() -> None:
    assert bootstrap_ci(np.full(50, 0.3), 200, seed=1) == pytest.approx((0.3, 0.3))
    values = np.random.default_rng(0).random(400)
    lo, hi = bootstrap_ci(values, 500, seed=1) or (0.0, 0.0)
    assert lo < values.mean() < hi
    assert hi - lo == pytest.approx(2 * 1.96 * values.std() / np.sqrt(400), rel=0.2)
    assert bootstrap_ci(values, 0, seed=1) is None
