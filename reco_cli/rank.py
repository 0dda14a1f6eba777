"""Serving: candidates (Annoy or exact) -> exact LightFM scores -> business rules -> top k.

Imports numpy, annoy, the standard library and the config models only: answering a user stays
light (no polars, scikit-learn or LightFM).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .bundle import INDEX_FILE, Bundle, load_bundle
from .errors import ModelBundleError, UnknownUserError
from .index import METRIC, augment_user, exact_top, load_index
from .rules import (
    MODEL,
    POPULAR,
    Catalogue,
    ExcludeSeenRule,
    Ranked,
    Rule,
    RuleColumnError,
    RuleTrace,
    Seen,
    UserContext,
    apply_rules,
    compile_rules,
    static_pass_fraction,
)

if TYPE_CHECKING:
    from .config import AnyRule

__all__ = ["MODEL", "POPULAR", "Recommendation", "RecommendationList", "Recommender"]

# How a reason names what the user did with the nearest item of their history.
VERBS = {
    "view": "viewed {}",
    "click": "clicked {}",
    "add_to_cart": "added {} to your cart",
    "favourite": "saved {} as a favourite",
    "purchase": "bought {}",
    "rating": "rated {}",
    "search": "searched for {}",
}


@dataclass
class Recommendation:
    rank: int
    item_id: str
    score: float | None  # the model's score (popularity for the fallback)
    reason: str  # model | popular | boosted:<rule> | promoted:<rule>
    title: str | None = None
    category: str | None = None
    rank_score: float | None = None  # what the list is ordered by: scaled score + boosts
    because: str | None = None  # the item of the user's history nearest to this one
    explanation: str | None = None  # e.g. "because you bought JUMBO BAG RED RETROSPOT"


@dataclass
class RecommendationList:
    user_id: str
    items: list[Recommendation]
    fallback: bool
    candidate_path: str
    model_version: str
    notes: list[str] = field(default_factory=list)
    trace: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, explain: bool = False) -> dict[str, Any]:
        out = {
            "user_id": self.user_id,
            "fallback": self.fallback,
            "candidate_path": self.candidate_path,
            "model_version": self.model_version,
            "notes": self.notes,
            "items": [asdict(r) for r in self.items],
        }
        if explain:
            out["rules"] = self.trace
        return out


class Recommender:
    """Answers users from one bundle. `rules` are the validated rule configs to apply (by
    default the ones in the bundle's config snapshot); they are checked against what the bundle
    carries (item columns, per-event-type history) once, here."""

    def __init__(
        self,
        bundle: Bundle,
        n_candidates: int | None = None,
        rules: Sequence[AnyRule] | None = None,
    ) -> None:
        self.bundle = bundle
        cfg = bundle.manifest["config"]["recommend"]
        self.n_candidates = n_candidates or int(cfg["n_candidates"])
        # Plain ndarray views of the mapped files: no copy, and no np.memmap overhead on the
        # many small reads a request makes.
        self.user_ids = np.asarray(bundle["user_ids"])
        self.item_ids = np.asarray(bundle["item_ids"])
        self.user_vectors = np.asarray(bundle["user_vectors"])
        self.item_vectors = np.asarray(bundle["item_vectors"])
        info = bundle.index_info
        self.serve_from: str = info["serve_from"]
        self.search_k = int(info.get("search_k") or -1)
        self._index: Any = None
        if self.serve_from == "annoy":
            self._open_index(info)
        self.catalogue = self._catalogue()
        if rules is None:
            from .config import RecommendConfig

            rules = RecommendConfig.model_validate(cfg).effective_rules
        self.rule_configs = list(rules)
        self.rules = self._compile(self.rule_configs)
        self.seen_events = sorted(
            {e for r in self.rules if isinstance(r, ExcludeSeenRule) for e in r.events}
        )
        self._check_seen_arrays()
        self._seen_arrays = {
            e: tuple(
                np.asarray(bundle[f"seen_{e}_{part}"]) for part in ("indptr", "indices", "last")
            )
            for e in self.seen_events
        }
        last = bundle.manifest.get("data", {}).get("last_event")
        self.now = datetime.fromisoformat(last).timestamp() if last else None
        self.pass_fraction = static_pass_fraction(self.rules, len(self.item_ids))
        self.promoted = sum(len(getattr(r, "items", [])) for r in self.rules if r.type == "promote")

    @classmethod
    def open(
        cls, workdir: Path, verify: bool = True, rules: Sequence[AnyRule] | None = None
    ) -> Recommender:
        return cls(load_bundle(workdir, verify=verify), rules=rules)

    def _catalogue(self) -> Catalogue:
        columns = {}
        # Bundles from before the business rules kept only titles and categories.
        for column in ("title", "category"):
            if self.bundle.has(f"item_{column}"):
                columns[column] = np.asarray(self.bundle[f"item_{column}"])
        for column, meta in self.bundle.manifest.get("item_columns", {}).items():
            if self.bundle.has(meta["array"]):
                # A plain ndarray view of the same mapping: no copy, and no np.memmap
                # overhead on every element read.
                columns[column] = np.asarray(self.bundle[meta["array"]])
        return Catalogue(np.asarray(self.item_ids), columns)

    def _compile(self, configs: Sequence[AnyRule]) -> list[Rule]:
        try:
            return compile_rules(configs, self.catalogue)
        except RuleColumnError as exc:
            raise ModelBundleError(
                f"{exc.path}.column: the model bundle {self.bundle.path.name} has no numeric "
                f"item column {exc.column!r} (it has {exc.have}); run `reco ingest` and "
                "`reco train` with this config"
                if exc.column in exc.have
                else f"{exc.path}.column: the model bundle {self.bundle.path.name} has no item "
                f"column {exc.column!r} (it has {exc.have}); run `reco ingest` and `reco train` "
                "with this config"
            ) from None

    def _check_seen_arrays(self) -> None:
        stored = set(self.bundle.manifest.get("seen_event_types", []))
        for cfg in self.rule_configs:
            for event in getattr(cfg, "events", []) if cfg.type == "exclude_seen" else []:
                if event not in stored or not self.bundle.has(f"seen_{event}_indptr"):
                    raise ModelBundleError(
                        f"{cfg.path}: the model bundle {self.bundle.path.name} keeps no "
                        f"{event!r} history per user (it keeps {sorted(stored) or 'none'}); run "
                        "`reco train` with this config"
                    )

    def _open_index(self, info: dict[str, Any]) -> None:
        if info.get("metric") != METRIC:
            raise ModelBundleError(
                f"{self.bundle.path}: index metric {info.get('metric')!r} is not {METRIC!r}; "
                "rebuild with `reco train`"
            )
        expected_dim = self.item_vectors.shape[1] + 1
        if info.get("dimension") != expected_dim or info.get("n_items") != len(self.item_ids):
            raise ModelBundleError(
                f"{self.bundle.path}: manifest index dimension {info.get('dimension')} / items "
                f"{info.get('n_items')} do not match the item vectors ({expected_dim} / "
                f"{len(self.item_ids)}); rebuild with `reco train`"
            )
        try:
            self._index = load_index(
                self.bundle.path / INDEX_FILE, expected_dim, len(self.item_ids)
            )
        except (OSError, ValueError) as exc:
            raise ModelBundleError(
                f"{self.bundle.path}/{INDEX_FILE} cannot be used ({exc}); rebuild with `reco train`"
            ) from None

    # --- lookups ---------------------------------------------------------------------------

    def user_index(self, user_id: str) -> int | None:
        pos = int(np.searchsorted(self.user_ids, user_id))
        if pos < len(self.user_ids) and str(self.user_ids[pos]) == user_id:
            return pos
        return None

    def suggest_user(self, user_id: str) -> str | None:
        """A known id that differs only in case or surrounding spaces (only on the unknown path)."""
        wanted = user_id.strip().casefold()
        for known in self.user_ids:
            if str(known).casefold() == wanted:
                return str(known)
        return None

    def excluded_items(self, u: int) -> np.ndarray:
        """Everything the exclude_seen rules could exclude for user row u (no look-back)."""
        seen = [self._seen(u, e).items for e in self.seen_events]
        return np.unique(np.concatenate(seen)) if seen else np.empty(0, dtype=np.int64)

    def _seen(self, u: int, event: str) -> Seen:
        indptr, indices, last = self._seen_arrays[event]
        lo, hi = int(indptr[u]), int(indptr[u + 1])
        return Seen(indices[lo:hi].astype(np.int64), last[lo:hi].astype(np.int64))

    def user_context(self, u: int | None) -> UserContext:
        if u is None:
            return UserContext(now=self.now)
        return UserContext({e: self._seen(u, e) for e in self.seen_events}, self.now)

    # --- stages ----------------------------------------------------------------------------

    def candidates(self, u: int, n: int) -> np.ndarray:
        """Stage 1: up to n candidate item indices for user row u."""
        vector = np.asarray(self.user_vectors[u])
        if self._index is not None:
            found = self._index.get_nns_by_vector(augment_user(vector), n, search_k=self.search_k)
            return np.asarray(found, dtype=np.int64)
        return exact_top(vector, np.asarray(self.item_vectors), n)

    def score(self, u: int, items: np.ndarray) -> np.ndarray:
        """Stage 2: LightFM's exact score (biases included) for the given items."""
        return np.asarray(self.item_vectors[items] @ np.asarray(self.user_vectors[u]))

    def _fetch_size(self, k: int, n_seen: int) -> int:
        """Candidates to fetch so that the rules still leave k: room for the user's excluded
        items and promoted ones, scaled up by the share of the catalogue the filters let pass."""
        base = max(self.n_candidates, k) + n_seen + self.promoted
        return min(len(self.item_ids), math.ceil(base / max(self.pass_fraction, 1e-9)))

    def rank_user(self, u: int, k: int, trace: bool = True) -> tuple[Ranked, str, int]:
        """The rule engine's top k for model row u (what `recommend` serves, before ids, titles
        and reasons are attached), the candidate path used and the candidate pool's size.
        Offline evaluation calls this to measure exactly what is served."""
        user = self.user_context(u)
        n_seen = sum(len(s.items) for s in user.seen.values())
        n = self._fetch_size(k, n_seen)
        vector = np.asarray(self.user_vectors[u])

        def score_of(items: np.ndarray) -> np.ndarray:
            return self.score(u, items)

        def rank(cands: np.ndarray) -> Ranked:
            scores = self.score(u, cands)
            return apply_rules(self.rules, cands, scores, user, k, MODEL, score_of, trace)

        cands = self.candidates(u, n)
        ranked = rank(cands)
        path = self.serve_from
        if len(ranked.items) < k and len(cands) < len(self.item_ids):
            # The rules left fewer than k of the candidates: rank the whole catalogue instead.
            cands = exact_top(vector, np.asarray(self.item_vectors), len(self.item_ids))
            ranked = rank(cands)
            path = "exact (full catalogue: the rules left too few candidates)"
        return ranked, path, len(cands)

    def recommend(self, user_id: str, k: int, fallback: str = "popular") -> RecommendationList:
        user_id = user_id.strip()
        u = self.user_index(user_id)
        if u is None:
            return self._unknown(user_id, k, fallback)
        ranked, path, pool = self.rank_user(u, k)
        items = self._items(ranked, u)
        notes = self._short_note(ranked, k, pool)
        return RecommendationList(
            user_id, items, False, path, self.bundle.version, notes, self._trace(ranked.trace)
        )

    def _unknown(self, user_id: str, k: int, fallback: str) -> RecommendationList:
        hint = self.suggest_user(user_id)
        did_you_mean = f"; did you mean {hint!r}? (ids are case-sensitive)" if hint else ""
        if fallback == "error":
            raise UnknownUserError(
                f"user {user_id!r} is not in the model ({len(self.user_ids)} users){did_you_mean}; "
                "use --fallback popular for a popularity fallback"
            )
        # The popular list goes through the same rules: filters, boosts, caps and promotions
        # hold for every visitor (there is no history to exclude).
        order = np.asarray(self.bundle["popular_order"], dtype=np.int64)
        pop = np.asarray(self.bundle["item_popularity"], dtype=np.float64)

        def score_of(items: np.ndarray) -> np.ndarray:
            return pop[items]

        user = self.user_context(None)
        cands = order[: self._fetch_size(k, 0)]
        ranked = apply_rules(self.rules, cands, pop[cands], user, k, POPULAR, score_of)
        if len(ranked.items) < k and len(cands) < len(order):
            cands = order
            ranked = apply_rules(self.rules, cands, pop[cands], user, k, POPULAR, score_of)
        items = self._items(ranked, None)
        note = f"user {user_id!r} is not in the model: showing the most popular items{did_you_mean}"
        notes = [note, *self._short_note(ranked, k, len(cands))]
        return RecommendationList(
            user_id, items, True, "popular", self.bundle.version, notes, self._trace(ranked.trace)
        )

    def _short_note(self, ranked: Ranked, k: int, pool: int) -> list[str]:
        if len(ranked.items) >= k:
            return []
        removed = ", ".join(f"{t.rule} removed {t.dropped}" for t in ranked.trace if t.dropped)
        scope = (
            f"the {pool} items in the model"
            if pool == len(self.item_ids)
            else f"{pool} candidates of the {len(self.item_ids)} items in the model"
        )
        return [
            f"only {len(ranked.items)} item(s) can be recommended: the rules leave "
            f"{ranked.available} of {scope} for this user ({removed or 'nothing removed'})"
        ]

    # --- output ----------------------------------------------------------------------------

    def _text_column(self, name: str, index: int) -> str | None:
        values = self.catalogue.column(name)
        if values is None:
            return None
        value = values[index]
        if isinstance(value, float | np.floating):
            return None if np.isnan(value) else f"{value:g}"
        return str(value) or None

    def _items(self, ranked: Ranked, u: int | None) -> list[Recommendation]:
        because = self._because(u, ranked) if u is not None else {}
        out = []
        for r, index in enumerate(ranked.items.tolist()):
            score = float(ranked.scores[r])
            rank_score = ranked.rank_scores[r]
            nearest, text = because.get(index, (None, None))
            out.append(
                Recommendation(
                    rank=r + 1,
                    item_id=str(self.catalogue.item_ids[index]),
                    score=round(score, 6) if np.isfinite(score) else None,
                    reason=ranked.reasons[r],
                    title=self._text_column("title", index),
                    category=self._text_column("category", index),
                    rank_score=None if rank_score is None else round(rank_score, 6),
                    because=nearest,
                    explanation=text,
                )
            )
        return out

    def _because(self, u: int, ranked: Ranked) -> dict[int, tuple[str, str]]:
        """For items the model chose: the item of the user's training history most similar to
        it (cosine of the item embeddings), named with what the user did with it."""
        if not self.bundle.has("history_indptr"):
            return {}
        indptr = self.bundle["history_indptr"]
        lo, hi = int(indptr[u]), int(indptr[u + 1])
        history = np.asarray(self.bundle["history_indices"][lo:hi], dtype=np.int64)
        events = np.asarray(self.bundle["history_event"][lo:hi])
        wanted = [
            i
            for i, reason in zip(ranked.items.tolist(), ranked.reasons, strict=True)
            if reason == MODEL
        ]
        if not len(history) or not wanted:
            return {}
        # item_vectors is [embedding, bias, 1]: similarity is about the embedding only.
        vectors = np.asarray(self.item_vectors)
        h = vectors[history, :-2].astype(np.float64)
        h /= np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-12)
        w = vectors[wanted, :-2].astype(np.float64)
        w /= np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
        nearest = np.argmax(w @ h.T, axis=1)
        names = self.bundle.manifest.get("event_types", [])
        out = {}
        for item, j in zip(wanted, nearest.tolist(), strict=True):
            event = names[int(events[j])] if int(events[j]) < len(names) else ""
            verb = VERBS.get(event, "chose {}")
            other = int(history[j])
            if other == item:
                text = f"you {verb.format('it')} before"
            else:
                label = self._text_column("title", other) or str(self.catalogue.item_ids[other])
                text = f"because you {verb.format(label)}"
            out[item] = (str(self.catalogue.item_ids[other]), text)
        return out

    def _trace(self, trace: list[RuleTrace]) -> list[dict[str, Any]]:
        ids = self.catalogue.item_ids

        def name(i: int) -> str:
            return str(ids[i])

        return [
            {
                "rule": t.rule,
                "type": t.type,
                "removed": [name(i) for i in t.removed],
                "added": [name(i) for i in t.added],
                "moved": [{"item_id": name(i), "from": a, "to": b} for i, a, b in t.moved],
                "candidates_removed": t.dropped,
                "note": t.note,
            }
            for t in trace
        ]
