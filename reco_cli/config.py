"""The YAML configuration as strict pydantic models.

Precedence: model defaults < YAML file < command-line flags. Unknown keys, wrong types and
impossible values are refused before any work starts, naming the key path and what is allowed.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from . import columns as C
from .errors import ConfigError

DEFAULT_NULL_VALUES = ["", "NA", "NULL", "null", "N/A"]
TIMESTAMP_KEYWORDS = ("auto", "iso8601", "unix_s", "unix_ms")
EventType = Literal[
    "view",
    "click",
    "add_to_cart",
    "remove_from_cart",
    "favourite",
    "purchase",
    "return",
    "search",
    "rating",
    "impression",
]
NonNegative = Annotated[float, Field(ge=0)]
_EVENT_ORDER = list(C.EVENT_TYPES)


class StrictModel(BaseModel):
    # No setting is meaningfully infinite or NaN: `.inf` is a typo, not a weight.
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_number_mixups(cls, data: Any) -> Any:
        """`epochs: true` or `has_header: "no"` are mistakes, not values to coerce."""
        if not isinstance(data, dict):
            return data
        for name, value in data.items():
            field = cls.model_fields.get(str(name))
            if field is None:
                continue
            annotation = str(field.annotation)
            if field.annotation is bool and not isinstance(value, bool):
                raise ValueError(f"{name}: expected true or false, got {value!r}")
            numeric = "int" in annotation or "float" in annotation
            if isinstance(value, bool) and numeric and "bool" not in annotation:
                raise ValueError(f"{name}: expected a number, got {value!r}")
        return data


LaxDatetime = datetime


def _check_timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name such as 'UTC' or 'Europe/London')"
        ) from None
    return value


class SourceConfig(StrictModel):
    """One tabular input: a file, a glob, or a list of them, and how to read it."""

    path: str | list[str]
    format: Literal["auto", "csv", "tsv", "parquet"] = "auto"
    separator: str = ","
    has_header: bool = True
    encoding: str = "utf8"
    null_values: list[str] = Field(default_factory=lambda: list(DEFAULT_NULL_VALUES))
    decimal_comma: bool = False
    columns: dict[str, str | int]
    timestamp_format: str | list[str] = "auto"
    # The zone of timestamps written without an offset. Unset: an all-naive column is read as
    # UTC (and the summary says so); a column mixing naive and offset values is refused.
    timezone: str | None = None

    @field_validator("separator")
    @classmethod
    def _one_char(cls, value: str) -> str:
        if value == "\\t":
            value = "\t"
        if len(value) != 1:
            raise ValueError("separator must be one character, e.g. ',' ';' or '\\t'")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(
                f"unknown encoding {value!r} (e.g. utf8, utf-16, cp1252, latin-1)"
            ) from None
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return None if value is None else _check_timezone(value)

    @field_validator("path")
    @classmethod
    def _non_empty_path(cls, value: str | list[str]) -> str | list[str]:
        if not value:
            raise ValueError("path must name a file, a glob or a list of them")
        return value

    @model_validator(mode="after")
    def _positions(self) -> SourceConfig:
        for canon, col in self.columns.items():
            if isinstance(col, int) and self.has_header:
                raise ValueError(
                    f"columns.{canon} is a position ({col}) but has_header is true; name the "
                    "column instead, or set has_header: false"
                )
            if isinstance(col, int) and col < 0:
                raise ValueError(f"columns.{canon}: a position counts from 0, got {col}")
        return self

    @property
    def paths(self) -> list[str]:
        return [self.path] if isinstance(self.path, str) else list(self.path)

    @property
    def timestamp_formats(self) -> list[str]:
        fmt = self.timestamp_format
        return [fmt] if isinstance(fmt, str) else list(fmt)


class TimeWindow(StrictModel):
    start: LaxDatetime | None = None
    end: LaxDatetime | None = None

    @model_validator(mode="after")
    def _ordered(self) -> TimeWindow:
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError(f"time_window.start ({self.start}) must be before end ({self.end})")
        return self

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give an offset, e.g. 2017-11-25T00:00:00+08:00 or ...Z")
        return value


class EventsSource(SourceConfig):
    # Required when no event_type column is mapped: order lines are purchases, page logs views.
    default_event_type: EventType | None = None
    event_types: dict[str, EventType] = Field(default_factory=dict)
    exclude_items: list[str] = Field(default_factory=list)
    exclude_users: list[str] = Field(default_factory=list)

    @field_validator("exclude_items", "exclude_users", mode="before")
    @classmethod
    def _ids_are_text(cls, value: Any) -> Any:
        """Ids are compared as text (trimmed, like the data); YAML numbers lose leading zeros."""
        if not isinstance(value, list):
            return value
        for v in value:
            if isinstance(v, int | float) and not isinstance(v, bool):
                raise ValueError(
                    f"{v!r} is a number in YAML; quote ids ('{v}') so they keep their exact text"
                )
        return [v.strip() if isinstance(v, str) else v for v in value]

    exclude_event_types: list[EventType] = Field(default_factory=list)
    # Rows whose price is at or below this are excluded by config (e.g. 0 for stock adjustments).
    exclude_price_at_most: float | None = None
    # Events outside [start, end) are excluded by config (e.g. a dataset's documented window).
    time_window: TimeWindow | None = None
    # What an empty value in a mapped `weight` column means; NaN, inf and negatives are rejected.
    empty_weight: NonNegative = 1.0

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, value: dict[str, str | int]) -> dict[str, str | int]:
        unknown = sorted(set(value) - set(C.EVENT_COLUMNS))
        if unknown:
            raise ValueError(
                f"unknown canonical column(s) {unknown}; allowed: {', '.join(C.EVENT_COLUMNS)}"
            )
        if C.ITEM_ID not in value:
            raise ValueError("columns.item_id is required (the column holding the item id)")
        if C.USER_ID not in value and C.SESSION_ID not in value:
            raise ValueError("columns needs user_id or session_id (or both)")
        return value

    @model_validator(mode="after")
    def _event_type_known(self) -> EventsSource:
        if C.EVENT_TYPE not in self.columns and self.default_event_type is None:
            raise ValueError(
                "no columns.event_type is mapped, so set default_event_type to what every row "
                "is (e.g. purchase for order lines, view for page views, rating for ratings)"
            )
        return self

    @field_validator("timestamp_format")
    @classmethod
    def _formats(cls, value: str | list[str]) -> str | list[str]:
        return _check_timestamp_formats(value)


class KeywordColumn(StrictModel):
    """A text column derived from another one by keywords, e.g. a category from the title.

    `keywords` maps each value to the words that select it; the first value (in file order) with a
    whole-word, case-insensitive match wins, and an item matching none gets `default`.
    """

    source: str = C.TITLE
    keywords: dict[str, list[str]]
    default: str | None = None

    @field_validator("keywords")
    @classmethod
    def _non_empty(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        if not value:
            raise ValueError("keywords needs at least one value: [words]")
        for name, words in value.items():
            if not words or any(not str(w).strip() for w in words):
                raise ValueError(f"keywords.{name}: give a non-empty list of non-empty words")
        return value


class ItemsSource(SourceConfig):
    """Item metadata: `columns` maps item_id, title, category, price or any name to a column."""

    timestamp_format: str | list[str] = "auto"
    # Columns (by canonical name) read as numbers; the rest stay strings. price is always numeric.
    numeric_columns: list[str] = Field(default_factory=list)
    # New text columns derived at ingest from keywords in another column (see KeywordColumn).
    keyword_columns: dict[str, KeywordColumn] = Field(default_factory=dict)

    @field_validator("columns")
    @classmethod
    def _needs_item_id(cls, value: dict[str, str | int]) -> dict[str, str | int]:
        if C.ITEM_ID not in value:
            raise ValueError("columns.item_id is required for item metadata")
        return value

    @model_validator(mode="after")
    def _keyword_sources(self) -> ItemsSource:
        for name, derived in self.keyword_columns.items():
            if name in self.columns:
                raise ValueError(
                    f"data.items.keyword_columns.{name}: {name!r} is already in data.items.columns; "
                    "give the derived column another name"
                )
            if derived.source not in self.columns or derived.source == C.ITEM_ID:
                raise ValueError(
                    f"data.items.keyword_columns.{name}.source: {derived.source!r} is not a "
                    f"text column of data.items.columns ({sorted(self.columns)})"
                )
            if derived.source in self.numeric_columns or derived.source == C.PRICE:
                raise ValueError(
                    f"data.items.keyword_columns.{name}.source: {derived.source!r} is numeric"
                )
        return self

    @property
    def all_columns(self) -> list[str]:
        """Every column items.parquet will have: the mapped ones and the derived ones."""
        return [*self.columns, *self.keyword_columns]

    @property
    def numeric(self) -> set[str]:
        return ({C.PRICE, *self.numeric_columns} & set(self.columns)) - {C.ITEM_ID}


def _check_timestamp_formats(value: str | list[str]) -> str | list[str]:
    formats = [value] if isinstance(value, str) else value
    if not formats:
        raise ValueError("timestamp_format list is empty")
    for fmt in formats:
        if fmt not in TIMESTAMP_KEYWORDS and "%" not in fmt:
            raise ValueError(
                f"timestamp_format {fmt!r} is neither a chrono pattern (e.g. "
                f"'%Y-%m-%d %H:%M:%S') nor one of {', '.join(TIMESTAMP_KEYWORDS)}"
            )
    if "auto" in formats and len(formats) > 1:
        raise ValueError("'auto' cannot be combined with other timestamp formats")
    for fmt in formats:
        swapped = fmt.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")
        if swapped != fmt and swapped in formats:
            raise ValueError(
                f"both {fmt!r} and {swapped!r} are listed: a value like 03/02/2024 would be read "
                "day-first or month-first depending on the row; keep the one the export uses"
            )
    return value


_EXTRA_COLUMN = re.compile(r"^[a-z][a-z0-9_]*$")


class ImpressionsSource(SourceConfig):
    """An impression log: which item was shown, when, where, and (optionally) whether clicked.

    `columns` maps the canonical impression columns (item_id and timestamp required; user_id,
    request_id, position, clicked, session_id, arm, source optional) and any further lower-case
    name, carried as a string so reports can group by it.
    """

    # Keep only rows whose raw column has one of these values (a log mixing impressions with
    # clicks); other rows are counted as excluded by config, e.g. {event_type: [impression]}.
    where: dict[str, list[str]] = Field(default_factory=dict)
    # Experiment arm per input file: arm name -> glob of the files holding that arm's rows
    # (Open Bandit ships one file per policy). Use columns.arm when the arm is a column.
    arms: dict[str, str] = Field(default_factory=dict)

    @field_validator("columns")
    @classmethod
    def _impression_columns(cls, value: dict[str, str | int]) -> dict[str, str | int]:
        for need in (C.ITEM_ID, C.TIMESTAMP):
            if need not in value:
                raise ValueError(f"columns.{need} is required for an impression log")
        bad = sorted(
            n for n in value if n not in C.IMPRESSION_COLUMNS and not _EXTRA_COLUMN.match(n)
        )
        if bad:
            raise ValueError(
                f"column name(s) {bad} must be lower-case identifiers (canonical: "
                f"{', '.join(C.IMPRESSION_COLUMNS)}; any other name is carried as text)"
            )
        if C.IMPRESSION_ID in value:
            raise ValueError(f"{C.IMPRESSION_ID!r} is assigned by reco; map another name")
        return value

    @field_validator("timestamp_format")
    @classmethod
    def _formats(cls, value: str | list[str]) -> str | list[str]:
        return _check_timestamp_formats(value)

    @model_validator(mode="after")
    def _arm_once(self) -> ImpressionsSource:
        if self.arms and C.ARM in self.columns:
            raise ValueError(
                "set either columns.arm (a column) or arms (one file per arm), not both"
            )
        return self


class DataConfig(StrictModel):
    # Optional only for impression-only configs (e.g. Open Bandit): train and recommend need it.
    events: EventsSource | None = None
    items: ItemsSource | None = None
    impressions: ImpressionsSource | None = None
    session_gap_minutes: Annotated[float, Field(gt=0)] = 30.0
    max_reject_fraction: Annotated[float, Field(ge=0, le=1)] = 0.05
    keep_versions: Annotated[int, Field(ge=1)] = 3

    @model_validator(mode="after")
    def _some_input(self) -> DataConfig:
        if self.events is None and self.impressions is None:
            raise ValueError("data needs events (and/or impressions): nothing to read")
        return self

    def require_events(self, why: str = "this command") -> EventsSource:
        if self.events is None:
            raise ConfigError(
                f"{why} needs data.events, which this config does not set (it only reads "
                "data.impressions); use a config with an events source"
            )
        return self.events


class TrainConfig(StrictModel):
    event_weights: dict[EventType, NonNegative] = Field(
        default_factory=lambda: {  # type: ignore[arg-type]
            "view": 1.0,
            "click": 1.0,
            "add_to_cart": 3.0,
            "favourite": 2.0,
            "purchase": 5.0,
        }
    )
    aggregate: Literal["sum", "max", "count"] = "sum"
    max_weight: Annotated[float, Field(gt=0)] | None = None
    # Rating events below this are not positives (explicit-feedback data such as MovieLens).
    min_rating: float | None = None
    loss: Literal["warp", "bpr", "logistic", "warp-kos"] = "warp"
    learning_schedule: Literal["adagrad", "adadelta"] = "adagrad"
    no_components: Annotated[int, Field(gt=0, le=1024)] = 64
    learning_rate: Annotated[float, Field(gt=0)] = 0.05
    epochs: Annotated[int, Field(gt=0, le=100_000)] = 20
    # Epochs over the new events only, for `reco train --update`.
    update_epochs: Annotated[int, Field(gt=0, le=100_000)] = 5
    item_alpha: NonNegative = 0.0
    user_alpha: NonNegative = 0.0
    max_sampled: Annotated[int, Field(gt=0)] = 10
    num_threads: Annotated[int, Field(ge=1)] = 1
    # Item metadata columns used as LightFM item features (identity features are always kept).
    item_features: list[str] = Field(default_factory=list)
    normalize_features: bool = True
    keep_versions: Annotated[int, Field(ge=1)] = 3

    @field_validator("event_weights")
    @classmethod
    def _some_positive(cls, value: dict[str, float]) -> dict[str, float]:
        negative = [t for t in C.NEGATIVE_EVENT_TYPES if value.get(t, 0) > 0]
        if negative:
            raise ValueError(f"{negative} are never positives; remove them from event_weights")
        if not any(w > 0 for w in value.values()):
            raise ValueError("at least one event type needs a positive weight")
        return value


class IndexConfig(StrictModel):
    mode: Literal["auto", "annoy", "exact"] = "auto"
    n_trees: Annotated[int, Field(gt=0, le=1000)] = 50
    search_k: Literal["auto"] | Annotated[int, Field(gt=0)] = "auto"
    target_recall: Annotated[float, Field(gt=0, le=1)] = 0.95
    # Users sampled at build time to measure recall and latency against exact scoring.
    check_users: Annotated[int, Field(gt=0)] = 200


# --- business rules (recommend.rules) ---------------------------------------------------------
# One model per rule type, selected by `type:`; rules.py holds the behaviour of each.

Scalar = str | bool | int | float


class _Rule(StrictModel):
    # Shown in reasons (`boosted:<name>`), the --explain trace and the evaluation; unique.
    name: str | None = None
    # Where the rule came from in the YAML, for error messages ("recommend.rules[2]").
    _path: str = PrivateAttr(default="recommend.rules")

    @property
    def path(self) -> str:
        return self._path

    def default_name(self) -> str:
        column = getattr(self, "column", None)
        kind = str(getattr(self, "type", "rule"))
        return f"{kind}-{column}" if column else kind


class ExcludeSeenRule(_Rule):
    """Drop items the user had one of `events` with (within `lookback_days` of the data's end)."""

    type: Literal["exclude_seen"]
    events: Annotated[list[EventType], Field(min_length=1)] = Field(
        default_factory=lambda: ["purchase"]  # type: ignore[arg-type]
    )
    lookback_days: Annotated[float, Field(gt=0)] | None = None


class FilterRule(_Rule):
    """Keep (`action: include`) or drop (`action: exclude`) items whose column matches."""

    # `in` is a Python keyword: the field is in_, read and written as `in`.
    model_config = ConfigDict(
        extra="forbid",
        validate_default=True,
        allow_inf_nan=False,
        populate_by_name=True,
        serialize_by_alias=True,
    )
    type: Literal["filter"]
    column: str
    action: Literal["include", "exclude"] = "include"
    equals: Scalar | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in")
    not_in: list[Scalar] | None = None
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_condition(self) -> FilterRule:
        if all(v is None for v in (self.equals, self.in_, self.not_in, self.min, self.max)):
            raise ValueError("a filter needs a condition: equals, in, not_in, min or max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        if self.in_ is not None and not self.in_:
            raise ValueError("`in: []` matches nothing, so every item would be filtered out")
        if self.equals == "" or "" in (self.in_ or []) or "" in (self.not_in or []):
            raise ValueError(
                "an empty string is not a value to compare with (items without a value never "
                "match equals/in and always match not_in)"
            )
        return self


class BoostRule(_Rule):
    """Add `weight` x (a numeric column scaled to [0, 1], or 1 for listed items) to the
    candidate's model score normalised to [0, 1] within the request."""

    type: Literal["boost"]
    column: str | None = None
    items: list[str] | None = None
    weight: Annotated[float, Field(ge=0)]

    @model_validator(mode="after")
    def _column_or_items(self) -> BoostRule:
        if (self.column is None) == (self.items is None):
            raise ValueError("a boost needs exactly one of column (numeric) or items (a list)")
        if self.items is not None and not self.items:
            raise ValueError("items is empty")
        return self

    def default_name(self) -> str:
        return f"boost-{self.column}" if self.column else "boost"


class MaxPerCategoryRule(_Rule):
    """At most `limit` items per value of `column` (items without a value are not capped)."""

    type: Literal["max_per_category"]
    column: str = C.CATEGORY
    limit: Annotated[int, Field(ge=1)]


class PromoteRule(_Rule):
    """Fill `slots` (1-based positions), in order, with the first listed items that pass every
    exclude_seen and filter rule of the list."""

    type: Literal["promote"]
    items: Annotated[list[str], Field(min_length=1)]
    slots: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)]

    @field_validator("slots")
    @classmethod
    def _distinct(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError(f"slots must be distinct positions (got {value})")
        return value


RULE_TYPES: dict[str, type[_Rule]] = {
    "exclude_seen": ExcludeSeenRule,
    "filter": FilterRule,
    "boost": BoostRule,
    "max_per_category": MaxPerCategoryRule,
    "promote": PromoteRule,
}
AnyRule = ExcludeSeenRule | FilterRule | BoostRule | MaxPerCategoryRule | PromoteRule
RuleConfig = Annotated[AnyRule, Field(discriminator="type")]
# Rules that read item metadata columns, and those that need the column to be numeric.
NUMERIC_RULE_KEYS = ("min", "max")


class RecommendConfig(StrictModel):
    k: Annotated[int, Field(gt=0, le=10_000)] = 10
    n_candidates: Annotated[int, Field(gt=0)] = 200
    # Kept for older configs: becomes an exclude_seen rule in front of `rules` unless `rules`
    # has its own exclude_seen rule (then this mirrors that rule's event types). [] turns it off.
    exclude_seen: list[EventType] = Field(default_factory=lambda: ["purchase"])  # type: ignore[arg-type]
    fallback: Literal["popular", "error"] = "popular"
    # Business rules, applied in order after scoring and before the cut to k.
    rules: list[RuleConfig] | None = None

    @model_validator(mode="after")
    def _normalise_rules(self) -> RecommendConfig:
        rules = self.rules or []
        for i, rule in enumerate(rules):
            rule._path = f"recommend.rules[{i}]"
        seen_rules = [r for r in rules if isinstance(r, ExcludeSeenRule)]
        if seen_rules:
            union = sorted({e for r in seen_rules for e in r.events}, key=_EVENT_ORDER.index)
            explicit = "exclude_seen" in self.model_fields_set
            if explicit and sorted(self.exclude_seen, key=_EVENT_ORDER.index) != union:
                raise ValueError(
                    f"recommend.exclude_seen {self.exclude_seen} disagrees with the exclude_seen "
                    f"rule(s) in recommend.rules ({union}); remove recommend.exclude_seen"
                )
            self.exclude_seen = union
        taken: dict[str, str] = {}
        for rule in self.effective_rules:
            if rule.name is not None:
                if rule.name in taken:
                    raise ValueError(
                        f"{rule.path}.name: {rule.name!r} is already the name of {taken[rule.name]}; "
                        "rule names must be unique"
                    )
                taken[rule.name] = rule.path
        for rule in self.effective_rules:
            if rule.name is None:
                base = rule.default_name()
                name, n = base, 2
                while name in taken:
                    name, n = f"{base}-{n}", n + 1
                rule.name = name
                taken[name] = rule.path
        return self

    @property
    def effective_rules(self) -> list[AnyRule]:
        """The rules that run, in order: `rules`, with `exclude_seen` translated in front of
        them when they have no exclude_seen rule of their own."""
        rules: list[AnyRule] = list(self.rules or [])
        if self.exclude_seen and not any(isinstance(r, ExcludeSeenRule) for r in rules):
            legacy = ExcludeSeenRule(
                type="exclude_seen", events=list(self.exclude_seen), name="exclude_seen"
            )
            legacy._path = "recommend.exclude_seen"
            rules.insert(0, legacy)
        return rules


# Metrics computed per user at each k (and averaged over users), and over all lists at each k.
PER_USER_METRICS = ("precision", "recall", "ndcg", "map", "mrr", "hit_rate")
LIST_METRICS = ("coverage", "novelty", "mean_popularity")
BASELINES = ("popular", "random", "repeat", "exact")
_GATE_KEY = re.compile(r"^(?:lift_over_(?P<base>[a-z]+)\.)?(?P<metric>[a-z_]+)@(?P<k>\d+)$")


def parse_metric_key(key: str) -> tuple[str | None, str, int]:
    """'ndcg@10' -> (None, 'ndcg', 10); 'lift_over_popular.ndcg@10' -> ('popular', 'ndcg', 10)."""
    m = _GATE_KEY.match(key)
    if not m:
        raise ValueError(
            f"{key!r} is not a metric key: write <metric>@<k> (e.g. ndcg@10) or "
            "lift_over_<baseline>.<metric>@<k> (e.g. lift_over_popular.ndcg@10)"
        )
    base, metric = m.group("base"), m.group("metric")
    if metric not in PER_USER_METRICS + LIST_METRICS:
        allowed = ", ".join(PER_USER_METRICS + LIST_METRICS)
        raise ValueError(f"{key!r}: unknown metric {metric!r}; allowed: {allowed}")
    if base is not None and base not in BASELINES:
        raise ValueError(f"{key!r}: unknown baseline {base!r}; allowed: {', '.join(BASELINES)}")
    return base, metric, int(m.group("k"))


class GateConfig(StrictModel):
    """Bounds on one metric of the served model (warm users, point estimate)."""

    min: float | None = None
    max: float | None = None
    # With --against FILE: fail when the metric is more than this below the saved run (absolute).
    max_drop: NonNegative | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> GateConfig:
        if self.min is None and self.max is None and self.max_drop is None:
            raise ValueError("a gate needs min, max or max_drop")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(
                f"min ({self.min}) is above max ({self.max}): the gate could never pass"
            )
        return self


class EvaluateConfig(StrictModel):
    # time: one global cut (no event after it is trained on); last_n: each user's last N
    # positive events are held out (other users' later events stay in training: see README).
    split: Literal["time", "last_n"] = "time"
    # Time split: the cut is `cutoff` if given, else `test_days` before the last event, else
    # four fifths into the log's time span. A cutoff without an offset is read as UTC.
    cutoff: LaxDatetime | None = None
    test_days: Annotated[float, Field(gt=0)] | None = None
    last_n: Annotated[int, Field(gt=0)] = 1
    positive_events: list[EventType] = Field(default_factory=lambda: ["purchase"])  # type: ignore[arg-type]
    # Rating events below this are never test positives (defaults to train.min_rating).
    min_rating: float | None = None
    k: list[Annotated[int, Field(gt=0, le=1000)]] = Field(default_factory=lambda: [5, 10, 20])
    headline: str = "ndcg@10"
    bootstrap: Annotated[int, Field(ge=0, le=100_000)] = 1000
    # --against FILE without any gate carrying max_drop: the headline may drop at most this.
    max_drop: NonNegative = 0.02
    gates: dict[str, GateConfig] = Field(default_factory=dict)
    # Also measure the served lists with every business rule (recommend.rules) and with each
    # rule left out in turn: one more ranking pass per rule over the warm users.
    rule_impact: bool = True

    @field_validator("cutoff")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    @field_validator("positive_events")
    @classmethod
    def _positives(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("list at least one event type, e.g. [purchase]")
        bad = [t for t in value if t in C.NEGATIVE_EVENT_TYPES]
        if bad:
            raise ValueError(f"{bad} are never positives")
        return value

    @field_validator("k")
    @classmethod
    def _ks(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("list at least one cut-off, e.g. [5, 10, 20]")
        return sorted(set(value))

    @field_validator("headline")
    @classmethod
    def _headline(cls, value: str, info: ValidationInfo) -> str:
        base, metric, _ = _metric_key(value, info.data.get("k", []))
        if base is not None or metric not in PER_USER_METRICS:
            raise ValueError(
                f"{value!r} must be a per-user metric of the model "
                f"({', '.join(PER_USER_METRICS)}), e.g. ndcg@10"
            )
        return value

    @field_validator("gates")
    @classmethod
    def _gates(cls, value: dict[str, GateConfig], info: ValidationInfo) -> dict[str, GateConfig]:
        for key, gate in value.items():
            base, _, _ = _metric_key(key, info.data.get("k", []))
            if base is not None and gate.max_drop is not None:
                raise ValueError(f"{key}: max_drop applies to plain metrics such as ndcg@10")
        return value

    @model_validator(mode="after")
    def _split_keys(self) -> EvaluateConfig:
        if self.split == "last_n" and (self.cutoff is not None or self.test_days is not None):
            raise ValueError("cutoff and test_days apply to split: time, not last_n")
        if self.cutoff is not None and self.test_days is not None:
            raise ValueError("give either cutoff or test_days, not both")
        return self


def _metric_key(key: str, ks: list[int]) -> tuple[str | None, str, int]:
    base, metric, k = parse_metric_key(key)
    if k not in ks:
        raise ValueError(f"{key!r}: k={k} is not in evaluate.k {ks}")
    return base, metric, k


Period = Literal["day", "week", "month"]
PositiveInt = Annotated[int, Field(gt=0)]


class RetentionSettings(StrictModel):
    period: Period = "month"
    # N-day retention: an activity event in another session than the first, within (first event, first event + N days].
    days: list[PositiveInt] = Field(default_factory=lambda: [30, 60, 90])
    # Event types that count as being active (returns and bare impressions are not).
    activity_types: list[EventType] = Field(
        default_factory=lambda: [  # type: ignore[arg-type]
            "view",
            "click",
            "add_to_cart",
            "favourite",
            "purchase",
            "search",
            "rating",
        ]
    )

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("list at least one horizon, e.g. [30, 60, 90]")
        return sorted(set(value))

    @field_validator("activity_types")
    @classmethod
    def _activity(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("list at least one event type that counts as activity")
        return value


class EngagedSettings(StrictModel):
    """Who counts as rec-engaged: a `source` value on their events, or an impression join."""

    sources: list[str] = Field(default_factory=lambda: ["recommendation"])
    # Events on an item shown to the user at most this long before count as engagement.
    attribution_window_hours: Annotated[float, Field(gt=0)] = 24.0
    event_types: list[EventType] = Field(
        default_factory=lambda: ["click", "add_to_cart", "purchase"]  # type: ignore[arg-type]
    )
    # Only engagement within this many days of the user's first event counts (unset: any time).
    # Limiting it lessens the bias that long-lived users have more chances to engage.
    within_days: Annotated[float, Field(gt=0)] | None = None


class CtrSettings(StrictModel):
    # auto: the impressions' clicked column if it has values, else click events.
    clicks: Literal["auto", "label", "events"] = "auto"
    click_types: list[EventType] = Field(default_factory=lambda: ["click"])  # type: ignore[arg-type]
    # A click without a request id joins the user's latest impression of the item this recent.
    attribution_window_minutes: Annotated[float, Field(gt=0)] = 30.0
    # Groups with fewer impressions are flagged low-volume and listed after the others.
    min_impressions: Annotated[int, Field(ge=1)] = 100


class ReportConfig(StrictModel):
    # The zone periods (days, weeks, months) are bucketed in; naive input timestamps are read
    # with data.*.timezone, which is a different question.
    timezone: str = "UTC"
    confidence: Annotated[float, Field(gt=0, lt=1)] = 0.95
    # The arm others are compared with (unset: the first arm in sort order).
    control_arm: str | None = None
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    engaged: EngagedSettings = Field(default_factory=EngagedSettings)
    ctr: CtrSettings = Field(default_factory=CtrSettings)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        return _check_timezone(value)


class RecoConfig(StrictModel):
    workdir: str = ".reco"
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 42
    data: DataConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    recommend: RecommendConfig = Field(default_factory=RecommendConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)

    @model_validator(mode="after")
    def _cross_checks(self) -> RecoConfig:
        item_cols = set(self.data.items.columns) if self.data.items else set()
        for i, name in enumerate(self.train.item_features):
            if name not in item_cols:
                raise ValueError(
                    f"train.item_features[{i}]: {name!r} is not a column of data.items "
                    f"(configured: {sorted(item_cols) or 'no data.items'})"
                )
        if self.recommend.n_candidates < self.recommend.k:
            raise ValueError(
                f"recommend.n_candidates ({self.recommend.n_candidates}) must be at least "
                f"recommend.k ({self.recommend.k})"
            )
        self._check_rule_columns()
        for rule in self.recommend.effective_rules:
            beyond = [s for s in getattr(rule, "slots", []) if s > self.recommend.k]
            if beyond:
                raise ValueError(
                    f"{rule.path}.slots: {beyond} lie beyond recommend.k ({self.recommend.k}), "
                    "so the promoted item would never be shown"
                )
        ev = self.evaluate
        if C.RATING_EVENT in ev.positive_events and self.positive_min_rating is None:
            raise ValueError(
                "evaluate.positive_events includes rating: set evaluate.min_rating (or "
                "train.min_rating) so low ratings are never counted as positives"
            )
        return self

    def _check_rule_columns(self) -> None:
        """Each rule's column must exist in the item metadata, and be numeric where it counts."""
        items = self.data.items
        have = items.all_columns if items else []
        numeric = items.numeric if items else set()
        for rule in self.recommend.effective_rules:
            column = getattr(rule, "column", None)
            if column is None:
                continue
            if column not in have:
                known = f"data.items has {have}" if items else "no data.items is configured"
                raise ValueError(
                    f"{rule.path}.column: {column!r} is not an item metadata column ({known})"
                )
            needs_number = isinstance(rule, BoostRule) or (
                isinstance(rule, FilterRule) and (rule.min is not None or rule.max is not None)
            )
            if needs_number and column not in numeric:
                raise ValueError(
                    f"{rule.path}.column: {column!r} is a text column; this rule needs a numeric "
                    "one (price, or a column listed in data.items.numeric_columns)"
                )
            if isinstance(rule, FilterRule) and column in numeric:
                values = [rule.equals, *(rule.in_ or []), *(rule.not_in or [])]
                texts = [v for v in values if isinstance(v, str)]
                if texts:
                    raise ValueError(
                        f"{rule.path}: column {column!r} is numeric, but the filter compares it "
                        f"with text {texts[0]!r}; give numbers"
                    )

    @property
    def workdir_path(self) -> Path:
        return Path(self.workdir)

    @property
    def positive_min_rating(self) -> float | None:
        """The lowest rating that makes a test positive (evaluate's, else train's)."""
        ev = self.evaluate.min_rating
        return ev if ev is not None else self.train.min_rating


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys (plain YAML silently keeps the last one)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise ConfigError(
                f"duplicate key {key!r} at line {key_node.start_mark.line + 1}; keep one of them"
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def _allowed_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str] | None:
    """Walk the models along an error location to list the keys allowed at that point."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue  # a list position: the model stays the same
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            if part in RULE_TYPES:  # the tag pydantic adds inside a discriminated union
                current = RULE_TYPES[str(part)]
                continue
            return None
        current = _model_in(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [
            (f.alias or name)
            for name, f in current.model_fields.items()
            if not name.startswith("_")
        ]
    return None


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def format_validation_error(exc: ValidationError, where: str) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not str(p).startswith(("function-after", "literal")))
        key = _key_path(loc)
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(RecoConfig, loc)
            hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
            lines.append(f"{where}: unknown key {key!r}{hint}")
            continue
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            tag = (err.get("ctx") or {}).get("tag")
            what = f"unknown rule type {tag!r}" if tag else "a rule needs a type"
            lines.append(f"{where}: {key}.type: {what} (allowed: {', '.join(RULE_TYPES)})")
            continue
        msg = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
        if not loc or msg.startswith(key):
            # A cross-field check already names its key path.
            lines.append(f"{where}: {msg}{shown}")
        else:
            lines.append(f"{where}: {key}: {msg}{shown}")
    return "\n".join(lines)


def _key_path(loc: tuple[int | str, ...]) -> str:
    """('recommend', 'rules', 2, 'filter', 'column') -> 'recommend.rules[2].column'."""
    out = ""
    previous: int | str | None = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(previous, int) and part in RULE_TYPES:
            pass  # the union tag pydantic inserts after a rule's position
        else:
            out += f".{part}" if out else str(part)
        previous = part
    return out or "(top level)"


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RecoConfig:
    """Read, merge command-line overrides into, and validate a YAML config."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config {str(path)!r} is a folder; pass -c with a YAML file")
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found; pass -c PATH to a YAML config")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config is not UTF-8 text; re-save it as UTF-8") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys (workdir, data, ...)")
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value)
    try:
        return RecoConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from None


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value
