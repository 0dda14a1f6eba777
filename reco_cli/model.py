"""Training: fit LightFM on the weighted interactions and publish a complete model bundle.

The bundle is written into a new version directory and `<workdir>/model` is switched to it only
when it is complete, so a reader never sees a half-written or mixed bundle.
"""

from __future__ import annotations

import platform
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from . import __version__
from . import columns as C
from .bundle import (
    INDEX_FILE,
    Bundle,
    load_bundle,
    model_pointer,
    save_array,
    sha256_file,
    write_manifest,
)
from .config import RecoConfig, TrainConfig
from .errors import InputDataError, ModelBundleError, TrainingDivergedError
from .index import IndexDecision, build_index, check_finite, choose_path
from .ingest import EVENTS_FILE, ITEMS_FILE
from .interactions import (
    Interactions,
    build_interactions,
    exclusion_matrix,
    strongest_event,
    weighted_events,
)
from .publish import prepare_workdir, publish_version, version_name

EpochCallback = Callable[[int, int], None]
STATE_FILE = "lightfm_state.npz"
_STATE_ARRAYS = (
    "item_embeddings",
    "item_embedding_gradients",
    "item_embedding_momentum",
    "item_biases",
    "item_bias_gradients",
    "item_bias_momentum",
    "user_embeddings",
    "user_embedding_gradients",
    "user_embedding_momentum",
    "user_biases",
    "user_bias_gradients",
    "user_bias_momentum",
)


@dataclass
class FittedModel:
    """Vectors with the biases folded in: score(u, i) = user_vectors[u] . item_vectors[i]."""

    interactions: Interactions
    user_vectors: np.ndarray  # [emb, 1, user_bias]
    item_vectors: np.ndarray  # [emb, item_bias, 1]
    state: dict[str, np.ndarray]
    feature_names: list[str]
    seconds: float


@dataclass
class TrainResult:
    bundle_dir: Path
    manifest: dict[str, Any]


def read_events(workdir: Path) -> pl.DataFrame:
    path = workdir / "data" / EVENTS_FILE
    if not path.is_file():
        raise InputDataError(f"{path} not found; run `reco ingest -c <config>` first")
    return _read_canonical(path, C.event_schema())


def _read_canonical(path: Path, schema: dict[str, object]) -> pl.DataFrame:
    """Read a file ingest wrote, refusing one that is damaged or not in the canonical shape."""
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:  # polars raises several types for a damaged file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputDataError(
            f"{path} cannot be read ({first}); rerun `reco ingest -c <config>`"
        ) from None
    wrong = [
        name
        for name, dtype in schema.items()
        if name not in frame.columns or frame.schema[name] != dtype
    ]
    if wrong:
        raise InputDataError(
            f"{path} is not in reco's canonical shape (columns {wrong} missing or of another "
            "type); rerun `reco ingest -c <config>`"
        )
    return frame


def read_items(workdir: Path) -> pl.DataFrame | None:
    path = workdir / "data" / ITEMS_FILE
    return _read_canonical(path, {C.ITEM_ID: pl.String}) if path.is_file() else None


def item_feature_matrix(
    items: pl.DataFrame | None, item_ids: np.ndarray, train: TrainConfig
) -> tuple[sp.csr_matrix | None, list[str]]:
    """Identity features plus the configured metadata columns (one-hot or scaled numbers)."""
    if not train.item_features:
        return None, []
    n = len(item_ids)
    names = [f"item:{i}" for i in item_ids]
    blocks = [sp.identity(n, dtype=np.float32, format="csr")]
    meta = pl.DataFrame({C.ITEM_ID: item_ids.tolist()})
    if items is not None:
        meta = meta.join(items, on=C.ITEM_ID, how="left", maintain_order="left")
    for col in train.item_features:
        values = meta.get_column(col)
        if values.dtype.is_numeric():
            x = values.cast(pl.Float64).to_numpy()
            x = np.where(np.isfinite(x), x, np.nan)
            if train.normalize_features:
                # log1p tames prices spanning orders of magnitude; min-max keeps [0, 1].
                x = np.log1p(np.clip(x, 0, None))
                lo, hi = np.nanmin(x, initial=np.inf), np.nanmax(x, initial=-np.inf)
                x = (x - lo) / (hi - lo) if np.isfinite(lo) and hi > lo else np.zeros_like(x)
            x = np.nan_to_num(x, nan=0.0).astype(np.float32)
            blocks.append(sp.csr_matrix(x[:, None]))
            names.append(col)
        else:
            cats = values.cast(pl.String)
            levels = sorted(cats.drop_nulls().unique().to_list())
            lookup = {v: j for j, v in enumerate(levels)}
            rows = [i for i, v in enumerate(cats.to_list()) if v is not None]
            cols = [lookup[v] for v in cats.to_list() if v is not None]
            block = sp.csr_matrix(
                (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n, len(levels))
            )
            blocks.append(block)
            names.extend(f"{col}={v}" for v in levels)
    features = sp.hstack(blocks, format="csr").astype(np.float32)
    if train.normalize_features:
        sums = np.asarray(features.sum(axis=1)).ravel()
        sums[sums == 0] = 1.0
        features = sp.diags(1.0 / sums).astype(np.float32) @ features
    return features.tocsr(), names


def _new_lightfm(train: TrainConfig, seed: int) -> Any:
    from lightfm import LightFM  # heavy import kept off the recommend path

    return LightFM(
        no_components=train.no_components,
        loss=train.loss,
        learning_schedule=train.learning_schedule,
        learning_rate=train.learning_rate,
        item_alpha=train.item_alpha,
        user_alpha=train.user_alpha,
        max_sampled=train.max_sampled,
        random_state=np.random.RandomState(seed),
    )


def _run_epochs(
    model: Any,
    weights: sp.csr_matrix,
    features: sp.csr_matrix | None,
    train: TrainConfig,
    epochs: int,
    on_epoch: EpochCallback | None,
) -> float:
    """Fit epoch by epoch (for progress), stopping as soon as parameters stop being finite."""
    coo = weights.tocoo()
    binary = sp.coo_matrix((np.ones_like(coo.data), (coo.row, coo.col)), shape=coo.shape)
    # LightFM does not implement sample weights for the k-OS loss: it trains on presence only.
    sample_weight = None if train.loss == "warp-kos" else coo
    start = time.perf_counter()
    # Divergence is detected and reported below; numpy need not warn about it on the way.
    with np.errstate(all="ignore"):
        for epoch in range(epochs):
            try:
                model.fit_partial(
                    binary,
                    item_features=features,
                    sample_weight=sample_weight,
                    epochs=1,
                    num_threads=train.num_threads,
                )
            except ValueError as exc:
                if "finite" not in str(exc):
                    raise
                raise _diverged(train, epoch + 1) from None
            if not (
                np.isfinite(model.item_embeddings).all()
                and np.isfinite(model.user_embeddings).all()
            ):
                raise _diverged(train, epoch + 1)
            if on_epoch:
                on_epoch(epoch + 1, epochs)
    return time.perf_counter() - start


def _fitted(
    model: Any,
    inter: Interactions,
    features: sp.csr_matrix | None,
    feature_names: list[str],
    train: TrainConfig,
    seconds: float,
) -> FittedModel:
    """Fold the biases into the vectors and check them before anything is written."""
    n_users, n_items = inter.shape
    item_biases, item_emb = model.get_item_representations(features)
    user_biases, user_emb = model.get_user_representations()
    ones_i = np.ones((n_items, 1), dtype=np.float32)
    ones_u = np.ones((n_users, 1), dtype=np.float32)
    item_vectors = np.hstack([item_emb, item_biases[:, None], ones_i]).astype(np.float32)
    user_vectors = np.hstack([user_emb, ones_u, user_biases[:, None]]).astype(np.float32)
    check_finite(item_vectors, inter.item_ids, "item")
    check_finite(user_vectors, inter.user_ids, "user")
    if not scores_are_finite(user_vectors, item_vectors):
        raise _diverged(train, train.epochs)
    state = {name: np.asarray(getattr(model, name)) for name in _STATE_ARRAYS}
    return FittedModel(inter, user_vectors, item_vectors, state, feature_names, seconds)


def _interactions_or_fail(events: pl.DataFrame, train: TrainConfig) -> Interactions:
    inter = build_interactions(events, train)
    if inter.shape[0] == 0 or inter.shape[1] == 0:
        raise InputDataError(
            "no training interactions: no event of an identified user has a positive weight "
            f"(train.event_weights: {dict(train.event_weights)}); check the event types "
            "ingest produced and the weights"
        )
    return inter


def fit(
    events: pl.DataFrame,
    items: pl.DataFrame | None,
    cfg: RecoConfig,
    on_epoch: EpochCallback | None = None,
) -> FittedModel:
    """Train from scratch on all events."""
    train = cfg.train
    inter = _interactions_or_fail(events, train)
    features, feature_names = item_feature_matrix(items, inter.item_ids, train)
    model = _new_lightfm(train, cfg.seed)
    seconds = _run_epochs(model, inter.weights, features, train, train.epochs, on_epoch)
    return _fitted(model, inter, features, feature_names, train, seconds)


def fit_update(
    events: pl.DataFrame,
    previous: Bundle,
    cfg: RecoConfig,
    on_epoch: EpochCallback | None = None,
) -> tuple[FittedModel, int]:
    """Continue training the current model on the events that arrived after it was built.

    Known users and items keep their learnt parameters (and optimiser state); new ones start
    from LightFM's usual initialisation. Only the new events are trained on, for
    `train.update_epochs` epochs; exclusions and popularity are recomputed from all events.
    """
    train = cfg.train
    before = previous.manifest["config"]["train"]
    for key in ("no_components", "loss", "learning_schedule"):
        if before[key] != getattr(train, key):
            raise ModelBundleError(
                f"cannot update: the model has train.{key}={before[key]!r}, the config says "
                f"{getattr(train, key)!r}; run a full `reco train`"
            )
    if train.item_features or before.get("item_features"):
        raise ModelBundleError(
            "cannot update a model with item features (their vocabulary may change); "
            "run a full `reco train`"
        )
    last = previous.manifest["data"].get("last_event")
    if last is None:
        raise InputDataError("cannot update without event timestamps; run a full `reco train`")
    check_history_unchanged(events, previous.manifest)
    new_events = events_since(events, previous.manifest)
    inter = _interactions_or_fail(events, train)
    fresh = build_interactions(new_events, train)
    if fresh.weights.nnz == 0:
        raise NothingToUpdate(
            f"no new training events after the model's last event ({last}); nothing to update"
        )
    model = _new_lightfm(train, cfg.seed)
    n_users, n_items = inter.shape
    # LightFM's own initialisation for every row, then the learnt rows copied back in.
    model._initialize(train.no_components, n_items, n_users)
    with np.load(previous.path / STATE_FILE, allow_pickle=False) as state:
        for side, ids, old_ids in (
            ("user", inter.user_ids, previous["user_ids"]),
            ("item", inter.item_ids, previous["item_ids"]),
        ):
            pos = np.searchsorted(old_ids, ids).clip(max=max(len(old_ids) - 1, 0))
            known = np.asarray(old_ids)[pos] == ids
            for name in _STATE_ARRAYS:
                if name.startswith(side):
                    getattr(model, name)[known] = state[name][pos[known]]
    # The new events, placed in the combined id space.
    rows = np.searchsorted(inter.user_ids, fresh.user_ids)
    cols = np.searchsorted(inter.item_ids, fresh.item_ids)
    coo = fresh.weights.tocoo()
    weights = sp.csr_matrix(
        (coo.data, (rows[coo.row], cols[coo.col])), shape=inter.shape, dtype=np.float32
    )
    seconds = _run_epochs(model, weights, None, train, train.update_epochs, on_epoch)
    trained_on = weighted_events(new_events, train).height
    return _fitted(model, inter, None, [], train, seconds), int(trained_on)


class NothingToUpdate(Exception):
    """Raised by fit_update when no event is newer than the model (not an error for the CLI)."""


def scores_are_finite(user_vectors: np.ndarray, item_vectors: np.ndarray) -> bool:
    """Huge but finite parameters still overflow float32 scores: that is divergence too."""
    bound = float(np.abs(user_vectors).max(initial=0.0)) * float(
        np.abs(item_vectors).max(initial=0.0)
    )
    return bool(np.isfinite(bound) and bound * user_vectors.shape[1] < 1e30)


def _diverged(train: TrainConfig, epoch: int) -> TrainingDivergedError:
    return TrainingDivergedError(
        f"training diverged at epoch {epoch} (learning_rate={train.learning_rate}, "
        f"loss={train.loss}): parameters became non-finite or overflow; lower train.learning_rate"
        + (
            " or enable train.normalize_features"
            if train.item_features and not train.normalize_features
            else " or scale the event weights (train.max_weight)"
        )
        + "; no model was written"
    )


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "reco": __version__}
    for dist in ("rectools-lightfm", "annoy", "numpy", "scipy", "polars"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "unknown"
    return out


def write_bundle(
    out: Path,
    fitted: FittedModel,
    events: pl.DataFrame,
    items: pl.DataFrame | None,
    cfg: RecoConfig,
    data_fingerprint: dict[str, Any],
    training: dict[str, Any] | None = None,
    build_index_files: bool = True,
) -> dict[str, Any]:
    """Write every bundle file into `out` (a fresh directory) and return the manifest."""
    inter = fitted.interactions
    save_array(out, "user_ids", inter.user_ids)
    save_array(out, "item_ids", inter.item_ids)
    save_array(out, "user_vectors", fitted.user_vectors)
    save_array(out, "item_vectors", fitted.item_vectors)
    save_array(out, "item_popularity", inter.popularity)
    # Most popular first; ties by item id so the fallback list is stable.
    order = np.lexsort((np.arange(len(inter.item_ids)), -inter.popularity)).astype(np.int32)
    save_array(out, "popular_order", order)
    excl = exclusion_matrix(
        events, inter.user_ids, inter.item_ids, list(cfg.recommend.exclude_seen)
    )
    save_array(out, "exclude_indptr", excl.indptr.astype(np.int64))
    save_array(out, "exclude_indices", excl.indices.astype(np.int32))
    save_array(out, "exclude_last_seen", excl.data.astype(np.int64))
    optional: list[str] = []
    # Per event type the rules may exclude: which items each user had it with, and when last.
    for event_type in cfg.recommend.exclude_seen:
        seen = exclusion_matrix(events, inter.user_ids, inter.item_ids, [event_type])
        save_array(out, f"seen_{event_type}_indptr", seen.indptr.astype(np.int64))
        save_array(out, f"seen_{event_type}_indices", seen.indices.astype(np.int32))
        save_array(out, f"seen_{event_type}_last", seen.data.astype(np.int64))
        optional += [f"seen_{event_type}_{part}" for part in ("indptr", "indices", "last")]
    # The training history, for reasons such as "because you bought X".
    save_array(out, "history_indptr", inter.weights.indptr.astype(np.int64))
    save_array(out, "history_indices", inter.weights.indices.astype(np.int32))
    save_array(out, "history_event", strongest_event(events, inter, cfg.train))
    optional += ["history_indptr", "history_indices", "history_event"]
    item_columns = write_item_columns(out, items, inter.item_ids)
    optional += [meta["array"] for meta in item_columns.values()]
    np.savez(out / STATE_FILE, allow_pickle=False, **fitted.state)

    index_cfg = cfg.index
    build_seconds = 0.0
    index_path: Path | None = None
    if build_index_files and index_cfg.mode != "exact":
        index_path = out / INDEX_FILE
        build_seconds = build_index(
            fitted.item_vectors, index_path, index_cfg.n_trees, cfg.seed, cfg.train.num_threads
        )
    decision: IndexDecision = choose_path(
        index_path,
        fitted.item_vectors,
        fitted.user_vectors,
        cfg.recommend.n_candidates,
        cfg.recommend.k,
        index_cfg.n_trees,
        index_cfg.search_k,
        index_cfg.target_recall,
        index_cfg.mode,
        index_cfg.check_users,
        cfg.seed,
        build_seconds,
    )
    ts = events.get_column(C.TIMESTAMP)
    manifest: dict[str, Any] = {
        "reco_version": __version__,
        "version": version_name(out),
        "created_at": datetime.now(UTC).isoformat(),
        "config": cfg.model_dump(mode="json"),
        "data": data_fingerprint
        | {
            "first_event": _iso(ts.min()),
            "last_event": _iso(ts.max()),
            "events_at_last_timestamp": boundary_events(events),
            "history": history_fingerprint(events),
        },
        "libraries": library_versions(),
        "sizes": {
            "users": int(inter.shape[0]),
            "items": int(inter.shape[1]),
            "interactions": int(inter.weights.nnz),
            "no_components": cfg.train.no_components,
            "item_features": len(fitted.feature_names),
            "excluded_pairs": int(excl.nnz),
        },
        "training": {
            "mode": "full",
            "seconds": round(fitted.seconds, 3),
            "epochs": cfg.train.epochs,
            "loss": cfg.train.loss,
            "num_threads": cfg.train.num_threads,
            "deterministic": cfg.train.num_threads == 1,
        }
        | (training or {}),
        "index": decision.to_dict() | {"file": INDEX_FILE if index_path else None},
        "optional_arrays": optional,
        "warnings": training_warnings(cfg),
        "weighting": weighting_rule(cfg.train),
        # Item metadata for the business rules and the output: column -> array and kind.
        "item_columns": item_columns,
        "seen_event_types": list(cfg.recommend.exclude_seen),
        "event_types": list(C.EVENT_TYPES),
        "state_file": STATE_FILE,
    }
    write_manifest(out, manifest)
    return manifest


def write_item_columns(
    out: Path, items: pl.DataFrame | None, item_ids: np.ndarray
) -> dict[str, dict[str, str]]:
    """Every item metadata column as a plain array aligned with the model's items: numbers as
    float64 (NaN when missing), anything else as text ("" when missing). No pickle, so the
    recommend path reads them with numpy alone."""
    if items is None:
        return {}
    meta = pl.DataFrame({C.ITEM_ID: item_ids.tolist()}).join(
        items, on=C.ITEM_ID, how="left", maintain_order="left"
    )
    written: dict[str, dict[str, str]] = {}
    for i, col in enumerate(c for c in meta.columns if c != C.ITEM_ID):
        # Column names come from the config: keep file names safe and distinct.
        safe = re.sub(r"[^A-Za-z0-9_]", "_", col)
        name = f"meta_{safe}" if safe == col else f"meta_{i}_{safe}"
        values = meta.get_column(col)
        if values.dtype.is_numeric():
            array = values.cast(pl.Float64).fill_null(float("nan")).to_numpy().astype(np.float64)
            kind = "number"
        else:
            array = values.cast(pl.String).fill_null("").to_numpy().astype(str)
            kind = "text"
        save_array(out, name, array)
        written[col] = {"array": name, "kind": kind}
    return written


def training_warnings(cfg: RecoConfig) -> list[str]:
    warnings = []
    if cfg.train.item_features and not cfg.train.normalize_features:
        warnings.append(
            "train.normalize_features is off: raw numeric features (prices, counts) can make "
            "training diverge or let one feature dominate"
        )
    if cfg.train.num_threads > 1:
        warnings.append("num_threads > 1: LightFM's parallel SGD is not reproducible run to run")
    return warnings


def weighting_rule(train: TrainConfig) -> str:
    """The interaction weighting in words, for the training summary."""
    weights = ", ".join(f"{t} {w:g}" for t, w in train.event_weights.items() if w > 0)
    rule = f"per event: {weights}; repeated (user, item) events combined by {train.aggregate}"
    if train.max_weight is not None:
        rule += f", capped at {train.max_weight:g}"
    if train.min_rating is not None:
        rule += f"; ratings below {train.min_rating:g} dropped"
    return rule


BOUNDARY_LIMIT = 1000


def _event_keys(events: pl.DataFrame) -> list[str]:
    return (
        events.select(
            pl.concat_str([C.USER_ID, C.ITEM_ID, C.EVENT_TYPE], separator="\t", ignore_nulls=True)
        )
        .to_series()
        .to_list()
    )


def history_fingerprint(events: pl.DataFrame) -> dict[str, Any]:
    """Rows and an order-independent hash of (user, item, event type, time) of the events, so
    `--update` can tell appended data from a rewritten history (backfilled, deleted, re-keyed)."""
    hashes = events.select(
        pl.struct(C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.TIMESTAMP).hash(seed=7)
    ).to_series()
    # uint64 addition wraps: a sum that does not depend on row order.
    total = int(hashes.to_numpy().astype(np.uint64).sum(dtype=np.uint64))
    return {"rows": events.height, "hash": str(total), "polars": pl.__version__}


def check_history_unchanged(events: pl.DataFrame, manifest: dict[str, Any]) -> None:
    """Refuse to update a model whose training history is no longer a prefix of the data."""
    seen = manifest["data"].get("history")
    if not seen:
        return
    last = datetime.fromisoformat(manifest["data"]["last_event"])
    past = events.filter(pl.col(C.TIMESTAMP) <= last)
    now = history_fingerprint(past)
    same_rows = now["rows"] == seen["rows"]
    same_hash = now["hash"] == seen["hash"] or now["polars"] != seen["polars"]
    if not (same_rows and same_hash):
        raise ModelBundleError(
            f"cannot update: the events up to the model's last event ({last.isoformat()}) "
            f"changed since it was trained ({seen['rows']:,} rows then, {now['rows']:,} now"
            "; history was backfilled, deleted or its ids changed); "
            "run a full `reco train`"
        )


def boundary_events(events: pl.DataFrame) -> list[str] | None:
    """The events at the newest timestamp, so `--update` can tell which of the events at that
    same second it has already seen (None when there are too many to keep in the manifest)."""
    last = events.get_column(C.TIMESTAMP).max()
    if last is None:
        return []
    at_last = events.filter(pl.col(C.TIMESTAMP) == last)
    return _event_keys(at_last) if at_last.height <= BOUNDARY_LIMIT else None


def events_since(events: pl.DataFrame, manifest: dict[str, Any]) -> pl.DataFrame:
    """Events the model has not seen: after its last event, plus those at that very timestamp
    beyond the ones it was trained with."""
    last = datetime.fromisoformat(manifest["data"]["last_event"])
    after = events.filter(pl.col(C.TIMESTAMP) > last)
    seen = manifest["data"].get("events_at_last_timestamp")
    if seen is None:
        return after
    remaining = Counter(seen)
    at_last = events.filter(pl.col(C.TIMESTAMP) == last)
    fresh = []
    for i, key in enumerate(_event_keys(at_last)):
        if remaining[key] > 0:
            remaining[key] -= 1
        else:
            fresh.append(i)
    return pl.concat([at_last[fresh], after]) if fresh else after


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def data_fingerprint(workdir: Path, events: pl.DataFrame) -> dict[str, Any]:
    path = workdir / "data" / EVENTS_FILE
    return {
        "events_file": str(path),
        "events_sha256": sha256_file(path),
        "events_rows": events.height,
    }


def train_model(
    cfg: RecoConfig,
    on_epoch: EpochCallback | None = None,
    update: bool = False,
) -> TrainResult:
    """Fit on `<workdir>/data` and publish `<workdir>/models/<version>`, then switch `model`.

    With `update`, continue the current model on the events newer than it instead of
    starting from scratch (raises NothingToUpdate when there are none).
    """
    workdir = cfg.workdir_path
    prepare_workdir(workdir, "model", ModelBundleError)
    events = read_events(workdir)
    items = read_items(workdir)
    check_item_columns(items, cfg)
    fingerprint = data_fingerprint(workdir, events)
    training: dict[str, Any] = {"mode": "full"}
    if update:
        previous = load_bundle(workdir)
        fitted, n_new = fit_update(events, previous, cfg, on_epoch)
        training = {
            "mode": "update",
            "base_version": previous.version,
            "new_events": n_new,
            "epochs": cfg.train.update_epochs,
        }
    else:
        fitted = fit(events, items, cfg, on_epoch)
    manifest: dict[str, Any] = {}

    def build(out: Path) -> None:
        manifest.update(write_bundle(out, fitted, events, items, cfg, fingerprint, training))

    final = publish_version(
        workdir / "models", model_pointer(workdir), build, cfg.train.keep_versions
    )
    return TrainResult(final, manifest)


def check_item_columns(items: pl.DataFrame | None, cfg: RecoConfig) -> None:
    if not cfg.train.item_features:
        return
    have = set(items.columns) if items is not None else set()
    for i, col in enumerate(cfg.train.item_features):
        if col not in have:
            raise InputDataError(
                f"train.item_features[{i}]: column {col!r} is not in the ingested items "
                f"({sorted(have) or 'no items.parquet'}); rerun `reco ingest` after adding it "
                "to data.items.columns"
            )
