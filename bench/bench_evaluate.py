"""Benchmark: reco's vectorised evaluation versus lightfm.evaluation on the same model and split.

MovieLens ml-latest-small with configs/movielens.yaml (ratings >= 4 are positives, each user's
last 5 of them held out). One LightFM model is trained with its settings; then precision@k and recall@k of that
model are computed twice over the same warm users, test positives and exclusions:
  - reco: one matrix product per user batch, argpartition, excluded items masked (metrics.py);
  - lightfm.evaluation.precision_at_k / recall_at_k with train_interactions = reco's exclusions.
Both run on one thread (BLAS threads are pinned to 1 before numpy loads). Skips cleanly when the
data set is absent. Run with `make bench`.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RATINGS = ROOT.parent / "shared" / "datasets" / "movielens-latest-small" / "ratings.csv"
K = 10


def config(workdir: Path) -> dict:
    """configs/movielens.yaml as shipped (its model and split), reading the shared data."""
    import yaml

    raw = yaml.safe_load((ROOT / "configs" / "movielens.yaml").read_text())
    raw["workdir"] = str(workdir)
    raw["data"]["events"]["path"] = str(RATINGS)
    raw["data"].pop("items", None)  # titles and genres are not used by the model
    raw["index"] = {"mode": "exact"}
    return raw


def lightfm_model(fitted, cfg):  # type: ignore[no-untyped-def]
    """A LightFM object holding exactly the trained parameters (identity features)."""
    from lightfm import LightFM

    model = LightFM(no_components=cfg.train.no_components, loss=cfg.train.loss)
    for name, value in fitted.state.items():
        setattr(model, name, value)
    return model


def best_of(repeats: int, fn):  # type: ignore[no-untyped-def]
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> int:
    if not RATINGS.is_file():
        print(f"skipped: {RATINGS} not found (the shared data sets are not part of a clone)")
        return 0
    import yaml
    from lightfm.evaluation import precision_at_k, recall_at_k

    from reco_cli.config import load_config
    from reco_cli.evaluate import build_test_set, rank_users, summarise
    from reco_cli.ingest import run_ingest
    from reco_cli.interactions import exclusion_matrix
    from reco_cli.model import fit
    from reco_cli.splits import split_events

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "movielens.yaml"
        path.write_text(yaml.safe_dump(config(Path(tmp) / "work")))
        cfg = load_config(path)
        events = run_ingest(cfg, write=False).events
    assert cfg.evaluate.split == "last_n", "the bench expects configs/movielens.yaml's last_n split"
    split = split_events(events, cfg)
    fitted = fit(split.train, None, cfg)
    inter = fitted.interactions
    excluded = exclusion_matrix(
        split.train, inter.user_ids, inter.item_ids, list(cfg.recommend.exclude_seen)
    )
    test = build_test_set(split.test, split.train, inter, excluded, cfg)
    users, item_vectors, user_vectors = test.users, fitted.item_vectors, fitted.user_vectors
    share = np.asarray((inter.weights > 0).sum(axis=0)).ravel() / inter.shape[0]

    def reco() -> dict[str, float]:
        recs = rank_users(
            users, len(item_vectors), K, excluded, lambda rows: user_vectors[rows] @ item_vectors.T
        )
        return summarise(recs, test.positives, [K], share)[0]

    # lightfm.evaluation wants full-size matrices: test positives on the warm users' rows, and
    # the exclusions as "train interactions" (items it must not rank).
    coo = test.positives.tocoo()
    test_full = sp.csr_matrix(
        (coo.data, (users[coo.row], coo.col)), shape=inter.shape, dtype=np.float32
    )
    train_full = sp.csr_matrix(
        (np.ones(excluded.nnz, dtype=np.float32), excluded.indices, excluded.indptr),
        shape=inter.shape,
    )
    model = lightfm_model(fitted, cfg)

    def lightfm() -> dict[str, float]:
        p = precision_at_k(model, test_full, train_interactions=train_full, k=K, num_threads=1)
        r = recall_at_k(model, test_full, train_interactions=train_full, k=K, num_threads=1)
        return {f"precision@{K}": float(p.mean()), f"recall@{K}": float(r.mean())}

    t_reco, ours = best_of(3, reco)
    t_lfm, theirs = best_of(3, lightfm)
    c = test.counts
    print("MovieLens ml-latest-small, ratings >= 4 positive, each user's last 5 held out")
    print(
        f"model: LightFM warp, {cfg.train.no_components} components, {cfg.train.epochs} epochs, "
        f"{inter.shape[0]} users x {inter.shape[1]} items; trained in {fitted.seconds:.1f} s"
    )
    print(
        f"scored: {len(users)} warm users, {c['warm_pairs']} test positives "
        f"({c['cold_users']} cold users and {c['cold_item_pairs']} cold-item pairs left out "
        "of both, as lightfm.evaluation cannot score them)"
    )
    print()
    print(f"{'metric':<14}{'reco':>10}{'lightfm':>10}{'difference':>12}")
    worst = 0.0
    for key in (f"precision@{K}", f"recall@{K}"):
        diff = ours[key] - theirs[key]
        worst = max(worst, abs(diff))
        print(f"{key:<14}{ours[key]:>10.5f}{theirs[key]:>10.5f}{diff:>+12.2e}")
    print(f"{'ndcg@' + str(K):<14}{ours[f'ndcg@{K}']:>10.5f}{'n/a':>10}")
    print()
    print(
        f"time (best of 3, one thread): reco {t_reco * 1000:.0f} ms for all six metrics at k={K}; "
        f"lightfm.evaluation {t_lfm * 1000:.0f} ms for precision and recall; "
        f"ratio {t_lfm / t_reco:.1f}x"
    )
    print(
        "definitions: both divide precision by k and recall by the user's positives, and "
        "average over users with a positive; lightfm ranks an item by the number of items "
        "scoring strictly higher (ties favour the item), reco breaks ties by item index, so "
        "near-ties can differ in the last decimal. lightfm has no ndcg/map/hit rate at k and "
        "cannot score cold users or items, which reco reports separately."
    )
    if worst > 1e-3:
        print(f"DISAGREEMENT: the values differ by {worst:.2e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
