"""Evaluation splits: what a model may learn from (train) and what it is scored on (test).

The default is one global time cut, so nothing at or after the cut is trained on. The per-user
last-N split is offered for logs where a global cut leaves few warm users (e.g. MovieLens); it
reports how many training events are later than the first test event (the global future).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from . import columns as C
from .config import EvaluateConfig, RecoConfig
from .errors import InputDataError


@dataclass
class Split:
    train: pl.DataFrame
    test: pl.DataFrame
    info: dict[str, Any] = field(default_factory=dict)


def positive_filter(cfg: RecoConfig) -> pl.Expr:
    """Which events count as test positives: configured types, identified users, high ratings."""
    keep = pl.col(C.USER_ID).is_not_null() & pl.col(C.EVENT_TYPE).is_in(
        cfg.evaluate.positive_events
    )
    min_rating = cfg.positive_min_rating
    if min_rating is not None:
        # A rating event is a positive only when its rating is known and high enough.
        high = (pl.col(C.RATING) >= min_rating).fill_null(False)
        keep = keep & ((pl.col(C.EVENT_TYPE) != C.RATING_EVENT) | high)
    return keep


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def _span(frame: pl.DataFrame) -> dict[str, Any]:
    ts = frame.get_column(C.TIMESTAMP)
    return {"events": frame.height, "first": _iso(ts.min()), "last": _iso(ts.max())}


def split_events(events: pl.DataFrame, cfg: RecoConfig) -> Split:
    """Split by the configured strategy; events without a timestamp cannot be placed: dropped."""
    dated = events.filter(pl.col(C.TIMESTAMP).is_not_null())
    if dated.height == 0:
        raise InputDataError(
            "no event has a timestamp: an evaluation split needs event times; map "
            "data.events.columns.timestamp and rerun reco ingest"
        )
    ev = cfg.evaluate
    if ev.split == "time":
        split = time_split(dated, ev)
    else:
        split = last_n_split(dated, ev.last_n, positive_filter(cfg))
    split.info["undated_events_dropped"] = events.height - dated.height
    return split


def time_split(events: pl.DataFrame, ev: EvaluateConfig) -> Split:
    """Everything before the cut trains, everything at or after it is test."""
    ts = events.get_column(C.TIMESTAMP)
    first, last = ts.min(), ts.max()
    assert isinstance(first, datetime) and isinstance(last, datetime)
    if ev.cutoff is not None:
        cutoff, rule = ev.cutoff, "explicit cutoff (evaluate.cutoff)"
    elif ev.test_days is not None:
        cutoff, rule = last - timedelta(days=ev.test_days), f"last {ev.test_days:g} days"
    else:
        cutoff, rule = first + (last - first) * 0.8, "last fifth of the time span"
    train = events.filter(pl.col(C.TIMESTAMP) < cutoff)
    test = events.filter(pl.col(C.TIMESTAMP) >= cutoff)
    where = f"the cut at {cutoff.isoformat()} ({rule}; events span {first} .. {last})"
    if train.height == 0:
        fix = (
            "lower evaluate.test_days" if ev.test_days is not None else "move evaluate.cutoff later"
        )
        raise InputDataError(f"{where} leaves no training events; {fix}")
    if test.height == 0:
        fix = (
            "raise evaluate.test_days"
            if ev.test_days is not None
            else "move evaluate.cutoff earlier"
        )
        raise InputDataError(f"{where} leaves no test events; {fix}")
    train_last = train.get_column(C.TIMESTAMP).max()
    test_first = test.get_column(C.TIMESTAMP).min()
    assert isinstance(train_last, datetime) and isinstance(test_first, datetime)
    # The guarantee the report prints: nothing at or after the cut is trained on.
    if not train_last < cutoff <= test_first:
        raise AssertionError(f"split leaks: last train {train_last}, cut {cutoff}")
    info: dict[str, Any] = {
        "strategy": "time",
        "rule": rule,
        "cutoff": cutoff.astimezone(UTC).isoformat(),
        "train": _span(train),
        "test": _span(test),
        "check": "last training event < cutoff <= first test event",
        "notes": [],
    }
    share = test.height / events.height
    if share > 0.5:
        info["notes"].append(
            f"the test part holds {share:.0%} of the events: the time span may be stretched by a "
            "few outlying timestamps; set evaluate.test_days or evaluate.cutoff"
        )
    return Split(train, test, info)


def last_n_split(events: pl.DataFrame, n: int, positive: pl.Expr) -> Split:
    """Each user's last n positive events, and everything of theirs from then on, are test."""
    cuts = (
        events.filter(positive)
        .with_columns(
            pl.col(C.TIMESTAMP).rank("ordinal", descending=True).over(C.USER_ID).alias("__r")
        )
        .filter(pl.col("__r") <= n)
        .group_by(C.USER_ID)
        .agg(pl.col(C.TIMESTAMP).min().alias("__cut"))
    )
    marked = events.join(cuts, on=C.USER_ID, how="left")
    in_test = pl.col("__cut").is_not_null() & (pl.col(C.TIMESTAMP) >= pl.col("__cut"))
    train = marked.filter(~in_test).drop("__cut")
    test = marked.filter(in_test).drop("__cut")
    if test.height == 0:
        raise InputDataError("the last-N split found no positive events to hold out")
    if train.height == 0:
        raise InputDataError("the last-N split leaves no training events; lower evaluate.last_n")
    test_first = test.get_column(C.TIMESTAMP).min()
    leaked = train.filter(pl.col(C.TIMESTAMP) > test_first).height
    info: dict[str, Any] = {
        "strategy": "last_n",
        "rule": f"each user's last {n} positive event(s) and their later events",
        "last_n": n,
        "train": _span(train),
        "test": _span(test),
        "train_events_after_first_test_event": leaked,
        "check": "per user: last training event < first test event",
        "notes": [
            f"{leaked} training events are later than the first test event (other users' "
            "future): a per-user split lets the model learn from the global future; prefer "
            "split: time for numbers that predict production"
        ]
        if leaked
        else [],
    }
    return Split(train, test, info)
