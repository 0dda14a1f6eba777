"""Row accounting shared by every ingested source: read = kept + rejected + excluded + duplicates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from . import columns as C

# The value of the kind column for each way a row can end.
KINDS = {"kept": "kept", "rejected": "rejected", "excluded": "excluded", "duplicate": "duplicates"}


@dataclass
class FileCounts:
    path: str
    read: int = 0
    kept: int = 0
    rejected: int = 0
    excluded: int = 0
    duplicates: int = 0

    @property
    def balanced(self) -> bool:
        return self.read == self.kept + self.rejected + self.excluded + self.duplicates

    @property
    def reject_share(self) -> float:
        """Rejected rows among those not excluded on purpose."""
        considered = self.read - self.excluded
        return round(self.rejected / considered, 6) if considered else 0.0


def count_rows(
    classified: pl.DataFrame, files: list[str], kind: str
) -> tuple[list[FileCounts], FileCounts]:
    """Per file and in total, from a frame with one row per input row and its `kind`."""
    counts = {
        (path, k): int(n)
        for path, k, n in classified.group_by(C.SOURCE_FILE, kind).len().iter_rows()
    }
    per_file = []
    for path in files:
        fc = FileCounts(path, **{attr: counts.get((path, k), 0) for k, attr in KINDS.items()})
        # Every row has exactly one kind, so this sum is what was read.
        fc.read = fc.kept + fc.rejected + fc.excluded + fc.duplicates
        per_file.append(fc)
    totals = FileCounts("all files")
    for fc in per_file:
        for name in ("read", *KINDS.values()):
            setattr(totals, name, getattr(totals, name) + getattr(fc, name))
    return per_file, totals


def reasons(dropped: pl.DataFrame, kind_column: str, kind: str) -> dict[str, int]:
    """Reason -> rows, most frequent first, for the dropped rows of one kind."""
    part = dropped.filter(pl.col(kind_column) == kind).group_by(C.REASON).len()
    part = part.sort(["len", C.REASON], descending=[True, False])
    return {str(r): int(n) for r, n in part.iter_rows()}


def first_reason(pairs: Sequence[tuple[pl.Expr, pl.Expr | str]]) -> pl.Expr:
    """The reason of the first condition that holds, in priority order (null: none holds)."""
    expr: pl.Expr = pl.lit(None, pl.String)
    for cond, reason in reversed(pairs):
        value = reason if isinstance(reason, pl.Expr) else pl.lit(reason)
        expr = pl.when(cond.fill_null(False)).then(value).otherwise(expr)
    return expr
