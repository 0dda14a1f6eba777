"""Ranking metrics and the top-k step, vectorised over users (numpy in, numpy out).

A recommendation matrix `recs` has one row per user and one column per rank: item indices,
best first, padded with -1 when fewer items could be recommended. Positives are a sparse
user x item matrix whose rows line up with `recs`. Relevance is binary. Definitions (also in
the README), for a user with P > 0 positives and hit_i = 1 when the item at rank i is a positive:

    precision@k = sum_{i<=k} hit_i / k                 (k, even when the list is shorter)
    recall@k    = sum_{i<=k} hit_i / P
    ndcg@k      = sum_{i<=k} hit_i / log2(i + 1)  /  sum_{i<=min(k,P)} 1 / log2(i + 1)
    map@k       = sum_{i<=k} hit_i * precision@i  /  min(k, P)
    mrr@k       = 1 / (rank of the first hit), 0 when there is none in the top k
    hit_rate@k  = 1 when there is at least one hit in the top k, else 0

Each is averaged over the users that have at least one positive. Over all lists at k:
coverage@k = distinct recommended items / catalogue size; with share(i) = the fraction of
training users who interacted with item i, novelty@k = the mean over users of the mean of
-log2 share(i) over their recommended items, and mean_popularity@k the same mean of share(i).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

PAD = -1


def top_k(scores: np.ndarray, excluded: sp.csr_matrix | None, k: int) -> np.ndarray:
    """The ranking step: per row, the k best-scoring columns, best first.

    Excluded cells and cells scored -inf are never returned (rows with fewer eligible items are
    padded with -1); ties go to the lower index, as in serving. `scores` is modified in place.
    Business rules can plug in here by adjusting `scores` or `excluded` before the cut.
    """
    n_rows, n_items = scores.shape
    k = min(k, n_items)
    if k <= 0 or n_rows == 0:
        return np.full((n_rows, max(k, 0)), PAD, dtype=np.int64)
    if excluded is not None and excluded.nnz:
        rows = np.repeat(np.arange(n_rows), np.diff(excluded.indptr))
        scores[rows, excluded.indices] = -np.inf
    if k < n_items:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n_items), (n_rows, n_items)).copy()
    best = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -best), axis=-1)
    recs = np.take_along_axis(part, order, axis=1).astype(np.int64)
    recs[np.take_along_axis(best, order, axis=1) == -np.inf] = PAD
    return recs


def check_unique(recs: np.ndarray) -> None:
    """Refuse lists that repeat an item: a duplicate would count one positive twice."""
    if recs.size == 0:
        return
    ordered = np.sort(recs, axis=1)
    dup = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] != PAD)
    if dup.any():
        row = int(np.flatnonzero(dup.any(axis=1))[0])
        item = int(ordered[row, 1:][dup[row]][0])
        raise ValueError(f"recommendation list {row} repeats item {item}")


def hit_matrix(recs: np.ndarray, positives: sp.csr_matrix) -> np.ndarray:
    """hits[u, r] = True when recs[u, r] is one of user u's positives."""
    if recs.shape[0] != positives.shape[0]:
        raise ValueError(f"{recs.shape[0]} recommendation lists for {positives.shape[0]} users")
    check_unique(recs)
    n_items = positives.shape[1]
    pos = positives.tocsr()
    pos_rows = np.repeat(np.arange(pos.shape[0], dtype=np.int64), np.diff(pos.indptr))
    pos_keys = pos_rows * n_items + pos.indices.astype(np.int64)
    rec_keys = np.arange(recs.shape[0], dtype=np.int64)[:, None] * n_items + recs
    return np.isin(rec_keys, pos_keys) & (recs != PAD)


def per_user_metrics(hits: np.ndarray, n_positives: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """The per-user metrics at k; users with no positive get NaN (they are not averaged)."""
    hits = hits[:, :k].astype(np.float64)
    if hits.shape[1] < k:  # shorter lists: the missing ranks are misses
        hits = np.pad(hits, ((0, 0), (0, k - hits.shape[1])))
    n_pos = n_positives.astype(np.float64)
    valid = n_pos > 0
    safe_pos = np.where(valid, n_pos, 1.0)
    ranks = np.arange(1, k + 1, dtype=np.float64)
    found = hits.cumsum(axis=1)
    n_hits = found[:, -1]
    discount = 1.0 / np.log2(ranks + 1.0)
    ideal = np.cumsum(discount)[np.clip(np.minimum(n_pos, k).astype(np.int64), 1, k) - 1]
    any_hit = n_hits > 0
    first = np.argmax(hits > 0, axis=1)
    out = {
        "precision": n_hits / k,
        "recall": n_hits / safe_pos,
        "ndcg": (hits * discount).sum(axis=1) / ideal,
        "map": (hits * found / ranks).sum(axis=1) / np.minimum(safe_pos, k),
        "mrr": np.where(any_hit, 1.0 / (first + 1.0), 0.0),
        "hit_rate": any_hit.astype(np.float64),
    }
    return {name: np.where(valid, values, np.nan) for name, values in out.items()}


def list_metrics(recs: np.ndarray, k: int, item_share: np.ndarray) -> dict[str, float]:
    """Coverage, novelty and mean popularity of the top-k lists (padding ignored)."""
    top = recs[:, :k]
    shown = top != PAD
    items = top[shown]
    if items.size == 0:
        return {"coverage": 0.0, "novelty": 0.0, "mean_popularity": 0.0}
    share = np.where(shown, item_share[np.where(shown, top, 0)], np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        info = -np.log2(share)
    has_any = shown.any(axis=1)
    return {
        "coverage": len(np.unique(items)) / len(item_share),
        "novelty": float(np.nanmean(info[has_any], axis=1).mean()),
        "mean_popularity": float(np.nanmean(share[has_any], axis=1).mean()),
    }


def bootstrap_ci(
    values: np.ndarray, resamples: int, seed: int, level: float = 0.95
) -> tuple[float, float] | None:
    """Percentile interval of the mean over users resampled with replacement."""
    values = values[~np.isnan(values)]
    if resamples <= 0 or values.size == 0:
        return None
    rng = np.random.default_rng(seed)
    n = values.size
    means = np.empty(resamples)
    step = max(1, 2_000_000 // n)  # bound memory: step x n indices at a time
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)
