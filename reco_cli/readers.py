"""Read one configured source (CSV/TSV/Parquet files) into raw string columns with provenance.

Every column is read as a string with one explicit schema (never inferred), so ids keep their
leading zeros and a late odd value cannot abort the load. Encodings other than UTF-8 are
transcoded first; a UTF-16 file without the setting is refused with the key to set.
"""

from __future__ import annotations

import codecs
import csv
import glob
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from . import columns as C
from .config import SourceConfig
from .errors import InputDataError

ROW = "__row"  # 0-based record number within its file
RAGGED = "__ragged"  # the record had more fields than the header
NATIVE_TS = "__ts_native"  # a Parquet timestamp column that is already temporal
_UTF8_NAMES = {"utf8", "utf-8", "utf_8", "u8", "utf-8-sig", "utf_8_sig"}
_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
DATA_EXTENSIONS = (".csv", ".tsv", ".txt", ".parquet", ".pq")


@dataclass
class SourceFile:
    """One input file read into raw columns named by their canonical names."""

    path: str
    frame: pl.DataFrame  # canonical names -> String (plus ROW, RAGGED and maybe NATIVE_TS)
    header: list[str]
    notes: list[str] = field(default_factory=list)


def resolve_paths(source: SourceConfig, what: str) -> list[str]:
    """Expand the configured path(s): files, globs and folders, in a stable order."""
    found: list[str] = []
    for entry in source.paths:
        if any(ch in entry for ch in "*?["):
            matches = sorted(p for p in glob.glob(entry, recursive=True) if os.path.isfile(p))
            if not matches:
                raise InputDataError(
                    f"{what}: the pattern {entry!r} matches no files (run from the folder the "
                    "config's relative paths start from, or fix data path)"
                )
            found.extend(matches)
        elif os.path.isdir(entry):
            parts = sorted(
                str(p)
                for p in Path(entry).iterdir()
                if p.is_file() and p.suffix.lower() in DATA_EXTENSIONS
            )
            if not parts:
                raise InputDataError(f"{what}: the folder {entry!r} holds no CSV/TSV/Parquet files")
            found.extend(parts)
        elif os.path.isfile(entry):
            found.append(entry)
        else:
            raise InputDataError(
                f"{what}: file {entry!r} not found (relative paths start from the current "
                f"folder, {os.getcwd()}); fix the path in the config"
            )
    return found


def file_format(path: str, source: SourceConfig) -> str:
    if source.format != "auto":
        return source.format
    suffix = Path(path).suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    return "tsv" if suffix == ".tsv" else "csv"


def read_source_file(
    path: str,
    source: SourceConfig,
    key: str,
    needed: dict[str, str | int],
    required: list[list[str]],
    tmpdir: str,
    native_timestamp: str | None = None,
) -> SourceFile:
    """Read `path` and return the `needed` canonical columns as strings.

    `required` lists alternatives: each inner list needs at least one of its names mapped and
    present (e.g. [["item_id"], ["user_id", "session_id"]]). `key` is the config key path used
    in messages (e.g. "data.events").
    """
    fmt = file_format(path, source)
    if fmt == "parquet":
        return _read_parquet(path, source, key, needed, required, native_timestamp)
    return _read_csv(path, source, key, needed, required, tmpdir, fmt)


def _read_parquet(
    path: str,
    source: SourceConfig,
    key: str,
    needed: dict[str, str | int],
    required: list[list[str]],
    native_timestamp: str | None,
) -> SourceFile:
    try:
        lf = pl.scan_parquet(path)
        schema = lf.collect_schema()
    except Exception as exc:  # polars raises several types for a corrupt file
        raise InputDataError(f"{path}: not a readable Parquet file ({_first_line(exc)})") from None
    header = schema.names()
    mapping = _map_columns(path, header, needed, required, key, source)
    exprs = []
    notes = []
    for canon, col in mapping.items():
        dtype = schema[col]
        if canon == native_timestamp and dtype.is_temporal():
            ts = pl.col(col).cast(pl.Datetime("us", getattr(dtype, "time_zone", None)))
            exprs.append(ts.alias(NATIVE_TS))
            exprs.append(pl.lit(None, pl.String).alias(canon))
            continue
        if canon in C.ID_COLUMNS and dtype.is_integer():
            notes.append(
                f"{canon} is stored as integers in {Path(path).name}: converted to decimal strings "
                "(leading zeros, if the source had any, cannot be recovered)"
            )
        exprs.append(pl.col(col).cast(pl.String).alias(canon))
    try:
        frame = lf.select(exprs).with_row_index(ROW).collect()
    except Exception as exc:
        raise InputDataError(f"{path}: cannot read Parquet columns ({_first_line(exc)})") from None
    frame = frame.with_columns(pl.lit(False).alias(RAGGED))
    return SourceFile(path, frame, header, notes)


def _read_csv(
    path: str,
    source: SourceConfig,
    key: str,
    needed: dict[str, str | int],
    required: list[list[str]],
    tmpdir: str,
    fmt: str,
) -> SourceFile:
    separator = "\t" if fmt == "tsv" and source.separator == "," else source.separator
    readable = _as_utf8(path, source, key, tmpdir)
    if os.path.getsize(readable) == 0:
        header: list[str] = []
        return SourceFile(path, _empty_frame(needed), header, [f"{Path(path).name} is empty"])

    def scan(truncate: bool) -> pl.LazyFrame:
        return pl.scan_csv(
            readable,
            separator=separator,
            has_header=source.has_header,
            infer_schema=False,
            null_values=None,
            quote_char='"',
            row_index_name=ROW,
            truncate_ragged_lines=truncate,
            raise_if_empty=False,
            encoding="utf8",
        )

    try:
        header = [c for c in scan(False).collect_schema().names() if c != ROW]
    except Exception as exc:
        raise InputDataError(f"{path}: cannot read the header ({_first_line(exc)})") from None
    mapping = _map_columns(path, header, needed, required, key, source, separator)
    select = [pl.col(ROW)] + [pl.col(col).alias(canon) for canon, col in mapping.items()]
    ragged: list[int] = []
    try:
        frame = scan(False).select(select).collect()
    except pl.exceptions.ComputeError as exc:
        text = str(exc)
        if "more fields" not in text:
            raise InputDataError(_csv_error(path, text, source, key)) from None
        # Some records have more fields than the header: reject exactly those, keep the rest.
        ragged = _ragged_records(readable, separator, len(header), source.has_header)
        frame = scan(True).select(select).collect()
    frame = frame.with_columns(pl.col(ROW).is_in(ragged).alias(RAGGED))
    return SourceFile(path, frame, header)


def _empty_frame(needed: dict[str, str | int]) -> pl.DataFrame:
    schema: dict[str, pl.DataType] = {ROW: pl.UInt32()}
    schema.update({canon: pl.String() for canon in needed})
    schema[RAGGED] = pl.Boolean()
    return pl.DataFrame(schema=schema)


def _map_columns(
    path: str,
    header: list[str],
    needed: dict[str, str | int],
    required: list[list[str]],
    key: str,
    source: SourceConfig,
    separator: str = ",",
) -> dict[str, str]:
    """Canonical name -> column in the file; a missing column is an error showing the header."""
    mapping: dict[str, str] = {}
    missing: list[str] = []
    for canon, col in needed.items():
        if isinstance(col, int):
            if source.has_header:
                raise InputDataError(
                    f"{key}.columns.{canon} is a position ({col}) but has_header is true; "
                    "name the column instead, or set has_header: false"
                )
            if not 0 <= col < len(header):
                missing.append(f"{canon} (position {col})")
                continue
            mapping[canon] = header[col]
        elif col in header:
            mapping[canon] = col
        else:
            missing.append(f"{canon} ({col!r})")
    for group in required:
        if not any(name in mapping or name in needed for name in group):
            missing.append(" or ".join(group) + " (not mapped)")
    if missing:
        hint = ""
        joined = "".join(header)
        if len(header) == 1 and separator != ";" and ";" in joined:
            hint = " The header contains ';': set separator: \";\" for this file."
        elif len(header) == 1 and separator != "\t" and "\t" in joined:
            hint = ' The header contains tabs: set separator: "\\t" for this file.'
        elif any("\x00" in h for h in header):
            hint = " The header holds NUL bytes: the file is probably UTF-16; set encoding: utf-16."
        raise InputDataError(
            f"{path}: missing column(s) {', '.join(missing)} for {key}.columns; "
            f"the header found is {header!r}.{hint}"
        )
    return mapping


def _as_utf8(path: str, source: SourceConfig, key: str, tmpdir: str) -> str:
    """Return a path polars can read as UTF-8: the file itself, or a transcoded copy."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    wanted = source.encoding.lower().replace("_", "-")
    bom = next((name for mark, name in _BOMS if head.startswith(mark)), None)
    if wanted in _UTF8_NAMES:
        if bom:
            raise InputDataError(
                f"{path}: file is {bom} encoded (it starts with a {bom} byte-order mark); "
                f"set {key}.encoding: {bom.lower()} or re-save the file as UTF-8"
            )
        _check_utf8(path, key)
        return path
    # Transcode with Python's codecs: polars reads only UTF-8.
    fd, out = tempfile.mkstemp(suffix=".csv", dir=tmpdir)
    try:
        with (
            open(path, encoding=source.encoding, newline="") as src,
            os.fdopen(fd, "w", encoding="utf-8", newline="") as dst,
        ):
            for chunk in iter(lambda: src.read(1 << 20), ""):
                dst.write(chunk)
    except UnicodeDecodeError as exc:
        raise InputDataError(
            f"{path}: cannot be decoded as {source.encoding} ({exc.reason} at byte offset "
            f"{exc.start}); set {key}.encoding to the file's real encoding"
        ) from None
    _strip_bom(out)
    return out


def _strip_bom(path: str) -> None:
    with open(path, "rb") as fh:
        head = fh.read(3)
    if head == codecs.BOM_UTF8:
        with open(path, "rb") as fh:
            data = fh.read()[3:]
        with open(path, "wb") as fh:
            fh.write(data)


def _check_utf8(path: str, key: str) -> None:
    """Fail on the first invalid UTF-8 byte, naming its line and value."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    offset = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                pos = exc.start
                # The decoder may hold back up to 3 bytes of an incomplete sequence.
                prefix = chunk[: max(pos, 0)]
                line += prefix.count(b"\n")
                bad = chunk[pos] if 0 <= pos < len(chunk) else 0
                raise InputDataError(
                    f"{path}: not UTF-8: byte 0x{bad:02X} on line {line} (byte offset "
                    f"{offset + pos}); set {key}.encoding (e.g. cp1252 or latin-1) to the "
                    "file's encoding or re-save it as UTF-8"
                ) from None
            line += chunk.count(b"\n")
            offset += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise InputDataError(
            f"{path}: not UTF-8: the file ends inside a multi-byte character; "
            f"set {key}.encoding to the file's encoding"
        ) from None


def _ragged_records(path: str, separator: str, n_fields: int, has_header: bool) -> list[int]:
    """0-based record numbers (after the header) that have more fields than the header."""
    bad = []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter=separator, quotechar='"')
        if has_header:
            next(reader, None)
        for i, record in enumerate(reader):
            if len(record) > n_fields:
                bad.append(i)
    return bad


def _csv_error(path: str, text: str, source: SourceConfig, key: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    if "utf-8" in first.lower() or "utf8" in first.lower():
        return f"{path}: not valid UTF-8 ({first}); set {key}.encoding to the file's encoding"
    return f"{path}: cannot parse as CSV with separator {source.separator!r} ({first})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def line_number(row: pl.Expr, has_header: bool) -> pl.Expr:
    """The 1-based line of a record (exact unless earlier fields hold quoted newlines)."""
    return (row.cast(pl.Int64) + (2 if has_header else 1)).alias(C.SOURCE_LINE)
