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
from .timestamps import NATIVE_TS

ROW = "__row"  # 0-based record number within its file
RAGGED = "__ragged"  # the record had more fields than the header
_ALL_NULL = "__all_null"
_MULTILINE = "__multiline"
_UTF8_NAMES = {"utf8", "utf-8", "utf_8", "u8", "utf-8-sig", "utf_8_sig"}
_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
# A folder source reads these (hidden files are skipped); list other files explicitly.
DATA_EXTENSIONS = (".csv", ".tsv", ".parquet", ".pq")
_COMPRESSED = (
    (b"\x1f\x8b", "gzip"),
    (b"PK\x03\x04", "zip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ", "xz"),
)


@dataclass
class SourceFile:
    """One input file read into raw columns named by their canonical names.

    `frame` holds the canonical string columns plus ROW, RAGGED, SOURCE_LINE (the physical
    line where the record starts) and, for temporal Parquet columns, NATIVE_TS. Blank lines
    are not records: they are counted in `blank_lines` and left out.
    """

    path: str
    frame: pl.DataFrame
    header: list[str]
    notes: list[str] = field(default_factory=list)
    blank_lines: int = 0


def resolve_paths(source: SourceConfig, what: str, notes: list[str] | None = None) -> list[str]:
    """Expand the configured path(s): files, globs and folders, in a stable order.

    A file reached twice (listed twice, or by a glob and by name) is read once.
    """
    found = _expand_paths(source, what, notes if notes is not None else [])
    unique: list[str] = []
    seen: dict[str, str] = {}
    for path in found:
        real = os.path.realpath(path)
        if real in seen:
            if notes is not None:
                notes.append(f"{path} is listed more than once in {what}; it was read once")
            continue
        seen[real] = path
        unique.append(path)
    return unique


def _expand_paths(source: SourceConfig, what: str, notes: list[str]) -> list[str]:
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
            children = sorted(Path(entry).iterdir())
            parts = [
                str(p)
                for p in children
                if p.is_file()
                and not p.name.startswith(".")
                and p.suffix.lower() in DATA_EXTENSIONS
            ]
            skipped = [p.name for p in children if str(p) not in parts]
            if skipped:
                notes.append(
                    f"{entry}: skipped {len(skipped)} entries that are not .csv/.tsv/.parquet "
                    f"files or are hidden or folders ({', '.join(skipped[:5])}"
                    f"{', ...' if len(skipped) > 5 else ''}); list them explicitly to read them"
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
        value = pl.col(col)
        if dtype.is_float():
            value = pl.when(value.is_nan()).then(None).otherwise(value)  # NaN is Parquet's missing
        exprs.append(value.cast(pl.String).alias(canon))
    try:
        frame = lf.select(exprs).with_row_index(ROW).collect()
    except Exception as exc:
        raise InputDataError(f"{path}: cannot read Parquet columns ({_first_line(exc)})") from None
    frame = frame.with_columns(
        pl.lit(False).alias(RAGGED), (pl.col(ROW).cast(pl.Int64) + 1).alias(C.SOURCE_LINE)
    )
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
    for canon, col in mapping.items():
        copies = [h for h in header if h.startswith(f"{col}_duplicated_")]
        if copies:
            raise InputDataError(
                f"{path}: column {col!r} ({key}.columns.{canon}) appears {len(copies) + 1} times "
                "in the header; rename the copies so the mapping is unambiguous"
            )
    # Blank lines and quoted newlines are the only reasons record numbers and lines differ.
    all_null = pl.all_horizontal([pl.col(c).is_null() for c in header])
    multiline = pl.any_horizontal([pl.col(c).str.contains("\n", literal=True) for c in header])
    select = [
        pl.col(ROW),
        *[pl.col(col).alias(canon) for canon, col in mapping.items()],
        all_null.alias(_ALL_NULL),
        multiline.alias(_MULTILINE),
    ]
    ragged: list[int] = []
    try:
        frame = scan(False).select(select).collect()
    except pl.exceptions.ComputeError as exc:
        text = str(exc)
        if "more fields" not in text:
            raise InputDataError(_csv_error(path, text, source, key)) from None
        # Some records have more fields than the header: reject exactly those, keep the rest.
        ragged = _records(readable, separator, source.has_header, len(header)).ragged
        frame = scan(True).select(select).collect()
    frame = frame.with_columns(pl.col(ROW).is_in(ragged).alias(RAGGED))
    first = 2 if source.has_header else 1
    blank_lines = 0
    if frame.select(pl.col(_ALL_NULL).any() | pl.col(_MULTILINE).any()).item():
        records = _records(readable, separator, source.has_header, len(header))
        lines = pl.Series(C.SOURCE_LINE, records.lines, dtype=pl.Int64)
        frame = frame.with_columns(lines.gather(frame.get_column(ROW)))
        blank = frame.get_column(ROW).is_in(records.blank)
        blank_lines = int(blank.sum())
        frame = frame.filter(~blank)
    else:
        frame = frame.with_columns((pl.col(ROW).cast(pl.Int64) + first).alias(C.SOURCE_LINE))
    frame = frame.drop(_ALL_NULL, _MULTILINE)
    return SourceFile(path, frame, header, blank_lines=blank_lines)


def _empty_frame(needed: dict[str, str | int]) -> pl.DataFrame:
    schema: dict[str, pl.DataType] = {ROW: pl.UInt32()}
    schema.update({canon: pl.String() for canon in needed})
    schema[RAGGED] = pl.Boolean()
    schema[C.SOURCE_LINE] = pl.Int64()
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
        head = fh.read(1 << 16)
    for magic, kind in _COMPRESSED:
        if head.startswith(magic):
            raise InputDataError(
                f"{path}: file is {kind}-compressed; decompress it first (reco reads plain "
                "CSV/TSV or Parquet)"
            )
    if b"\r" in head and b"\n" not in head:
        raise InputDataError(
            f"{path}: lines end with a bare carriage return (old Mac style); convert the file "
            "to \\n or \\r\\n line endings"
        )
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
    except UnicodeError as exc:  # e.g. "UTF-16 stream does not start with BOM"
        raise InputDataError(
            f"{path}: cannot be decoded as {source.encoding} ({exc}); for a file without a "
            f"byte-order mark name the byte order, e.g. {key}.encoding: utf-16-le"
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


@dataclass
class _RecordScan:
    lines: list[int]  # physical line where each record starts
    blank: list[int]  # records that are blank lines
    ragged: list[int]  # records with more fields than the header


def _records(path: str, separator: str, has_header: bool, n_fields: int) -> _RecordScan:
    """One pass of Python's csv reader, numbering records as polars does (slow path only)."""
    scan = _RecordScan([], [], [])
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter=separator, quotechar='"')
        if has_header:
            next(reader, None)
        done = reader.line_num
        for i, record in enumerate(reader):
            scan.lines.append(done + 1)
            done = reader.line_num
            if not record:
                scan.blank.append(i)
            elif len(record) > n_fields:
                scan.ragged.append(i)
    return scan


def _csv_error(path: str, text: str, source: SourceConfig, key: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    if "utf-8" in first.lower() or "utf8" in first.lower():
        return f"{path}: not valid UTF-8 ({first}); set {key}.encoding to the file's encoding"
    return f"{path}: cannot parse as CSV with separator {source.separator!r} ({first})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def parse_number(text: pl.Expr, decimal_comma: bool) -> pl.Expr:
    """A string column as Float64 (null where it is not a number).

    With `decimal_comma` the export is European: `1.234,5` is 1234.5, so dots are thousands
    separators and the comma is the decimal mark.
    """
    if decimal_comma:
        text = text.str.replace_all(".", "", literal=True).str.replace(",", ".", literal=True)
    return text.cast(pl.Float64, strict=False)
