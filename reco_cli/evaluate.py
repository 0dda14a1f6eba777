"""Offline evaluation: train on the past, score the held-out future, compare with baselines.

`run_evaluation` splits the ingested events (a global time cut, or each user's last N positive
events), trains a model on the training part with the config's settings into
`<workdir>/eval/` (the served `<workdir>/model` is never read or replaced), applies the same
exclusions `reco recommend` applies, and scores the served candidate path, exact full scoring
and three baselines on the same warm users. Users without training history get the fallback and
are scored in their own block. Gates then turn the warm-user point estimates into a verdict.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from . import __version__
from . import columns as C
from .bundle import INDEX_FILE, Bundle, load_bundle, model_pointer
from .config import EvaluateConfig, RecoConfig, parse_metric_key
from .errors import InputDataError, ModelBundleError
from .index import augment_user, load_index
from .interactions import WEIGHT_COL, Interactions, aggregate_pairs, exclusion_matrix
from .interactions import weighted_events as weigh
from .metrics import PAD, bootstrap_ci, hit_matrix, list_metrics, per_user_metrics, top_k
from .splits import positive_filter, split_events

EVAL_DIR = "eval"
RESULT_FILE = "evaluation.json"
METHODS = ("model", "exact", "popular", "repeat", "random")
# Cells of one score batch (users x items): 16 MB of float32 scores (argpartition's index
# array and copies make the peak about five times that).
_BATCH_CELLS = 1 << 22

Status = Callable[[str], None]


def eval_dir(workdir: Path) -> Path:
    return workdir / EVAL_DIR


# --- ground truth ------------------------------------------------------------------------------


@dataclass
class TestSet:
    users: np.ndarray  # model rows of the warm users scored, ascending
    positives: sp.csr_matrix  # len(users) x n_items, binary
    cold_users: np.ndarray  # ids of cold users with a positive on a model item
    cold_positives: sp.csr_matrix  # len(cold_users) x n_items, binary
    counts: dict[str, Any]


def _lookup(sorted_ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position of each value in sorted_ids, or -1."""
    if len(sorted_ids) == 0:
        return np.full(len(values), -1, dtype=np.int64)
    pos = np.searchsorted(sorted_ids, values).clip(max=len(sorted_ids) - 1)
    return np.where(sorted_ids[pos] == values, pos, -1).astype(np.int64)


def _keys(matrix: sp.csr_matrix) -> np.ndarray:
    rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
    return rows * matrix.shape[1] + matrix.indices.astype(np.int64)


def _binary(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    data = np.ones(len(rows), dtype=np.float32)
    matrix = sp.csr_matrix((data, (rows, cols)), shape=shape)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def build_test_set(
    test: pl.DataFrame,
    train: pl.DataFrame,
    inter: Interactions,
    excluded: sp.csr_matrix,
    cfg: RecoConfig,
) -> TestSet:
    """Classify every test (user, item) positive: cold user, excluded, cold item, or scored."""
    positives = test.filter(positive_filter(cfg))
    low = 0
    if cfg.positive_min_rating is not None:
        low = test.filter(
            (pl.col(C.EVENT_TYPE) == C.RATING_EVENT)
            & pl.col(C.EVENT_TYPE).is_in(cfg.evaluate.positive_events)
            & pl.col(C.USER_ID).is_not_null()
            & ~(pl.col(C.RATING) >= cfg.positive_min_rating).fill_null(False)
        ).height
    pairs = positives.select(C.USER_ID, C.ITEM_ID).unique().sort(C.USER_ID, C.ITEM_ID)
    user_ids = pairs.get_column(C.USER_ID).to_numpy().astype(str)
    item_ids = pairs.get_column(C.ITEM_ID).to_numpy().astype(str)
    u = _lookup(inter.user_ids, user_ids)
    i = _lookup(inter.item_ids, item_ids)
    n_items = len(inter.item_ids)
    warm, known = u >= 0, i >= 0
    keys = u * n_items + i
    is_excluded = warm & known & np.isin(keys, _keys(excluded))
    # Per event type, for the report (one pair can be excluded by several types).
    by_type = {}
    for event_type in cfg.recommend.exclude_seen:
        one = exclusion_matrix(train, inter.user_ids, inter.item_ids, [event_type])
        by_type[event_type] = int((warm & known & np.isin(keys, _keys(one))).sum())
    cold_item = warm & ~is_excluded & ~known
    scored = warm & ~is_excluded & known
    users, rows = np.unique(u[scored], return_inverse=True)
    cold_scorable = ~warm & known
    cold_users, cold_rows = np.unique(user_ids[cold_scorable], return_inverse=True)
    counts = {
        "positive_events": positives.height,
        "low_ratings_not_positive": low,
        "pairs": len(pairs),
        "users": len(np.unique(user_ids)),
        "items": len(np.unique(item_ids)),
        "warm_users": len(users),
        "warm_pairs": int(scored.sum()),
        "warm_users_without_scorable_positives": len(np.unique(u[warm])) - len(users),
        "excluded_pairs": int(is_excluded.sum()),
        "excluded_pairs_by_event_type": by_type,
        "cold_items": len(np.unique(item_ids[~known])),
        "cold_item_pairs": int(cold_item.sum()),
        "cold_users": len(np.unique(user_ids[~warm])),
        "cold_user_pairs": int((~warm).sum()),
        "cold_users_scored": len(cold_users),
        "cold_user_pairs_scored": int(cold_scorable.sum()),
    }
    return TestSet(
        users=users,
        positives=_binary(rows, i[scored], (len(users), n_items)),
        cold_users=cold_users,
        cold_positives=_binary(cold_rows, i[cold_scorable], (len(cold_users), n_items)),
        counts=counts,
    )


# --- scoring: one ranking step over (scores, exclusions) for every method ------------------------


def _batches(n_users: int, n_items: int) -> Iterator[slice]:
    size = max(1, _BATCH_CELLS // max(n_items, 1))
    for start in range(0, n_users, size):
        yield slice(start, min(n_users, start + size))


def rank_users(
    users: np.ndarray,
    n_items: int,
    k: int,
    excluded: sp.csr_matrix | None,
    scores_for: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """Top-k lists for model rows `users`, one batch of scores at a time."""
    width = min(k, n_items)
    recs = np.full((len(users), width), PAD, dtype=np.int64)
    for part in _batches(len(users), n_items):
        rows = users[part]
        mask = excluded[rows] if excluded is not None else None
        recs[part] = top_k(scores_for(rows), mask, width)
    return recs


def popular_scores(popular_order: np.ndarray) -> np.ndarray:
    """Distinct scores that reproduce the bundle's popularity order (ties by item index)."""
    n = len(popular_order)
    scores = np.empty(n, dtype=np.float64)
    scores[popular_order] = np.arange(n, 0, -1, dtype=np.float64)
    return scores


def repeat_bonus(train: pl.DataFrame, inter: Interactions, cfg: RecoConfig) -> sp.csr_matrix:
    """Per user, a score above any popularity score for their own past items, ordered by the
    aggregated weight, then by the most recent event, then by item index."""
    weighted = weigh(train, cfg.train)
    pairs = aggregate_pairs(weighted, cfg.train).join(
        weighted.group_by(C.USER_ID, C.ITEM_ID).agg(pl.col(C.TIMESTAMP).max().alias("__last")),
        on=[C.USER_ID, C.ITEM_ID],
    )
    u = _lookup(inter.user_ids, pairs.get_column(C.USER_ID).to_numpy().astype(str))
    i = _lookup(inter.item_ids, pairs.get_column(C.ITEM_ID).to_numpy().astype(str))
    w = pairs.get_column(WEIGHT_COL).to_numpy()
    last = pairs.get_column("__last").dt.epoch("s").fill_null(0).to_numpy()
    order = np.lexsort((i, -last, -w, u))
    u, i = u[order], i[order]
    starts = np.searchsorted(u, u, side="left")
    position = np.arange(len(u)) - starts  # 0 for each user's first item
    bonus = 2.0 + 1.0 / (1.0 + position)
    return sp.csr_matrix((bonus, (u, i)), shape=inter.shape)


@dataclass
class ServedStats:
    fell_short: int = 0


def served_scorer(
    index: Any,
    search_k: int,
    user_vectors: np.ndarray,
    item_vectors: np.ndarray,
    excluded: sp.csr_matrix,
    n_candidates: int,
    k: int,
    stats: ServedStats,
) -> Callable[[np.ndarray], np.ndarray]:
    """Exact scores on the index's candidates only (-inf elsewhere), as `reco recommend` does:
    over-fetch by the user's exclusions, and score everything when too few candidates survive."""
    n_items = len(item_vectors)

    def scores_for(rows: np.ndarray) -> np.ndarray:
        full = user_vectors[rows] @ item_vectors.T
        out = np.full_like(full, -np.inf)
        for r, u in enumerate(rows):
            banned = excluded.indices[excluded.indptr[u] : excluded.indptr[u + 1]]
            n = min(n_items, max(n_candidates, k) + len(banned))
            found = np.asarray(
                index.get_nns_by_vector(augment_user(user_vectors[u]), n, search_k=search_k),
                dtype=np.int64,
            )
            if len(np.setdiff1d(found, banned)) < min(k, n_items - len(banned)):
                stats.fell_short += 1
                found = np.arange(n_items)
            out[r, found] = full[r, found]
        return out

    return scores_for


def bundle_exclusions(bundle: Bundle) -> sp.csr_matrix:
    """The per-user exclusions `reco recommend` applies, as a users x items matrix."""
    indices = np.asarray(bundle["exclude_indices"])
    shape = (len(bundle["user_ids"]), len(bundle["item_ids"]))
    data = np.ones(len(indices), dtype=np.int8)
    return sp.csr_matrix((data, indices, np.asarray(bundle["exclude_indptr"])), shape=shape)


@dataclass
class Scored:
    recs: dict[str, np.ndarray]  # method -> top-k item indices per user (rows of `users`)
    fell_short: int  # users for whom the index returned too few candidates
    seconds: dict[str, float]


def score_methods(
    bundle: Bundle,
    train: pl.DataFrame,
    inter: Interactions,
    users: np.ndarray,
    k: int,
    cfg: RecoConfig,
) -> Scored:
    """Top-k lists for model rows `users` from the served path, exact scoring and baselines,
    all through the same ranking step and the bundle's exclusions."""
    started = time.perf_counter()
    user_vectors = np.asarray(bundle["user_vectors"])
    item_vectors = np.asarray(bundle["item_vectors"])
    n_items = len(item_vectors)
    excluded = bundle_exclusions(bundle)
    pop = popular_scores(np.asarray(bundle["popular_order"]))

    def exact_scores(rows: np.ndarray) -> np.ndarray:
        return user_vectors[rows] @ item_vectors.T

    recs: dict[str, np.ndarray] = {}
    recs["exact"] = rank_users(users, n_items, k, excluded, exact_scores)
    seconds = {"score_exact_s": time.perf_counter() - started}
    info = bundle.index_info
    stats = ServedStats()
    if info["serve_from"] == "annoy":
        index = load_index(bundle.path / INDEX_FILE, int(info["dimension"]), n_items)
        scorer = served_scorer(
            index,
            int(info["search_k"]),
            user_vectors,
            item_vectors,
            excluded,
            cfg.recommend.n_candidates,
            k,
            stats,
        )
        recs["model"] = rank_users(users, n_items, k, excluded, scorer)
        index.unload()
    else:
        recs["model"] = recs["exact"]
    seconds["score_served_s"] = time.perf_counter() - started - seconds["score_exact_s"]
    recs["popular"] = rank_users(
        users, n_items, k, excluded, lambda rows: np.tile(pop, (len(rows), 1))
    )
    bonus = repeat_bonus(train, inter, cfg)
    base = pop / (n_items + 1)  # below 1: past items (bonus > 2) always come first

    def repeat_scores(rows: np.ndarray) -> np.ndarray:
        scores = np.tile(base, (len(rows), 1))
        own = bonus[rows]
        scores[np.repeat(np.arange(len(rows)), np.diff(own.indptr)), own.indices] = own.data
        return scores

    recs["repeat"] = rank_users(users, n_items, k, excluded, repeat_scores)
    rng = np.random.default_rng(cfg.seed)
    recs["random"] = rank_users(
        users, n_items, k, excluded, lambda rows: rng.random((len(rows), n_items))
    )
    total = time.perf_counter() - started
    seconds["score_baselines_s"] = total - seconds["score_exact_s"] - seconds["score_served_s"]
    return Scored(recs, stats.fell_short, {key: round(v, 3) for key, v in seconds.items()})


# --- metrics per method ------------------------------------------------------------------------


def summarise(
    recs: np.ndarray, positives: sp.csr_matrix, ks: list[int], item_share: np.ndarray
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Mean metrics at each k, and the per-user values (for the bootstrap)."""
    hits = hit_matrix(recs, positives)
    n_pos = np.diff(positives.indptr)
    means: dict[str, float] = {}
    per_user: dict[str, np.ndarray] = {}
    for k in ks:
        for name, values in per_user_metrics(hits, n_pos, k).items():
            per_user[f"{name}@{k}"] = values
            means[f"{name}@{k}"] = float(np.nanmean(values)) if len(values) else float("nan")
        for name, value in list_metrics(recs, k, item_share).items():
            means[f"{name}@{k}"] = value
    return means, per_user


def lift(model: float, baseline: float) -> float:
    """model / baseline - 1; +inf when only the baseline is 0, 0 when both are."""
    if baseline == 0:
        return 0.0 if model == 0 else float("inf")
    return model / baseline - 1


# --- gates -------------------------------------------------------------------------------------


def load_saved_run(path: Path) -> dict[str, Any]:
    """An earlier evaluation.json (or `reco evaluate --format json` output) for --against."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputDataError(f"--against: {str(path)!r} not found") from None
    except IsADirectoryError:
        raise InputDataError(f"--against: {str(path)!r} is a folder; pass a JSON file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputDataError(f"--against: {str(path)!r} is not JSON ({exc})") from None
    problem = _saved_run_problem(saved)
    if problem:
        raise InputDataError(
            f"--against: {str(path)!r} is not a reco evaluation ({problem}); pass the "
            "evaluation.json of an earlier `reco evaluate` or its --format json output"
        )
    return saved


def _saved_run_problem(saved: Any) -> str | None:
    """What makes a parsed JSON document unusable as a saved run (None when it is usable)."""
    if not isinstance(saved, dict):
        return "not an object"
    methods = saved.get("methods")
    if not isinstance(methods, dict) or not isinstance(methods.get("model"), dict):
        return "no methods.model"
    for name, metrics in methods.items():
        if not isinstance(metrics, dict):
            return f"methods.{name} is not an object"
        for key, value in metrics.items():
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                return f"methods.{name}.{key} is not a number"
    for section in ("data", "split"):
        if section in saved and not isinstance(saved[section], dict):
            return f"{section} is not an object"
    return None


def _gate(
    gate: str, kind: str, value: float, bound: str, limit: float, ok: bool, detail: str = ""
) -> dict[str, Any]:
    shown = f"{value:+.4f}" if kind != "absolute" and np.isfinite(value) else f"{value:.4f}"
    relation = {"min": (">=", "is below"), "max": ("<=", "is above")}.get(
        bound, ("within", "exceeds")
    )[0 if ok else 1]
    return {
        "gate": gate,
        "kind": kind,
        "value": _finite(value),
        "bound": bound,
        "limit": limit,
        "passed": bool(ok),
        "detail": detail,
        "message": f"{gate}: {shown} {relation} {bound} {limit:g}"
        + (f" ({detail})" if detail else ""),
    }


def check_gates(
    methods: dict[str, dict[str, float]],
    ev: EvaluateConfig,
    saved: dict[str, Any] | None = None,
    saved_name: str = "the saved run",
) -> list[dict[str, Any]]:
    """Every configured bound, checked on the model's warm-user point estimates."""
    results: list[dict[str, Any]] = []
    model = methods["model"]
    drops: list[tuple[str, float]] = []
    for key, gate in ev.gates.items():
        base, metric, k = parse_metric_key(key)
        name = f"{metric}@{k}"
        if base is None:
            value, kind, detail = model[name], "absolute", ""
        else:
            value, kind = lift(model[name], methods[base][name]), "lift"
            detail = f"model {model[name]:.4f} vs {base} {methods[base][name]:.4f}"
        if gate.min is not None:
            results.append(_gate(key, kind, value, "min", gate.min, value >= gate.min, detail))
        if gate.max is not None:
            results.append(_gate(key, kind, value, "max", gate.max, value <= gate.max, detail))
        if gate.max_drop is not None:
            drops.append((name, gate.max_drop))
    if saved is None:
        return results
    before = saved["methods"]["model"]
    for name, max_drop in drops or [(ev.headline, ev.max_drop)]:
        if before.get(name) is None:
            raise InputDataError(
                f"--against: {saved_name} has no {name} (it was evaluated at other k or "
                "metrics); compare runs evaluated with the same evaluate.k"
            )
        drop = before[name] - model[name]
        detail = f"{model[name]:.4f} now, {before[name]:.4f} in {saved_name}"
        ok = drop <= max_drop + 1e-12
        results.append(_gate(f"{name} drop", "against", drop, "max_drop", max_drop, ok, detail))
    return results


def failed_gates(result: dict[str, Any]) -> list[str]:
    return [f"gate failed: {g['message']}" for g in result["gates"] if not g["passed"]]


def _finite(value: float) -> float | None:
    """JSON has no infinity: a lift over a zero baseline is written as null."""
    return round(float(value), 6) if np.isfinite(value) else None


def _rounded(metrics: dict[str, float]) -> dict[str, float | None]:
    return {key: _finite(value) for key, value in metrics.items()}


# --- orchestration -----------------------------------------------------------------------------


def run_evaluation(
    cfg: RecoConfig, against: Path | None = None, status: Status | None = None
) -> dict[str, Any]:
    """Split, train in <workdir>/eval/, score every method, check the gates; return the report
    (also written to <workdir>/eval/evaluation.json)."""
    from .model import (
        check_item_columns,
        data_fingerprint,
        fit,
        read_events,
        read_items,
        write_bundle,
    )
    from .publish import atomic_write_text, prepare_workdir, publish_version

    say = status or (lambda _msg: None)
    ev = cfg.evaluate
    saved = load_saved_run(against) if against is not None else None
    timings: dict[str, float] = {}
    clock = started = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    cfg.data.require_events("reco evaluate")
    workdir = cfg.workdir_path
    prepare_workdir(eval_dir(workdir), "model", ModelBundleError)
    events = read_events(workdir)
    items = read_items(workdir)
    check_item_columns(items, cfg)
    say("splitting")
    split = split_events(events, cfg)
    lap("split_s")
    say(f"training on {split.train.height:,} events before the cut")
    fitted = fit(split.train, items, cfg)
    lap("train_s")
    # The evaluation model is a complete bundle of its own, built exactly as `reco train` builds
    # one (exclusions, popularity, index and the candidate-path decision), from the past only.
    say("building the candidate index")
    out_dir = eval_dir(workdir)
    fingerprint = data_fingerprint(workdir, events)

    def build(out: Path) -> None:
        write_bundle(out, fitted, split.train, items, cfg, fingerprint)

    bundle_dir = publish_version(out_dir / "models", model_pointer(out_dir), build, keep=1)
    bundle = load_bundle(out_dir, location=bundle_dir)
    lap("index_s")

    say("scoring")
    inter = fitted.interactions
    test = build_test_set(split.test, split.train, inter, bundle_exclusions(bundle), cfg)
    counts = test.counts
    if len(test.users) == 0:
        raise InputDataError(
            f"no warm user has a test positive to score ({counts['pairs']} test pairs: "
            f"{counts['cold_user_pairs']} of cold users, {counts['excluded_pairs']} excluded, "
            f"{counts['cold_item_pairs']} on cold items); check evaluate.positive_events "
            f"{ev.positive_events} and the split"
        )
    scored = score_methods(bundle, split.train, inter, test.users, max(ev.k), cfg)
    timings.update(scored.seconds)
    clock = time.perf_counter()

    say("computing metrics")
    share = np.asarray((inter.weights > 0).sum(axis=0)).ravel() / max(inter.shape[0], 1)
    methods: dict[str, dict[str, float]] = {}
    intervals: dict[str, list[float] | None] = {}
    for name in METHODS:
        methods[name], per_user = summarise(scored.recs[name], test.positives, ev.k, share)
        ci = bootstrap_ci(per_user[ev.headline], ev.bootstrap, cfg.seed)
        intervals[name] = [round(v, 6) for v in ci] if ci else None
    pop_order = np.asarray(bundle["popular_order"])
    cold_block = _cold_users(test, pop_order, max(ev.k), ev.k, share, cfg)
    lap("metrics_s")
    rules_block = None
    if ev.rule_impact and cfg.recommend.effective_rules:
        say("measuring the business rules")
        rules_block = rule_impact(bundle, test, ev.k, share, cfg)
        lap("rules_s")

    gates = check_gates(methods, ev, saved, str(against) if against else "the saved run")
    timings["total_s"] = round(time.perf_counter() - started, 3)
    index_info = bundle.index_info
    result: dict[str, Any] = {
        "reco_version": __version__,
        "created_at": datetime.now(UTC).isoformat(),
        "data": fingerprint,
        "split": split.info,
        "counts": {
            "train_users": inter.shape[0],
            "train_items": inter.shape[1],
            "train_interactions": int(inter.weights.nnz),
        }
        | counts,
        "exclusions": {
            "exclude_seen": list(cfg.recommend.exclude_seen),
            "removed_test_pairs": counts["excluded_pairs_by_event_type"],
            "removed_test_pairs_total": counts["excluded_pairs"],
        },
        "candidate_path": {k: v for k, v in index_info.items() if k != "tried"}
        | {"index_fell_short_users": scored.fell_short},
        "k": ev.k,
        "headline": {
            "metric": ev.headline,
            "value": round(methods["model"][ev.headline], 6),
            "level": 0.95,
            "resamples": ev.bootstrap,
            "ci95": intervals,
        },
        "methods": {name: _rounded(values) for name, values in methods.items()},
        "lift": {
            base: _rounded(
                {key: lift(methods["model"][key], v) for key, v in methods[base].items()}
            )
            for base in METHODS[1:]
        },
        "cold_users": cold_block,
        "rules": rules_block,
        "gates": gates,
        "passed": all(g["passed"] for g in gates),
        "config": {
            "evaluate": ev.model_dump(mode="json"),
            "train": cfg.train.model_dump(mode="json"),
            "recommend": cfg.recommend.model_dump(mode="json"),
            "index": cfg.index.model_dump(mode="json"),
            "seed": cfg.seed,
        },
        "model_dir": str(bundle_dir),
        "timings": timings,
        "notes": _notes(
            split.info, index_info, methods, ev.k, scored.fell_short, saved, against, fingerprint
        )
        + _rule_notes(cfg, rules_block),
    }
    atomic_write_text(out_dir / RESULT_FILE, json.dumps(result, indent=2, default=str) + "\n")
    result["output"] = str(out_dir / RESULT_FILE)
    return result


# --- business rules: leave one rule out -------------------------------------------------------


def served_lists(bundle: Bundle, users: np.ndarray, rules: list[Any], k: int) -> np.ndarray:
    """What `reco recommend` serves model rows `users` with these rules: item indices, PAD
    where a list is shorter than k."""
    from .rank import Recommender

    recommender = Recommender(bundle, rules=rules)
    recs = np.full((len(users), k), PAD, dtype=np.int64)
    for row, u in enumerate(users.tolist()):
        ranked, _, _ = recommender.rank_user(int(u), k, trace=False)
        recs[row, : len(ranked.items)] = ranked.items
    return recs


def rule_impact(
    bundle: Bundle, test: TestSet, ks: list[int], share: np.ndarray, cfg: RecoConfig
) -> dict[str, Any]:
    """Metrics of the served lists (the served candidate path, then every rule of
    recommend.rules) on the warm test users, and again with each rule left out in turn. A
    rule's delta is (all rules) - (all but this rule): what it gains (> 0) or costs (< 0) in
    relevance; `lists_changed` is the share of users whose top k (the headline's k) would differ
    without it. A rule acts through the others too: a filter that drops low-ranked candidates
    changes the per-request scale a later boost works on, so it can change lists it never
    touched itself."""
    rules = cfg.recommend.effective_rules
    users = test.users
    kmax = max(ks)
    k_seen = parse_metric_key(cfg.evaluate.headline)[2]
    # One ranking at the largest k serves every cut-off: a shorter list is its prefix.
    served = served_lists(bundle, users, rules, kmax)
    with_all, per_user_all = summarise(served, test.positives, ks, share)
    headline = cfg.evaluate.headline
    n = max(len(users), 1)
    out = []
    for i, rule in enumerate(rules):
        without_recs = served_lists(bundle, users, rules[:i] + rules[i + 1 :], kmax)
        without, per_user = summarise(without_recs, test.positives, ks, share)
        # Paired over the same users: the interval of the mean per-user difference.
        ci = bootstrap_ci(
            per_user_all[headline] - per_user[headline], cfg.evaluate.bootstrap, cfg.seed
        )
        a, b = served[:, :k_seen], without_recs[:, :k_seen]
        changed = (a != b).any(axis=1)
        swapped = [len(set(x[x != PAD]) - set(y[y != PAD])) for x, y in zip(a, b, strict=True)]
        out.append(
            {
                "name": rule.name,
                "type": rule.type,
                "key": rule.path,
                "lists_changed": round(float(changed.sum()) / n, 4),
                "items_changed_per_list": round(sum(swapped) / n, 3),
                "without": _rounded(without),
                "delta": _rounded({key: with_all[key] - without[key] for key in with_all}),
                "delta_ci95": [round(v, 6) for v in ci] if ci else None,
            }
        )
    return {
        "users": len(users),
        "k": k_seen,
        "headline": headline,
        "all_rules": _rounded(with_all),
        "rules": out,
    }


def _rule_notes(cfg: RecoConfig, block: dict[str, Any] | None) -> list[str]:
    if block is None:
        return []
    notes = [
        "gates and the methods table judge the model (with recommend.exclude_seen only); the "
        "rules table shows what each business rule adds to or costs the served lists"
    ]
    if any(getattr(r, "lookback_days", None) for r in cfg.recommend.effective_rules):
        notes.append(
            "an exclude_seen rule has lookback_days: its lists may repeat older items, but the "
            "test set drops every earlier pair of recommend.exclude_seen, so those never count "
            "as hits"
        )
    return notes


def _notes(
    split_info: dict[str, Any],
    index_info: dict[str, Any],
    methods: dict[str, dict[str, float]],
    ks: list[int],
    fell_short: int,
    saved: dict[str, Any] | None,
    against: Path | None,
    fingerprint: dict[str, Any],
) -> list[str]:
    notes = list(split_info.pop("notes", []))
    if index_info["serve_from"] == "exact":
        notes.append("the served candidate path is exact scoring: model and exact are identical")
    else:
        key = f"recall@{max(ks)}"
        served, exact = methods["model"][key], methods["exact"][key]
        if exact > 0 and served < exact * 0.99:
            notes.append(
                f"the Annoy candidate stage loses {1 - served / exact:.0%} of exact scoring's "
                f"{key} ({served:.4f} against {exact:.4f}); index build-time recall@"
                f"{index_info['n_candidates']} was {index_info['recall']}"
            )
    if fell_short:
        notes.append(
            f"for {fell_short} users the index returned too few candidates after exclusions and "
            "the whole catalogue was scored (as reco recommend does)"
        )
    if saved is not None:
        if saved.get("data", {}).get("events_sha256") != fingerprint.get("events_sha256"):
            notes.append(f"{against} was evaluated on other events: the comparison mixes data")
        before = saved.get("split", {})
        if (before.get("rule"), before.get("cutoff")) != (
            split_info.get("rule"),
            split_info.get("cutoff"),
        ):
            notes.append(f"{against} used another split: the comparison mixes test sets")
    return notes


def _cold_users(
    test: TestSet,
    pop_order: np.ndarray,
    kmax: int,
    ks: list[int],
    share: np.ndarray,
    cfg: RecoConfig,
) -> dict[str, Any]:
    """Users with no training history get what serving gives them: the popular fallback."""
    fallback = cfg.recommend.fallback
    n = len(test.cold_users)
    block: dict[str, Any] = {
        "users": test.counts["cold_users"],
        "users_scored": n,
        "fallback": fallback,
        "metrics": None,
    }
    if n == 0:
        return block
    width = min(kmax, len(pop_order))
    if fallback == "popular":
        recs = np.tile(pop_order[:width].astype(np.int64), (n, 1))
    else:  # recommend.fallback: error -> these users get no list at all
        recs = np.full((n, width), PAD, dtype=np.int64)
    means, _ = summarise(recs, test.cold_positives, ks, share)
    block["metrics"] = _rounded(means)
    return block
