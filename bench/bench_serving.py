"""Benchmark: serving and the feedback loop, each as a ratio against a baseline measured in the
same run.

1. Candidates per user: Annoy at the search_k `reco train` chose versus exact numpy scoring, on
   the same model (Taobao 84k when ../shared is present: 55k items; else the shipped sample).
2. `Recommender.recommend` per user (candidates, exact re-scoring, exclusions, rules) versus the
   exact-scoring stage alone: what the ranking stage costs on top.
3. The whole `reco recommend --user` process versus a bare `python -c pass` start-up.
4. `reco train --update` on the last day's events versus a full `reco train`.
Everything runs on one thread. Run with `make bench`.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import timedelta  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TAOBAO = ROOT.parent / "shared" / "datasets" / "taobao-userbehavior-84k" / "UserBehavior.csv"


def config(workdir: Path) -> tuple[Path, str]:
    if TAOBAO.is_file():
        raw = yaml.safe_load((ROOT / "configs" / "taobao.yaml").read_text())
        for section in ("events", "items"):
            raw["data"][section]["path"] = str(TAOBAO)
        name = "Taobao 84k"
    else:
        raw = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
        for section in ("events", "items"):
            raw["data"][section]["path"] = str(ROOT / "sample_data" / "online_retail_20k.csv")
        name = "Online Retail sample"
    raw["workdir"] = str(workdir / "work")
    raw.pop("evaluate", None)
    path = workdir / "bench.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, name


def median_ms(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> int:
    from reco_cli.config import load_config
    from reco_cli.index import augment_user, exact_top, load_index
    from reco_cli.ingest import run_ingest
    from reco_cli.model import read_events, train_model
    from reco_cli.rank import Recommender

    with tempfile.TemporaryDirectory() as tmp:
        cfg_path, name = config(Path(tmp))
        cfg = load_config(cfg_path)
        run_ingest(cfg)
        start = time.perf_counter()
        train_model(cfg)
        full_train = time.perf_counter() - start
        rec = Recommender.open(cfg.workdir_path)
        info = rec.bundle.index_info
        n_items = len(rec.item_ids)
        users = rec.user_ids[:: max(1, len(rec.user_ids) // 200)][:200]
        rows = [rec.user_index(str(u)) for u in users]
        items = np.asarray(rec.item_vectors)
        n = info["n_candidates"]
        print(
            f"data: {name}, {len(rec.user_ids):,} users x {n_items:,} items, {len(rows)} users timed"
        )

        index = load_index(rec.bundle.path / "index.ann", info["dimension"], n_items)
        sk = int(info["search_k"])
        annoy_ms = median_ms(
            lambda: [
                index.get_nns_by_vector(augment_user(rec.user_vectors[r]), n, search_k=sk)
                for r in rows
            ],
            5,
        ) / len(rows)
        exact_ms = median_ms(
            lambda: [exact_top(np.asarray(rec.user_vectors[r]), items, n) for r in rows], 5
        ) / len(rows)
        print(
            f"1. candidates/user: annoy (search_k {sk}, recall@{n} {info['recall']}) {annoy_ms:.3f} ms, "
            f"exact {exact_ms:.3f} ms -> annoy/exact = {annoy_ms / exact_ms:.2f}; served: {info['serve_from']}"
        )

        served_ms = median_ms(
            lambda: [rec.recommend(str(u), cfg.recommend.k) for u in users], 5
        ) / len(rows)
        print(
            f"2. recommend/user (both stages, exclusions, rules) {served_ms:.3f} ms vs exact stage alone "
            f"{exact_ms:.3f} ms -> {served_ms / exact_ms:.2f}x"
        )

        def run(*args: str) -> float:
            start = time.perf_counter()
            subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return time.perf_counter() - start

        bare = statistics.median(run(sys.executable, "-c", "pass") for _ in range(7))
        whole = statistics.median(
            run(
                sys.executable,
                "-m",
                "reco_cli",
                "recommend",
                "-c",
                str(cfg_path),
                "--user",
                str(users[0]),
                "-f",
                "json",
            )
            for _ in range(7)
        )
        print(
            f"3. `reco recommend --user` process {whole * 1000:.0f} ms vs bare python start-up "
            f"{bare * 1000:.0f} ms -> {whole / bare:.1f}x (median of 7)"
        )

        # The feedback loop: hold out the last day, train on the rest, then update with it.
        events = read_events(cfg.workdir_path)
        last = events["timestamp"].max()
        cut = last - timedelta(days=1)  # type: ignore[operator]
        old = Path(tmp) / "old.parquet"
        events.filter(events["timestamp"] <= cut).write_parquet(old)
        raw = yaml.safe_load(cfg_path.read_text())
        events_path = raw["data"]["events"]["path"]
        raw["data"]["events"] = {
            "path": str(old),
            "columns": {c: c for c in ("user_id", "item_id", "event_type", "timestamp")},
        }
        raw["data"].pop("items", None)
        cfg_path.write_text(yaml.safe_dump(raw))
        cfg = load_config(cfg_path)
        run_ingest(cfg)
        train_model(cfg)
        all_events = Path(tmp) / "all.parquet"
        events.write_parquet(all_events)
        raw["data"]["events"]["path"] = str(all_events)
        cfg_path.write_text(yaml.safe_dump(raw))
        cfg = load_config(cfg_path)
        run_ingest(cfg)
        start = time.perf_counter()
        result = train_model(cfg, update=True)
        update = time.perf_counter() - start
        start = time.perf_counter()
        train_model(cfg)
        full = time.perf_counter() - start
        print(
            f"4. train --update on {result.manifest['training']['new_events']:,} new events "
            f"({cfg.train.update_epochs} epochs) {update:.2f} s vs full train {full:.2f} s "
            f"({cfg.train.epochs} epochs) -> {update / full:.2f}x  (first full train {full_train:.2f} s; "
            f"events from {events_path})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
