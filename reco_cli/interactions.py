"""From canonical events to what a model trains on: id maps, weighted sparse matrices, exclusions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from . import columns as C
from .config import TrainConfig

WEIGHT_COL = "__w"


@dataclass
class Interactions:
    """A user x item matrix over dense indices, with the raw ids of each row and column."""

    user_ids: np.ndarray  # sorted unicode array; row i is user_ids[i]
    item_ids: np.ndarray  # sorted unicode array; column j is item_ids[j]
    weights: sp.csr_matrix  # aggregated positive weights (float32)
    popularity: np.ndarray  # per item: summed event weight over training events

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.user_ids), len(self.item_ids))

    def binary(self) -> sp.coo_matrix:
        coo = self.weights.tocoo()
        return sp.coo_matrix(
            (np.ones_like(coo.data, dtype=np.float32), (coo.row, coo.col)), shape=self.shape
        )


def weighted_events(events: pl.DataFrame, train: TrainConfig) -> pl.DataFrame:
    """Events of identified users that count as positives, with their per-event weight.

    Weight = the event type's weight (x the event's own `weight` column when present); returns
    and cart removals are never positives; ratings below `train.min_rating` are dropped.
    """
    weights = {t: w for t, w in train.event_weights.items() if w > 0}
    type_weight = pl.col(C.EVENT_TYPE).replace_strict(weights, default=0.0, return_dtype=pl.Float64)
    w = type_weight * pl.col(C.WEIGHT).fill_null(1.0)
    keep = pl.col(C.USER_ID).is_not_null() & ~pl.col(C.EVENT_TYPE).is_in(C.NEGATIVE_EVENT_TYPES)
    if train.min_rating is not None:
        low = (pl.col(C.EVENT_TYPE) == C.RATING_EVENT) & (pl.col(C.RATING) < train.min_rating)
        keep = keep & ~low.fill_null(False)
    return events.filter(keep).with_columns(w.alias(WEIGHT_COL)).filter(pl.col(WEIGHT_COL) > 0)


def aggregate_pairs(weighted: pl.DataFrame, train: TrainConfig) -> pl.DataFrame:
    """One row per (user, item): weights combined by `train.aggregate`, capped by `max_weight`."""
    agg = {
        "sum": pl.col(WEIGHT_COL).sum(),
        "max": pl.col(WEIGHT_COL).max(),
        "count": pl.len().cast(pl.Float64),
    }[train.aggregate]
    pairs = weighted.group_by(C.USER_ID, C.ITEM_ID).agg(agg.alias(WEIGHT_COL))
    if train.max_weight is not None:
        pairs = pairs.with_columns(pl.col(WEIGHT_COL).clip(upper_bound=train.max_weight))
    return pairs


def build_interactions(events: pl.DataFrame, train: TrainConfig) -> Interactions:
    weighted = weighted_events(events, train)
    pairs = aggregate_pairs(weighted, train)
    user_ids = np.array(sorted(pairs.get_column(C.USER_ID).unique().to_list()), dtype=str)
    item_ids = np.array(sorted(pairs.get_column(C.ITEM_ID).unique().to_list()), dtype=str)
    rows = np.searchsorted(user_ids, pairs.get_column(C.USER_ID).to_numpy().astype(str))
    cols = np.searchsorted(item_ids, pairs.get_column(C.ITEM_ID).to_numpy().astype(str))
    data = pairs.get_column(WEIGHT_COL).to_numpy().astype(np.float32)
    matrix = sp.csr_matrix((data, (rows, cols)), shape=(len(user_ids), len(item_ids)))
    matrix.sort_indices()
    pop = weighted.group_by(C.ITEM_ID).agg(pl.col(WEIGHT_COL).sum())
    popularity = np.zeros(len(item_ids), dtype=np.float64)
    popularity[np.searchsorted(item_ids, pop.get_column(C.ITEM_ID).to_numpy().astype(str))] = (
        pop.get_column(WEIGHT_COL).to_numpy()
    )
    return Interactions(user_ids, item_ids, matrix, popularity)


def exclusion_matrix(
    events: pl.DataFrame, user_ids: np.ndarray, item_ids: np.ndarray, event_types: list[str]
) -> sp.csr_matrix:
    """Per user, the model items they had an event of `event_types` with, valued by the last
    such event's time (unix seconds), so a rule can apply a look-back window later."""
    shape = (len(user_ids), len(item_ids))
    if not event_types or not len(user_ids) or not len(item_ids):
        return sp.csr_matrix(shape, dtype=np.int64)
    seen = (
        events.filter(
            pl.col(C.USER_ID).is_not_null()
            & pl.col(C.EVENT_TYPE).is_in(event_types)
            & pl.col(C.USER_ID).is_in(user_ids.tolist())
            & pl.col(C.ITEM_ID).is_in(item_ids.tolist())
        )
        .group_by(C.USER_ID, C.ITEM_ID)
        .agg(pl.col(C.TIMESTAMP).max().dt.epoch("s").fill_null(0).alias("last"))
    )
    rows = np.searchsorted(user_ids, seen.get_column(C.USER_ID).to_numpy().astype(str))
    cols = np.searchsorted(item_ids, seen.get_column(C.ITEM_ID).to_numpy().astype(str))
    matrix = sp.csr_matrix(
        (seen.get_column("last").to_numpy().astype(np.int64), (rows, cols)), shape=shape
    )
    matrix.sort_indices()
    return matrix


def strongest_event(events: pl.DataFrame, inter: Interactions, train: TrainConfig) -> np.ndarray:
    """For each stored (user, item) of `inter.weights` (CSR order), the index in
    `columns.EVENT_TYPES` of the highest-weighted event type behind it ("bought" beats
    "viewed"), so a reason can say what the user did with the item."""
    weights = {t: w for t, w in train.event_weights.items() if w > 0}
    order = {t: i for i, t in enumerate(C.EVENT_TYPES)}
    best = (
        weighted_events(events, train)
        .with_columns(
            pl.col(C.EVENT_TYPE).replace_strict(weights, default=0.0).alias("__tw"),
        )
        .sort(["__tw", C.EVENT_TYPE], descending=[True, False])
        .group_by(C.USER_ID, C.ITEM_ID)
        .agg(pl.col(C.EVENT_TYPE).first())
    )
    rows = np.searchsorted(inter.user_ids, best.get_column(C.USER_ID).to_numpy().astype(str))
    cols = np.searchsorted(inter.item_ids, best.get_column(C.ITEM_ID).to_numpy().astype(str))
    codes = np.array([order[t] for t in best.get_column(C.EVENT_TYPE).to_list()], dtype=np.int8)
    # +1 so that an explicit zero code survives the sparse matrix; every pair is present.
    matrix = sp.csr_matrix(
        (codes.astype(np.int16) + 1, (rows, cols)), shape=inter.shape, dtype=np.int16
    )
    matrix.sort_indices()
    weights_csr = inter.weights
    if not (
        np.array_equal(matrix.indptr, weights_csr.indptr)
        and np.array_equal(matrix.indices, weights_csr.indices)
    ):
        raise RuntimeError("event codes do not line up with the interaction matrix")
    return (matrix.data - 1).astype(np.int8)
