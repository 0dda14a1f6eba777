"""Candidate generation: an Annoy index over LightFM item vectors, or exact numpy scoring.

LightFM's score is user_emb . item_emb + user_bias + item_bias. With the biases folded in
(item [emb, bias, 1], user [emb, 1, user_bias]) it is one inner product. Annoy's `dot` metric
does badly on such vectors, so items are made equal-norm by appending sqrt(M^2 - |x|^2)
(0 for users) and indexed with the `angular` metric: for equal-norm items, cosine order is
inner-product order. The build measures recall against exact scoring and both latencies, and
the bundle serves from Annoy only when it reaches the target recall faster than exact scoring.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

METRIC: Literal["angular"] = "angular"


@dataclass
class IndexDecision:
    serve_from: str  # "annoy" or "exact"
    metric: str
    dimension: int
    n_items: int
    n_trees: int
    search_k: int
    recall: float | None  # recall@n_candidates of the index against exact, on sampled users
    recall_at_k: float | None  # share of the exact top k found among the index's candidates
    n_candidates: int
    k: int
    latency_annoy_ms: float | None
    latency_exact_ms: float
    users_checked: int
    build_seconds: float
    reason: str
    tried: list[dict[str, float]]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def augment_items(item_vectors: np.ndarray) -> np.ndarray:
    """Append sqrt(M^2 - |x|^2) so every item has norm M (the largest item norm)."""
    norms_sq = np.einsum("ij,ij->i", item_vectors, item_vectors, dtype=np.float64)
    extra = np.sqrt(np.maximum(norms_sq.max(initial=0.0) - norms_sq, 0.0))
    return np.hstack([item_vectors, extra[:, None]]).astype(np.float32)


def augment_user(user_vector: np.ndarray) -> np.ndarray:
    return np.append(user_vector, np.float32(0.0)).astype(np.float32)


def check_finite(vectors: np.ndarray, ids: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        from .errors import TrainingDivergedError

        shown = ", ".join(repr(str(i)) for i in ids[bad][:5])
        raise TrainingDivergedError(
            f"{int(bad.sum())} {what} vectors are not finite (e.g. {shown}); the model diverged: "
            "lower train.learning_rate or enable train.normalize_features"
        )


def exact_top(user_vector: np.ndarray, item_vectors: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n best-scoring items, best first (ties broken by index for stability)."""
    scores = item_vectors @ user_vector
    n = min(n, len(scores))
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    part = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
    order = np.lexsort((part, -scores[part]))
    return part[order]


def build_index(
    item_vectors: np.ndarray,
    path: Path,
    n_trees: int,
    seed: int,
    n_jobs: int,
) -> float:
    """Build and save the angular index over augmented vectors; returns build seconds."""
    from annoy import AnnoyIndex

    augmented = augment_items(item_vectors)
    n_items, dim = augmented.shape
    # Keys are the model's dense item indices 0..n-1, never raw ids (which would make Annoy
    # allocate max(id)+1 slots).
    start = time.perf_counter()
    index = AnnoyIndex(dim, METRIC)
    index.set_seed(seed)
    for i in range(n_items):
        index.add_item(i, augmented[i])
    if index.get_n_items() != n_items:
        raise RuntimeError(f"index holds {index.get_n_items()} items, expected {n_items}")
    index.build(n_trees, n_jobs=n_jobs)
    index.save(str(path))
    index.unload()
    return time.perf_counter() - start


def load_index(path: Path, dimension: int, n_items: int):  # type: ignore[no-untyped-def]
    """Open an index with the manifest's dimension and metric (Annoy stores neither)."""
    from annoy import AnnoyIndex

    index = AnnoyIndex(dimension, METRIC)
    index.load(str(path), prefault=False)
    if index.get_n_items() != n_items or index.f != dimension:
        raise ValueError(
            f"index holds {index.get_n_items()} items of dimension {index.f}, "
            f"the manifest says {n_items} of dimension {dimension}"
        )
    return index


# Annoy must be at least this many times faster than exact scoring to be served: latency is
# noisy on a busy machine, and a margin keeps the choice (and so the output) stable run to run.
SPEED_MARGIN = 2.0


def _median_ms(timings: list[float]) -> float:
    return float(np.median(timings) * 1000) if timings else 0.0


def choose_path(
    index_path: Path | None,
    item_vectors: np.ndarray,
    user_vectors: np.ndarray,
    n_candidates: int,
    k: int,
    n_trees: int,
    search_k: int | str,
    target_recall: float,
    mode: str,
    check_users: int,
    seed: int,
    build_seconds: float,
) -> IndexDecision:
    """Measure the index against exact scoring on sampled users and decide what serves.

    Two recalls are measured per search_k: of the exact top n_candidates among Annoy's
    n_candidates (the candidate stage's own quality), and of the exact top k among them (what
    the served list loses, since stage 2 re-scores candidates exactly). Both must reach the
    target. Latencies are per-user medians.
    """
    n_items, dim = item_vectors.shape
    rng = np.random.default_rng(seed)
    n_check = min(check_users, len(user_vectors))
    sample = np.sort(rng.choice(len(user_vectors), size=n_check, replace=False))
    n = min(n_candidates, n_items)
    top = min(k, n)
    exact_lists = []
    exact_times = []
    for u in sample:
        start = time.perf_counter()
        exact_lists.append(exact_top(user_vectors[u], item_vectors, n))
        exact_times.append(time.perf_counter() - start)
    exact_ms = _median_ms(exact_times)
    base = dict(
        metric=METRIC,
        dimension=dim + 1,
        n_items=n_items,
        n_trees=n_trees,
        n_candidates=n,
        k=top,
        latency_exact_ms=round(exact_ms, 4),
        users_checked=n_check,
        build_seconds=round(build_seconds, 3),
    )
    if index_path is None:
        return IndexDecision(
            serve_from="exact",
            search_k=0,
            recall=None,
            recall_at_k=None,
            latency_annoy_ms=None,
            reason="index.mode is exact",
            tried=[],
            **base,
        )
    index = load_index(index_path, dim + 1, n_items)
    queries = [augment_user(user_vectors[u]) for u in sample]
    candidates = (
        [search_k] if isinstance(search_k, int) else [n * n_trees * f for f in (1, 2, 4, 8, 16, 32)]
    )
    tried: list[dict[str, float]] = []
    chosen: dict[str, float] | None = None
    for sk in candidates:
        hits = hits_top = 0
        times = []
        for q, exact in zip(queries, exact_lists, strict=True):
            start = time.perf_counter()
            found = set(index.get_nns_by_vector(q, n, search_k=int(sk)))
            times.append(time.perf_counter() - start)
            hits += len(found.intersection(exact.tolist()))
            hits_top += len(found.intersection(exact[:top].tolist()))
        entry = {
            "search_k": int(sk),
            "recall": round(hits / max(n * n_check, 1), 4),
            "recall_at_k": round(hits_top / max(top * n_check, 1), 4),
            "latency_ms": round(_median_ms(times), 4),
        }
        tried.append(entry)
        if min(entry["recall"], entry["recall_at_k"]) >= target_recall:
            chosen = entry
            break
    index.unload()
    best = chosen or max(tried, key=lambda e: (min(e["recall"], e["recall_at_k"]), -e["search_k"]))
    if mode == "annoy":
        serve, reason = "annoy", "index.mode is annoy"
    elif chosen is None:
        serve = "exact"
        reason = (
            f"Annoy reached recall@{n} {best['recall']:.3f} / recall@{top} "
            f"{best['recall_at_k']:.3f} < target {target_recall} at every search_k tried"
        )
    elif chosen["latency_ms"] * SPEED_MARGIN > exact_ms:
        serve = "exact"
        reason = (
            f"exact scoring ({exact_ms:.3f} ms/user) is not {SPEED_MARGIN:g}x slower than Annoy "
            f"at the target recall ({chosen['latency_ms']:.3f} ms/user)"
        )
    else:
        serve = "annoy"
        reason = (
            f"Annoy reaches recall {chosen['recall']:.3f} (top-{top}: {chosen['recall_at_k']:.3f}) "
            f"at {chosen['latency_ms']:.3f} ms/user, over {SPEED_MARGIN:g}x faster than exact "
            f"scoring ({exact_ms:.3f} ms/user)"
        )
    return IndexDecision(
        serve_from=serve,
        search_k=int(best["search_k"]),
        recall=best["recall"],
        recall_at_k=best["recall_at_k"],
        latency_annoy_ms=best["latency_ms"],
        reason=reason,
        tried=tried,
        **base,
    )
