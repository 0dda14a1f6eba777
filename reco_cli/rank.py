"""Serving: candidates (Annoy or exact) -> exact LightFM scores -> exclusions -> top k.

Imports numpy, annoy and the standard library only: answering a user stays light.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .bundle import INDEX_FILE, Bundle, load_bundle
from .errors import ModelBundleError, UnknownUserError
from .index import METRIC, augment_user, exact_top, load_index

MODEL = "model"
POPULAR = "popular"


@dataclass
class Recommendation:
    rank: int
    item_id: str
    score: float
    reason: str
    title: str | None = None
    category: str | None = None


@dataclass
class RecommendationList:
    user_id: str
    items: list[Recommendation]
    fallback: bool
    candidate_path: str
    model_version: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "fallback": self.fallback,
            "candidate_path": self.candidate_path,
            "model_version": self.model_version,
            "notes": self.notes,
            "items": [asdict(r) for r in self.items],
        }


class Recommender:
    def __init__(self, bundle: Bundle, n_candidates: int | None = None) -> None:
        self.bundle = bundle
        cfg = bundle.manifest["config"]["recommend"]
        self.n_candidates = n_candidates or int(cfg["n_candidates"])
        self.exclude_seen: list[str] = list(cfg["exclude_seen"])
        self.user_ids = bundle["user_ids"]
        self.item_ids = bundle["item_ids"]
        self.user_vectors = bundle["user_vectors"]
        self.item_vectors = bundle["item_vectors"]
        info = bundle.index_info
        self.serve_from: str = info["serve_from"]
        self.search_k = int(info.get("search_k") or -1)
        self._index: Any = None
        if self.serve_from == "annoy":
            self._open_index(info)

    @classmethod
    def open(cls, workdir: Path, verify: bool = True) -> Recommender:
        return cls(load_bundle(workdir, verify=verify))

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
        indptr = self.bundle["exclude_indptr"]
        return np.asarray(self.bundle["exclude_indices"][indptr[u] : indptr[u + 1]])

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

    def recommend(self, user_id: str, k: int, fallback: str = "popular") -> RecommendationList:
        user_id = user_id.strip()
        u = self.user_index(user_id)
        if u is None:
            return self._unknown(user_id, k, fallback)
        excluded = self.excluded_items(u)
        n = min(len(self.item_ids), max(self.n_candidates, k) + len(excluded))
        cands = self.candidates(u, n)
        keep = cands[~np.isin(cands, excluded)]
        eligible = len(self.item_ids) - len(excluded)
        path = self.serve_from
        if len(keep) < min(k, eligible) and self._index is not None:
            # The index returned too few survivors: score the whole catalogue instead.
            cands = exact_top(np.asarray(self.user_vectors[u]), np.asarray(self.item_vectors), n)
            keep = cands[~np.isin(cands, excluded)]
            path = "exact (index fell short)"
        scores = self.score(u, keep)
        order = np.lexsort((keep, -scores))[:k]
        items = [
            self._item(r + 1, int(keep[i]), float(scores[i]), MODEL) for r, i in enumerate(order)
        ]
        notes = []
        if len(items) < k:
            notes.append(
                f"only {len(items)} item(s) can be recommended: {len(excluded)} of the "
                f"{len(self.item_ids)} items in the model are excluded for this user "
                f"(already {'/'.join(self.exclude_seen)})"
            )
        return RecommendationList(user_id, items, False, path, self.bundle.version, notes)

    def _unknown(self, user_id: str, k: int, fallback: str) -> RecommendationList:
        hint = self.suggest_user(user_id)
        did_you_mean = f"; did you mean {hint!r}? (ids are case-sensitive)" if hint else ""
        if fallback == "error":
            raise UnknownUserError(
                f"user {user_id!r} is not in the model ({len(self.user_ids)} users){did_you_mean}; "
                "use --fallback popular for a popularity fallback"
            )
        order = np.asarray(self.bundle["popular_order"][:k])
        pop = self.bundle["item_popularity"]
        items = [self._item(r + 1, int(i), float(pop[i]), POPULAR) for r, i in enumerate(order)]
        note = f"user {user_id!r} is not in the model: showing the most popular items{did_you_mean}"
        return RecommendationList(user_id, items, True, "popular", self.bundle.version, [note])

    def _item(self, rank: int, index: int, score: float, reason: str) -> Recommendation:
        title = str(self.bundle["item_title"][index]) if self.bundle.has("item_title") else None
        category = (
            str(self.bundle["item_category"][index]) if self.bundle.has("item_category") else None
        )
        return Recommendation(
            rank,
            str(self.item_ids[index]),
            round(score, 6),
            reason,
            title or None,
            category or None,
        )
