"""The canonical vocabulary: column names, event types and the Parquet schemas, defined once."""

from __future__ import annotations

from typing import Final

# Canonical event columns. Only (user_id or session_id), item_id and timestamp are required.
USER_ID: Final = "user_id"
ITEM_ID: Final = "item_id"
EVENT_TYPE: Final = "event_type"
TIMESTAMP: Final = "timestamp"
SESSION_ID: Final = "session_id"
QUANTITY: Final = "quantity"
PRICE: Final = "price"
RATING: Final = "rating"
WEIGHT: Final = "weight"
SOURCE: Final = "source"
REQUEST_ID: Final = "request_id"
POSITION: Final = "position"
DWELL_SECONDS: Final = "dwell_seconds"
QUERY: Final = "query"
ARM: Final = "arm"

# Provenance carried on rejects (and kept on events so a row can be traced to its input).
SOURCE_FILE: Final = "source_file"
SOURCE_LINE: Final = "source_line"
REASON: Final = "reason"

STRING_COLUMNS: Final = (USER_ID, ITEM_ID, EVENT_TYPE, SESSION_ID, SOURCE, REQUEST_ID, QUERY, ARM)
NUMERIC_COLUMNS: Final = (QUANTITY, PRICE, RATING, WEIGHT, POSITION, DWELL_SECONDS)
EVENT_COLUMNS: Final = (
    USER_ID,
    ITEM_ID,
    EVENT_TYPE,
    TIMESTAMP,
    SESSION_ID,
    QUANTITY,
    PRICE,
    RATING,
    WEIGHT,
    SOURCE,
    REQUEST_ID,
    POSITION,
    DWELL_SECONDS,
    QUERY,
    ARM,
)
ID_COLUMNS: Final = (USER_ID, ITEM_ID, SESSION_ID, REQUEST_ID)

# Canonical event types. Raw values in a file are mapped onto these by `event_types`.
VIEW: Final = "view"
CLICK: Final = "click"
ADD_TO_CART: Final = "add_to_cart"
REMOVE_FROM_CART: Final = "remove_from_cart"
FAVOURITE: Final = "favourite"
PURCHASE: Final = "purchase"
RETURN: Final = "return"
SEARCH: Final = "search"
RATING_EVENT: Final = "rating"
# A recommended item shown in a slot, when a log mixes impressions with other events.
IMPRESSION: Final = "impression"
EVENT_TYPES: Final = (
    VIEW,
    CLICK,
    ADD_TO_CART,
    REMOVE_FROM_CART,
    FAVOURITE,
    PURCHASE,
    RETURN,
    SEARCH,
    RATING_EVENT,
    IMPRESSION,
)
# Never positives for training, whatever weights a config gives.
NEGATIVE_EVENT_TYPES: Final = (REMOVE_FROM_CART, RETURN)

# Item metadata columns with a meaning; any other configured column is carried as-is.
TITLE: Final = "title"
CATEGORY: Final = "category"

# Impression logs (what was shown, for CTR).
CLICKED: Final = "clicked"
IMPRESSION_ID: Final = "impression_id"
IMPRESSION_COLUMNS: Final = (
    USER_ID,
    ITEM_ID,
    TIMESTAMP,
    REQUEST_ID,
    POSITION,
    CLICKED,
    SESSION_ID,
    ARM,
    SOURCE,
)


def event_schema() -> dict[str, object]:
    """The Parquet schema of events.parquet (imported lazily: polars stays off the recommend path)."""
    import polars as pl

    schema: dict[str, object] = {}
    for name in EVENT_COLUMNS:
        if name == TIMESTAMP:
            schema[name] = pl.Datetime("us", "UTC")
        elif name in NUMERIC_COLUMNS:
            schema[name] = pl.Float64
        else:
            schema[name] = pl.String
    schema[SOURCE_FILE] = pl.String
    schema[SOURCE_LINE] = pl.Int64
    return schema
