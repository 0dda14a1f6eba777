"""Training, the bundle, the candidate index and recommend (library level)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from reco_cli.bundle import load_bundle
from reco_cli.config import load_config
from reco_cli.errors import ModelBundleError, UnknownUserError
from reco_cli.index import augment_items, augment_user, build_index, exact_top, load_index
from reco_cli.ingest import run_ingest
from reco_cli.model import train_model
from reco_cli.rank import Recommender

from .conftest import DATA, WITH_EVENT, events_config, write_config

CASES = DATA / "cases"
FAST_TRAIN = {"no_components": 16, "epochs": 10, "num_threads": 1}


def parity_events(path: Path, n_users: int = 60, n_items: int = 40, per_user: int = 8) -> Path:
    """Even users buy even items, odd users odd items: a known answer for the model."""
    rng = random.Random(7)
    lines = ["user_id,item_id,timestamp"]
    for u in range(n_users):
        same = [i for i in range(n_items) if i % 2 == u % 2]
        for j, i in enumerate(rng.sample(same, per_user)):
            lines.append(f"u{u},i{i},2024-01-{1 + j:02d}T10:00:00Z")
    path.write_text("\n".join(lines) + "\n")
    return path


def pipeline(tmp_path: Path, config: dict) -> Path:  # type: ignore[type-arg]
    config.setdefault("train", {}).update(
        {k: v for k, v in FAST_TRAIN.items() if k not in config["train"]}
    )
    cfg_path = write_config(tmp_path, config)
    cfg = load_config(cfg_path)
    run_ingest(cfg)
    train_model(cfg)
    return cfg_path


def test_known_answer_even_users_get_even_items(tmp_path: Path) -> None:
    cfg_path = pipeline(
        tmp_path,
        events_config(parity_events(tmp_path / "parity.csv"), default_event_type="purchase")
        | {"train": {"epochs": 30, "learning_rate": 0.05}},
    )
    rec = Recommender.open(load_config(cfg_path).workdir_path)
    same = total = 0
    for u in range(60):
        result = rec.recommend(f"u{u}", 5)
        assert len(result.items) == 5
        for r in result.items:
            total += 1
            same += int(r.item_id[1:]) % 2 == u % 2
    assert same / total >= 0.9, f"only {same}/{total} recommendations match the user's parity"


def test_purchased_items_are_not_recommended_again(tmp_path: Path) -> None:
    events = parity_events(tmp_path / "parity.csv")
    cfg_path = pipeline(tmp_path, events_config(events, default_event_type="purchase"))
    rec = Recommender.open(load_config(cfg_path).workdir_path)
    bought = {}
    for line in events.read_text().splitlines()[1:]:
        u, i, _ = line.split(",")
        bought.setdefault(u, set()).add(i)
    for u in ("u0", "u1", "u17"):
        got = {r.item_id for r in rec.recommend(u, 20).items}
        assert got and not got & bought[u]


def test_views_stay_eligible_when_only_purchases_are_excluded(tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    rows = ["user_id,item_id,event,timestamp"]
    for u in range(6):
        rows += [f"u{u},i1,view,2024-01-01T00:00:00Z", f"u{u},i2,purchase,2024-01-01T00:00:00Z"]
    rows.append("u9,i3,purchase,2024-01-02T00:00:00Z")
    path.write_text("\n".join(rows) + "\n")
    cfg = events_config(
        path,
        columns=WITH_EVENT,
    )
    rec = Recommender.open(load_config(pipeline(tmp_path, cfg)).workdir_path)
    got = [r.item_id for r in rec.recommend("u0", 5).items]
    assert "i1" in got and "i2" not in got


def test_case09_unknown_users_and_short_lists(tmp_path: Path) -> None:
    cfg_path = pipeline(
        tmp_path,
        events_config(CASES / "09_unknown_ids" / "train.csv", default_event_type="purchase"),
    )
    rec = Recommender.open(load_config(cfg_path).workdir_path)
    with pytest.raises(UnknownUserError, match=r"user 'u999' is not in the model \(3 users\)"):
        rec.recommend("u999", 3, fallback="error")
    with pytest.raises(UnknownUserError, match="did you mean 'u1'"):
        rec.recommend("U1", 3, fallback="error")
    fallback = rec.recommend("u999", 3)
    assert fallback.fallback and [r.reason for r in fallback.items] == ["popular"] * 3
    # u1 bought i1 and i2: only i3 and i4 are left, and the output says so.
    short = rec.recommend("u1", 3)
    assert sorted(r.item_id for r in short.items) == ["i3", "i4"]
    assert "only 2 item(s) can be recommended" in short.notes[0]


def test_case01_users_007_and_7_are_different(tmp_path: Path) -> None:
    cfg = events_config(
        CASES / "01_id_leading_zeros" / "interactions.csv",
        columns=WITH_EVENT,
    )
    cfg["recommend"] = {"exclude_seen": []}
    rec = Recommender.open(load_config(pipeline(tmp_path, cfg)).workdir_path)
    assert rec.user_index("007") != rec.user_index("7")
    assert rec.user_index("007") is not None and rec.user_index("7") is not None
    assert {r.item_id for r in rec.recommend("007", 4).items} == {"00123", "00456", "123", "789"}


def test_case16_sparse_numeric_item_ids_use_dense_index_keys(tmp_path: Path) -> None:
    cfg = events_config(
        CASES / "16_annoy_sparse_ids" / "interactions.csv",
        columns={"user_id": "user_id", "item_id": "item_id"},
        default_event_type="purchase",
    )
    cfg["recommend"] = {"exclude_seen": [], "k": 3, "n_candidates": 3}
    cfg["index"] = {"mode": "annoy", "n_trees": 5, "check_users": 4}
    cfg_path = pipeline(tmp_path, cfg)
    bundle = load_bundle(load_config(cfg_path).workdir_path)
    index_file = bundle.path / "index.ann"
    assert index_file.stat().st_size < 10_000
    index = load_index(index_file, bundle.index_info["dimension"], 3)
    assert index.get_n_items() == 3
    rec = Recommender(bundle)
    assert rec.serve_from == "annoy"
    assert {r.item_id for r in rec.recommend("u1", 3).items} == {"17", "2000000", "987654321"}


def test_annoy_candidates_agree_with_exact_scoring(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    items = rng.normal(size=(2000, 17)).astype(np.float32)
    items[:, -1] = 1.0  # the folded-in constant
    users = rng.normal(size=(50, 17)).astype(np.float32)
    build_index(items, tmp_path / "i.ann", n_trees=20, seed=1, n_jobs=1)
    index = load_index(tmp_path / "i.ann", 18, 2000)
    recall = []
    for u in users:
        exact = set(exact_top(u, items, 100).tolist())
        found = set(index.get_nns_by_vector(augment_user(u), 100, search_k=100 * 20 * 8))
        recall.append(len(exact & found) / 100)
    assert np.mean(recall) >= 0.95
    # Equal-norm augmentation keeps inner-product order under the angular metric.
    aug = augment_items(items)
    norms = np.linalg.norm(aug, axis=1)
    assert np.allclose(norms, norms.max(), rtol=1e-4)


def test_bundle_switch_keeps_previous_and_prunes(tmp_path: Path) -> None:
    cfg_path = pipeline(
        tmp_path,
        events_config(parity_events(tmp_path / "p.csv"), default_event_type="purchase")
        | {"train": {"keep_versions": 2}},
    )
    cfg = load_config(cfg_path)
    pointer = cfg.workdir_path / "model"
    first = pointer.resolve()
    second = train_model(cfg).bundle_dir
    assert pointer.resolve() == second.resolve() and first.is_dir()
    third = train_model(cfg).bundle_dir
    versions = sorted(
        p.name for p in (cfg.workdir_path / "models").iterdir() if not p.name.startswith(".")
    )
    assert versions == sorted([second.name, third.name])
    assert not first.exists()


def test_same_seed_same_recommendations(tmp_path: Path) -> None:
    cfg_path = pipeline(
        tmp_path, events_config(parity_events(tmp_path / "p.csv"), default_event_type="purchase")
    )
    cfg = load_config(cfg_path)
    before = [
        Recommender.open(cfg.workdir_path).recommend(f"u{u}", 10).to_dict()["items"]
        for u in range(5)
    ]
    train_model(cfg)
    after = [
        Recommender.open(cfg.workdir_path).recommend(f"u{u}", 10).to_dict()["items"]
        for u in range(5)
    ]
    assert json.dumps(before) == json.dumps(after)


def test_damaged_bundle_is_refused(tmp_path: Path) -> None:
    cfg_path = pipeline(
        tmp_path, events_config(parity_events(tmp_path / "p.csv"), default_event_type="purchase")
    )
    workdir = load_config(cfg_path).workdir_path
    bundle_dir = (workdir / "model").resolve()
    vectors = bundle_dir / "item_vectors.npy"
    data = bytearray(vectors.read_bytes())
    data[-1] ^= 0xFF
    vectors.write_bytes(bytes(data))
    with pytest.raises(ModelBundleError, match=r"item_vectors\.npy does not match its checksum"):
        load_bundle(workdir)
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    manifest["format_version"] = 99
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelBundleError, match="bundle format 99"):
        load_bundle(workdir)
    (bundle_dir / "manifest.json").unlink()
    with pytest.raises(ModelBundleError, match=r"has no manifest\.json"):
        load_bundle(workdir)


def test_no_bundle_yet(tmp_path: Path) -> None:
    with pytest.raises(ModelBundleError, match="run `reco train"):
        load_bundle(tmp_path / "empty")


def test_update_continues_the_model_on_new_events(tmp_path: Path) -> None:
    """The feedback loop: new users become known; users without new events keep their vectors."""
    old = parity_events(tmp_path / "old.csv", n_users=60)
    rng = random.Random(3)
    new_lines = []
    for u in range(60, 70):
        same = [i for i in range(40) if i % 2 == u % 2]
        new_lines += [
            f"u{u},i{i},2024-02-{1 + j:02d}T10:00:00Z" for j, i in enumerate(rng.sample(same, 8))
        ]
    combined = tmp_path / "events.csv"
    combined.write_text(old.read_text() + "\n".join(new_lines) + "\n")
    cfg_path = pipeline(
        tmp_path, events_config(old, default_event_type="purchase") | {"train": {"epochs": 30}}
    )
    cfg = load_config(cfg_path)
    before = load_bundle(cfg.workdir_path)
    old_vectors = np.array(before["user_vectors"])
    # New events arrive: ingest the grown export, then update instead of retraining.
    text = cfg_path.read_text().replace(str(old), str(combined))
    cfg_path.write_text(text)
    cfg = load_config(cfg_path)
    run_ingest(cfg)
    result = train_model(cfg, update=True)
    assert result.manifest["training"]["mode"] == "update"
    assert result.manifest["training"]["new_events"] == 80
    assert result.manifest["training"]["base_version"] == before.version
    after = load_bundle(cfg.workdir_path)
    assert after.manifest["sizes"]["users"] == 70
    rec = Recommender(after)
    # Users with no new events keep exactly what they learnt.
    for u in ("u0", "u1", "u59"):
        old_row = old_vectors[np.searchsorted(before["user_ids"], u)]
        assert np.array_equal(after["user_vectors"][rec.user_index(u)], old_row)
    # New users are served by the model, and mostly with their parity.
    same = total = 0
    for u in range(60, 70):
        res = rec.recommend(f"u{u}", 5)
        assert not res.fallback
        same += sum(int(r.item_id[1:]) % 2 == u % 2 for r in res.items)
        total += len(res.items)
    assert same / total >= 0.7
    # Nothing newer: nothing to do.
    from reco_cli.model import NothingToUpdate

    with pytest.raises(NothingToUpdate):
        train_model(cfg, update=True)


def test_warp_kos_trains_without_sample_weights(tmp_path: Path) -> None:
    cfg = events_config(parity_events(tmp_path / "p.csv"), default_event_type="purchase")
    cfg_path = pipeline(tmp_path, cfg | {"train": {"loss": "warp-kos"}})
    assert len(Recommender.open(load_config(cfg_path).workdir_path).recommend("u0", 5).items) == 5


def test_update_keeps_new_events_that_share_the_last_timestamp(tmp_path: Path) -> None:
    from reco_cli.model import events_since

    old = parity_events(tmp_path / "old.csv", n_users=20)
    last_line = old.read_text().strip().splitlines()[-1]
    last_ts = last_line.split(",")[2]
    grown = tmp_path / "grown.csv"
    # Same second as the model's newest event: one repeat of it (seen) and one new event.
    grown.write_text(old.read_text() + f"{last_line}\nu99,i2,{last_ts}\n")
    cfg_path = pipeline(tmp_path, events_config(old, default_event_type="purchase"))
    cfg = load_config(cfg_path)
    manifest = load_bundle(cfg.workdir_path).manifest
    cfg_path.write_text(cfg_path.read_text().replace(str(old), str(grown)))
    cfg = load_config(cfg_path)
    cfg.data.max_reject_fraction = 1.0
    result = run_ingest(cfg)
    fresh = events_since(result.events, manifest)
    # The exact repeat is a duplicate at ingest; the other event at that second is new.
    assert fresh.select("user_id", "item_id").rows() == [("u99", "i2")]


def test_case08_interaction_matrix_after_duplicates(tmp_path: Path) -> None:
    from reco_cli.interactions import build_interactions

    cfg = events_config(
        CASES / "08_duplicate_events" / "interactions.csv",
        columns=WITH_EVENT,
    ) | {"train": {"aggregate": "count"}}
    config = load_config(write_config(tmp_path, cfg))
    events = run_ingest(config, write=False).events
    inter = build_interactions(events, config.train)
    assert inter.weights.nnz == 6
    weights = {
        (str(inter.user_ids[u]), str(inter.item_ids[i])): float(inter.weights[u, i])
        for u, i in zip(*inter.weights.nonzero(), strict=True)
    }
    assert weights == {
        ("u1", "i1"): 2.0,
        ("u1", "i2"): 1.0,
        ("u2", "i1"): 2.0,
        ("u2", "i3"): 1.0,
        ("u3", "i2"): 1.0,
        ("u3", "i3"): 1.0,
    }
    assert set(inter.binary().data.tolist()) == {1.0}


def test_update_refuses_a_rewritten_history(tmp_path: Path) -> None:
    """Backfilled or re-keyed history is not "new events": the update must not pretend."""
    old = parity_events(tmp_path / "old.csv", n_users=20)
    cfg_path = pipeline(tmp_path, events_config(old, default_event_type="purchase"))
    lines = old.read_text().splitlines()
    # The same events with renamed users (an export whose ids changed), plus one new event.
    renamed = tmp_path / "renamed.csv"
    renamed.write_text(
        "\n".join([lines[0], *[("C" + line) for line in lines[1:]], "Cu1,i3,2024-03-01T10:00:00Z"])
        + "\n"
    )
    cfg_path.write_text(cfg_path.read_text().replace(str(old), str(renamed)))
    cfg = load_config(cfg_path)
    run_ingest(cfg)
    with pytest.raises(ModelBundleError, match="changed since it was trained"):
        train_model(cfg, update=True)
    # A backfill (older events that were not in the export before) is refused too.
    backfilled = tmp_path / "backfilled.csv"
    backfilled.write_text(old.read_text() + "u1,i4,2023-12-01T10:00:00Z\n")
    cfg_path.write_text(cfg_path.read_text().replace(str(renamed), str(backfilled)))
    cfg = load_config(cfg_path)
    run_ingest(cfg)
    with pytest.raises(ModelBundleError, match=r"\(160 rows then, 161 now"):
        train_model(cfg, update=True)
