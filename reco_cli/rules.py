"""Business rules in the ranking stage, as one pure function over a candidate list.

`apply_rules(rules, items, scores, user, k)` takes candidate item indices with their model scores
and returns the top k with a reason per item and a trace of what each rule did, so
`reco recommend` and offline evaluation run exactly the same code. Each YAML rule type is one
small class; `compile_rules` builds them from the validated config once per catalogue, so that a
request only indexes precomputed arrays.

The working list has two parts: free items ordered by a rank score (the model score scaled to
[0, 1] within the request, plus boosts) and pinned items (slot -> item) placed by `promote`.
The visible list fills each slot 1..k with its pinned item, otherwise with the next free item.

Imports numpy and the standard library only: it runs on the light recommend path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from .config import AnyRule

MODEL = "model"
POPULAR = "popular"
DAY_SECONDS = 86_400
_TRUE = frozenset({"true", "yes", "y", "t", "1"})
_FALSE = frozenset({"false", "no", "n", "f", "0"})


class RuleColumnError(LookupError):
    """A rule names an item column the catalogue does not carry (the caller says how to fix)."""

    def __init__(self, path: str, column: str, have: list[str]) -> None:
        super().__init__(f"{path}.column: no item column {column!r} (have {have})")
        self.path, self.column, self.have = path, column, have


@dataclass
class Catalogue:
    """The model's items: ids (row i is item index i) and metadata columns aligned with them.
    Text columns are str arrays ("" when missing); numeric ones float arrays (NaN when missing)."""

    item_ids: np.ndarray
    columns: Mapping[str, np.ndarray] = field(default_factory=dict)
    _lookup: dict[str, int] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.item_ids)

    def column(self, name: str) -> np.ndarray | None:
        if name == "item_id":
            return self.item_ids
        return self.columns.get(name)

    def positions(self, ids: Sequence[str]) -> tuple[list[int], list[str]]:
        """Indices of the ids in the model (in the given order), and the ids it does not have."""
        if self._lookup is None:
            self._lookup = {str(v): i for i, v in enumerate(self.item_ids)}
        found, missing = [], []
        for item_id in ids:
            pos = self._lookup.get(str(item_id))
            if pos is None:
                missing.append(str(item_id))
            elif pos not in found:
                found.append(pos)
        return found, missing


@dataclass(frozen=True)
class Seen:
    """Items a user had one event type with, and when last (unix seconds)."""

    items: np.ndarray
    last: np.ndarray


@dataclass
class UserContext:
    """What rules may know about the user: past items per event type, and "now" (the data's
    last event, unix seconds) for look-back windows."""

    seen: Mapping[str, Seen] = field(default_factory=dict)
    now: float | None = None


@dataclass
class RuleTrace:
    """What one rule did to the visible top k (removed, added, moved; 1-based ranks) and how
    many candidates it took out of the whole list."""

    rule: str
    type: str
    removed: list[int]
    added: list[int]
    moved: list[tuple[int, int, int]]  # (item, rank before, rank after)
    dropped: int
    note: str = ""

    @property
    def touched(self) -> bool:
        return bool(self.removed or self.added or self.moved)


@dataclass
class Ranked:
    items: np.ndarray  # the top k item indices, best first
    scores: np.ndarray  # their model scores (what the model said, before any rule)
    rank_scores: list[float | None]  # normalised score + boosts; None for pinned items
    reasons: list[str]
    trace: list[RuleTrace]
    available: int  # items left after every rule (the most this request could show)


class _State:
    """The working list: free items by rank score, plus items pinned to slots."""

    def __init__(self, items: np.ndarray, scores: np.ndarray, k: int) -> None:
        self.items = items
        self.scores = scores  # raw model scores until normalise() runs
        self.k = k
        self.pins: dict[int, int] = {}
        self.reasons: dict[int, str] = {}
        self.normalised = False
        self.caps: list[MaxPerCategoryRule] = []  # caps applied so far: promote keeps them true
        self.removed = 0  # free items taken out so far, for the trace

    def normalise(self) -> None:
        """Scale the free items' scores to [0, 1], once: boosts then add on a scale that means
        the same for every request, over the items still in the running."""
        if self.normalised:
            return
        self.normalised = True
        if not len(self.scores):
            return
        lo, hi = float(self.scores.min()), float(self.scores.max())
        self.scores = (self.scores - lo) / (hi - lo) if hi > lo else np.ones_like(self.scores)

    def size(self) -> int:
        return len(self.items) + len(self.pins)

    def keep(self, mask: np.ndarray) -> None:
        """Keep the free items where mask holds. Pinned items stay: they passed every gate
        rule when they were pinned, and a cap counts them first."""
        self.removed += int(len(mask) - np.count_nonzero(mask))
        self.items, self.scores = self.items[mask], self.scores[mask]

    def top(self) -> list[int]:
        if not self.pins:  # the usual case until a promotion: just the best k
            best: list[int] = self.items[: self.k].tolist()
            return best
        out: list[int] = []
        free = iter(self.items[: self.k].tolist())  # at most k free items can show
        slot = 1
        while len(out) < self.k:
            if slot in self.pins:
                out.append(self.pins[slot])
            else:
                nxt = next(free, None)
                if nxt is None:
                    break
                out.append(nxt)
            slot += 1
        # Free items ran out before some pinned slots: those items move up rather than vanish.
        for s in sorted(self.pins):
            if s >= slot and len(out) < self.k:
                out.append(self.pins[s])
        return out


@dataclass
class _Context:
    user: UserContext
    gates: list[Rule]  # the exclude_seen and filter rules: what a promoted item must pass


class Rule:
    """One business rule. `apply` changes the working list and returns a note for the trace."""

    type: ClassVar[str] = ""
    gate: ClassVar[bool] = False  # removes items by a property of the item and the user

    def __init__(self, name: str) -> None:
        self.name = name

    def admits(self, items: np.ndarray, user: UserContext) -> np.ndarray:
        return np.ones(len(items), dtype=bool)

    def apply(self, state: _State, ctx: _Context) -> str:
        raise NotImplementedError


class ExcludeSeenRule(Rule):
    type = "exclude_seen"
    gate = True

    def __init__(self, name: str, events: Sequence[str], lookback_days: float | None) -> None:
        super().__init__(name)
        self.events = list(events)
        self.lookback_days = lookback_days

    def _seen(self, user: UserContext) -> tuple[np.ndarray, int]:
        """Items to exclude, and how many seen items the look-back lets through again."""
        recent, old = [], []
        for event in self.events:
            seen = user.seen.get(event)
            if seen is None or not len(seen.items):
                continue
            if self.lookback_days is not None and user.now is not None:
                inside = seen.last >= user.now - self.lookback_days * DAY_SECONDS
                recent.append(seen.items[inside])
                old.append(seen.items[~inside])
            else:
                recent.append(seen.items)
        # One event type (the usual case) is already a set: no sort-and-unique per request.
        excluded = (
            recent[0]
            if len(recent) == 1
            else np.unique(np.concatenate(recent))
            if recent
            else np.empty(0, dtype=np.int64)
        )
        allowed_again = np.unique(np.concatenate(old)) if old else excluded[:0]
        if len(allowed_again):
            allowed_again = allowed_again[~_member(allowed_again, excluded)]
        return excluded, len(allowed_again)

    def admits(self, items: np.ndarray, user: UserContext) -> np.ndarray:
        return ~_member(items, self._seen(user)[0])

    def apply(self, state: _State, ctx: _Context) -> str:
        excluded, allowed_again = self._seen(ctx.user)
        state.keep(~_member(state.items, excluded))
        note = f"{len(excluded)} item(s) with an earlier {'/'.join(self.events)}"
        if self.lookback_days is not None:
            note += (
                f" in the last {self.lookback_days:g} days; {allowed_again} older one(s) "
                "stay eligible"
            )
        return note


def _text(value: Any) -> set[str]:
    """The text forms a config value matches in a text column (case-insensitive)."""
    if isinstance(value, bool):
        return set(_TRUE if value else _FALSE)
    if isinstance(value, float) and value.is_integer():
        return {str(int(value)), str(value)}
    return {str(value).casefold()}


def _matches_any(
    values: np.ndarray, wanted: Sequence[Any], folded: np.ndarray | None
) -> np.ndarray:
    if values.dtype.kind == "f":
        numbers = [float(v) for v in wanted]  # bools count as 1 / 0
        return np.isin(values, numbers)
    assert folded is not None
    tokens = sorted(set().union(*(_text(v) for v in wanted))) if wanted else []
    return np.isin(folded, tokens)


class FilterRule(Rule):
    type = "filter"
    gate = True

    def __init__(self, name: str, column: str, values: np.ndarray, cfg: Any) -> None:
        super().__init__(name)
        self.column = column
        folded = (
            None
            if values.dtype.kind == "f"
            else np.array([str(v).casefold() for v in values.tolist()], dtype=str)
        )
        match = np.ones(len(values), dtype=bool)
        if cfg.equals is not None:
            match &= _matches_any(values, [cfg.equals], folded)
        if cfg.in_ is not None:
            match &= _matches_any(values, cfg.in_, folded)
        if cfg.not_in is not None:
            match &= ~_matches_any(values, cfg.not_in, folded)
        with np.errstate(invalid="ignore"):
            if cfg.min is not None:
                match &= values >= cfg.min  # NaN (missing) never passes
            if cfg.max is not None:
                match &= values <= cfg.max
        self.action = cfg.action
        self.mask = match if cfg.action == "include" else ~match

    def admits(self, items: np.ndarray, user: UserContext) -> np.ndarray:
        return self.mask[items]

    def apply(self, state: _State, ctx: _Context) -> str:
        state.keep(self.mask[state.items])
        kept = int(self.mask.sum())
        return f"{kept} of {len(self.mask)} catalogue items pass ({self.action} on {self.column})"


class BoostRule(Rule):
    type = "boost"

    def __init__(self, name: str, weight: float, values: np.ndarray, note: str = "") -> None:
        super().__init__(name)
        self.weight = weight
        self.values = values  # per catalogue item, in [0, 1]
        self.note = note

    def apply(self, state: _State, ctx: _Context) -> str:
        before = {item: pos for pos, item in enumerate(state.items.tolist())}
        state.normalise()
        state.scores = state.scores + self.weight * self.values[state.items]
        # Stable: equal scores keep their previous order.
        order = np.argsort(-state.scores, kind="stable")
        state.items, state.scores = state.items[order], state.scores[order]
        raised = 0
        for pos, item in enumerate(state.items.tolist()):
            if pos < before[item] and self.values[item] > 0:
                raised += 1
                reason = state.reasons.get(item, "")
                if not reason.startswith(("promoted:", "boosted:")):
                    state.reasons[item] = f"boosted:{self.name}"
        return "; ".join(filter(None, [f"{raised} candidate(s) moved up", self.note]))


class MaxPerCategoryRule(Rule):
    type = "max_per_category"

    def __init__(self, name: str, column: str, limit: int, values: np.ndarray) -> None:
        super().__init__(name)
        self.column = column
        self.limit = limit
        missing = np.isnan(values) if values.dtype.kind == "f" else values == ""
        _, codes = np.unique(values, return_inverse=True)
        # -1: no value, never capped (an unknown category is not one category).
        self.codes = np.where(missing, -1, codes.reshape(-1)).astype(np.int64)

    def apply(self, state: _State, ctx: _Context) -> str:
        codes = self.codes[state.items]
        n_codes = int(self.codes.max(initial=-1)) + 1
        # Pinned items are fixed: they use up their category's allowance first.
        pinned = [self.codes[i] for i in state.pins.values()]
        used = np.bincount([c for c in pinned if c >= 0], minlength=max(n_codes, 1))
        # Position of each free item within its category, in rank order (a stable group count).
        order = np.argsort(codes, kind="stable")
        sorted_codes = codes[order]
        starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
        lengths = np.diff(np.r_[starts, len(codes)])
        within = np.empty(len(codes), dtype=np.int64)
        within[order] = np.arange(len(codes)) - np.repeat(starts, lengths)
        allowance = np.where(codes >= 0, used[np.maximum(codes, 0)], 0)
        keep = (codes < 0) | (within + allowance < self.limit)
        state.keep(keep)
        if self not in state.caps:
            state.caps.append(self)
        return f"at most {self.limit} per value of {self.column}"


class PromoteRule(Rule):
    type = "promote"

    def __init__(self, name: str, items: list[int], slots: list[int], note: str = "") -> None:
        super().__init__(name)
        self.items = items
        self.slots = slots
        self.note = note

    def apply(self, state: _State, ctx: _Context) -> str:
        taken = set(state.pins.values())
        wanted = np.array([i for i in self.items if i not in taken], dtype=np.int64)
        ok = np.ones(len(wanted), dtype=bool)
        for gate in ctx.gates:
            ok &= gate.admits(wanted, ctx.user)
        queue = wanted[ok].tolist()
        notes = []
        if (~ok).any():
            notes.append(f"{int((~ok).sum())} listed item(s) fail the filters")
        placed = []
        for slot in self.slots:
            if slot in state.pins:
                notes.append(f"slot {slot} already taken by an earlier rule")
                continue
            if not queue:
                break
            item = queue.pop(0)
            state.pins[slot] = item
            state.reasons[item] = f"promoted:{self.name}"
            placed.append(item)
        if placed:
            free = ~_member(state.items, np.array(placed, dtype=np.int64))
            state.items, state.scores = state.items[free], state.scores[free]
            # A cap that ran earlier still holds: pinned items count first, so the lowest
            # ranked free item of a full category gives way.
            for cap in state.caps:
                cap.apply(state, ctx)
        return "; ".join([f"{len(placed)} item(s) pinned", *notes, *filter(None, [self.note])])


def apply_rules(
    rules: Sequence[Rule],
    items: np.ndarray,
    scores: np.ndarray,
    user: UserContext,
    k: int,
    base_reason: str = MODEL,
    score_of: Callable[[np.ndarray], np.ndarray] | None = None,
    trace: bool = True,
) -> Ranked:
    """Rank candidates (item indices with model scores) through `rules`, in order, and cut to k.

    Before the first boost, the scores of the items still in the list are scaled to [0, 1], so
    a boost means the same for every request whatever the raw scale (and a negative raw score is
    never boosted downwards). `score_of` gives the model score of promoted items that were not
    among the candidates. `trace=False` skips the per-rule trace (for evaluation passes that
    only need the lists).
    """
    items = np.asarray(items, dtype=np.int64)
    raw = np.asarray(scores, dtype=np.float64)
    order = np.lexsort((items, -raw))  # best first; ties by item index, as in stage 2
    items, raw = items[order], raw[order]
    state = _State(items, raw.copy(), k)
    ctx = _Context(user, [r for r in rules if r.gate])
    traces = []
    for rule in rules:
        if not trace:
            rule.apply(state, ctx)
            continue
        before, removed = state.top(), state.removed
        note = rule.apply(state, ctx)
        after = state.top()
        traces.append(_diff(rule, before, after, state.removed - removed, note))
    state.normalise()  # rank scores are reported on the same scale with or without boosts
    top = np.array(state.top(), dtype=np.int64)
    model = _lookup(items, raw, top)
    outside = np.isnan(model)  # promoted items that were not candidates
    if outside.any():
        model[outside] = score_of(top[outside]) if score_of is not None else np.nan
    # Free items have a rank score; pinned ones are placed by slot, not by score.
    ranked = _lookup(state.items, state.scores, top)
    free = ~np.isnan(ranked)
    return Ranked(
        items=top,
        scores=model,
        rank_scores=[float(v) if f else None for v, f in zip(ranked, free, strict=True)],
        reasons=[state.reasons.get(i, base_reason) for i in top.tolist()],
        trace=traces,
        available=state.size(),
    )


def _member(items: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """np.isin for the small integer arrays of one request, without its per-call overhead."""
    if not len(pool) or not len(items):
        return np.zeros(len(items), dtype=bool)
    ordered = np.sort(pool)
    pos = np.minimum(np.searchsorted(ordered, items), len(ordered) - 1)
    return ordered[pos] == items


def _lookup(keys: np.ndarray, values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """values[keys == w] for each w in wanted (NaN where absent); keys are distinct."""
    out = np.full(len(wanted), np.nan)
    if not len(keys) or not len(wanted):
        return out
    sorter = np.argsort(keys, kind="stable")
    pos = np.minimum(np.searchsorted(keys, wanted, sorter=sorter), len(keys) - 1)
    hit = keys[sorter[pos]] == wanted
    out[hit] = values[sorter[pos[hit]]]
    return out


def _diff(rule: Rule, before: list[int], after: list[int], dropped: int, note: str) -> RuleTrace:
    was = {item: r for r, item in enumerate(before, 1)}
    now = {item: r for r, item in enumerate(after, 1)}
    return RuleTrace(
        rule=rule.name,
        type=rule.type,
        removed=[i for i in before if i not in now],
        added=[i for i in after if i not in was],
        moved=[(i, was[i], now[i]) for i in after if i in was and was[i] != now[i]],
        dropped=dropped,
        note=note,
    )


# --- from the validated config --------------------------------------------------------------


def _scaled(values: np.ndarray) -> np.ndarray:
    """A numeric column min-max scaled to [0, 1] over the catalogue; missing counts as 0."""
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(len(values))
    lo, hi = values[finite].min(), values[finite].max()
    out = np.zeros(len(values))
    if hi > lo:
        out[finite] = (values[finite] - lo) / (hi - lo)
    else:
        out[finite] = 1.0
    return out


def _missing_note(missing: list[str]) -> str:
    if not missing:
        return ""
    shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
    return f"{len(missing)} listed item(s) not in the model: {shown}"


def compile_rules(configs: Sequence[AnyRule], catalogue: Catalogue) -> list[Rule]:
    """Build the rule objects for a catalogue. Raises RuleColumnError for a missing column."""
    from . import config as cfgmod

    rules: list[Rule] = []
    have = ["item_id", *catalogue.columns]

    def column(cfg: Any) -> np.ndarray:
        values = catalogue.column(cfg.column)
        if values is None:
            raise RuleColumnError(cfg.path, cfg.column, have)
        return np.asarray(values)

    for cfg in configs:
        name = str(cfg.name)
        if isinstance(cfg, cfgmod.ExcludeSeenRule):
            rules.append(ExcludeSeenRule(name, cfg.events, cfg.lookback_days))
        elif isinstance(cfg, cfgmod.FilterRule):
            rules.append(FilterRule(name, cfg.column, column(cfg), cfg))
        elif isinstance(cfg, cfgmod.BoostRule):
            if cfg.column is not None:
                values = column(cfg)
                if values.dtype.kind != "f":
                    raise RuleColumnError(cfg.path, cfg.column, have)
                rules.append(BoostRule(name, cfg.weight, _scaled(values)))
            else:
                found, missing = catalogue.positions(cfg.items or [])
                listed = np.zeros(len(catalogue))
                listed[found] = 1.0
                rules.append(BoostRule(name, cfg.weight, listed, _missing_note(missing)))
        elif isinstance(cfg, cfgmod.MaxPerCategoryRule):
            rules.append(MaxPerCategoryRule(name, cfg.column, cfg.limit, column(cfg)))
        elif isinstance(cfg, cfgmod.PromoteRule):
            found, missing = catalogue.positions(cfg.items)
            rules.append(PromoteRule(name, found, list(cfg.slots), _missing_note(missing)))
        else:  # pragma: no cover - the config union lists every type
            raise TypeError(f"no behaviour for rule type {type(cfg).__name__}")
    return rules


def static_pass_fraction(rules: Sequence[Rule], n_items: int) -> float:
    """The share of the catalogue that every filter rule lets through (user-independent), used to
    fetch enough candidates that the filters still leave k items."""
    mask = np.ones(n_items, dtype=bool)
    for rule in rules:
        if isinstance(rule, FilterRule):
            mask &= rule.mask
    return float(mask.mean()) if n_items else 1.0
