"""Source files: detect format, compression, encoding, delimiter and header, then load.

:func:`inspect_source` looks at the first bytes of a file and returns a
:class:`SourceInfo`; :func:`load_source` reads the whole file into a DuckDB table
of VARCHAR columns (IDs stay strings: ``007`` is not ``7``) plus a ``__row``
record number, and returns the records the parser had to reject, so that the
caller can account for every one of them.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from core.errors import DataError, UnusableFileError
from core.mapping import looks_like_header

MAX_FILE_BYTES_ENV = "BEHAVIORLENS_MAX_FILE_MB"
DEFAULT_MAX_FILE_MB = 4096
SNIFF_BYTES = 256 * 1024
MAX_LINE_BYTES = 64 * 1024 * 1024
DELIMITERS = (",", "\t", ";", "|")
ROW = "__row"
_DELIM_NAMES = {",": "comma", "\t": "TAB", ";": "semicolon", "|": "pipe"}


@dataclass
class SourceInfo:
    """What :func:`inspect_source` learned about a file."""

    path: Path
    format: str  # "csv" | "parquet" | "jsonl" | "json"
    compression: str | None = None  # "gzip" or None
    encoding: str = "utf-8"
    delimiter: str | None = None
    header: bool = True
    columns: list[str] = field(default_factory=list)
    size_bytes: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def delimiter_name(self) -> str | None:
        return None if self.delimiter is None else _DELIM_NAMES.get(self.delimiter, self.delimiter)


@dataclass
class Malformed:
    """A record the parser could not split into the expected columns."""

    line: int
    error: str
    raw: str


def max_file_bytes() -> int:
    """The ingest size cap in bytes (``BEHAVIORLENS_MAX_FILE_MB``, default 4096 MB)."""
    raw = os.environ.get(MAX_FILE_BYTES_ENV, str(DEFAULT_MAX_FILE_MB))
    try:
        return int(float(raw) * 1024 * 1024)
    except ValueError as exc:
        raise DataError(f"{MAX_FILE_BYTES_ENV}={raw!r} is not a number of megabytes") from exc


def inspect_source(path: str | os.PathLike[str], columns: list[str] | None = None,
                   max_bytes: int | None = None) -> SourceInfo:
    """Detect how to read ``path``; raise UnusableFileError when it cannot be read at all."""
    path = Path(path)
    if not path.is_file():
        raise UnusableFileError(f"{path}: no such file")
    size = path.stat().st_size
    cap = max_file_bytes() if max_bytes is None else max_bytes
    if size == 0:
        raise UnusableFileError(f"{path.name} is empty (0 bytes): export the log again with its rows")
    if size > cap:
        raise UnusableFileError(
            f"{path.name} is {size / 2**20:.0f} MB, over the {cap / 2**20:.0f} MB cap: split the file "
            f"or raise the cap with {MAX_FILE_BYTES_ENV}"
        )
    raw_head = path.read_bytes()[:4] if size < 4 else _read_prefix(path, 4)
    info = SourceInfo(path=path, format="csv", size_bytes=size)
    if raw_head.startswith(b"PAR1"):
        info.format = "parquet"
        info.columns = _parquet_columns(path)
        return info
    if raw_head.startswith(b"\x1f\x8b"):
        info.compression = "gzip"
    head, complete = _text_head(path, info.compression)
    _decide_encoding(info, head)
    text = head.decode(info.encoding, errors="replace").lstrip("\ufeff")
    _refuse_binary(path, text)
    stripped = text.lstrip()
    if stripped.startswith("{"):
        info.format = "jsonl"
        info.columns = _jsonl_keys(path, text)
    elif stripped.startswith("["):
        raise UnusableFileError(
            f"{path.name} is a JSON array, not JSON lines: write one JSON object per line (JSONL)"
        )
    else:
        _sniff_csv(info, text, complete, columns)
    return info


def _read_prefix(path: Path, n: int) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def _text_head(path: Path, compression: str | None) -> tuple[bytes, bool]:
    """The first SNIFF_BYTES of the (decompressed) file and whether that is all of it."""
    if compression != "gzip":
        data = _read_prefix(path, SNIFF_BYTES + 1)
        return data[:SNIFF_BYTES], len(data) <= SNIFF_BYTES
    try:
        with gzip.open(path, "rb") as fh:
            data = fh.read(SNIFF_BYTES + 1)
    except (EOFError, OSError, zlib.error) as exc:
        raise UnusableFileError(
            f"{path.name} is a truncated or corrupt gzip file ({exc}): compress the log again"
        ) from exc
    if not data:
        raise UnusableFileError(f"{path.name} is an empty gzip file: it holds no rows")
    return data[:SNIFF_BYTES], len(data) <= SNIFF_BYTES


def _decide_encoding(info: SourceInfo, head: bytes) -> None:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UnusableFileError(
            f"{info.path.name} is UTF-16 encoded: save it as UTF-8 (or latin-1) and upload again"
        )
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        fallback_to_latin1(info)


def fallback_to_latin1(info: SourceInfo) -> None:
    """Switch ``info`` to latin-1 and record the warning (once)."""
    if info.encoding != "latin-1":
        info.encoding = "latin-1"
        info.warnings.append(
            f"{info.path.name} is not valid UTF-8; it was read as latin-1 (ISO-8859-1). "
            "Check accented characters in the report."
        )


def _refuse_binary(path: Path, text: str) -> None:
    sample = text[:65536]
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\t\r\n")
    if "\x00" in sample or controls > max(8, len(sample) // 20):
        raise UnusableFileError(
            f"{path.name} is not tabular text (it looks binary): expected CSV/TSV with a header, "
            "Parquet, or JSON lines, optionally gzip-compressed"
        )


def _parquet_columns(path: Path) -> list[str]:
    try:
        con = duckdb.connect()
        try:
            rows = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
        finally:
            con.close()
    except duckdb.Error as exc:
        raise UnusableFileError(f"{path.name} is not a readable Parquet file: {first_line(exc)}") from exc
    return [r[0] for r in rows]


def _jsonl_keys(path: Path, text: str) -> list[str]:
    keys: dict[str, None] = {}
    for line in text.splitlines()[:500]:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            keys.update(dict.fromkeys(obj))
    if not keys:
        raise UnusableFileError(
            f"{path.name} starts like JSON but no line holds a JSON object: expected JSON lines, "
            'one object per line such as {"user_id": "u1", "item_id": "i9", ...}'
        )
    return list(keys)


def _sniff_csv(info: SourceInfo, text: str, complete: bool, columns: list[str] | None) -> None:
    lines = text.splitlines(keepends=True)
    if not complete and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut by the sniff window
    lines = [ln for ln in lines if ln.strip()][:400]
    if not lines:
        raise UnusableFileError(f"{info.path.name} holds only blank lines: it has no rows")
    delim, rows = _pick_delimiter(lines)
    info.delimiter = delim
    width = max(len(r) for r in rows[:1]) if rows else 1
    if delim is None or width < 2 and not columns:
        raise UnusableFileError(
            f"{info.path.name}: found a single column; expected a delimited file with at least a "
            "user and an item column (delimiters tried: comma, TAB, semicolon, pipe)"
        )
    first, data = rows[0], rows[1:]
    if columns:
        _use_given_columns(info, first, data, columns)
    else:
        info.header = looks_like_header(first, data)
        names = list(first) if info.header else [f"column{i}" for i in range(len(first))]
        if not info.header:
            info.warnings.append(
                f"{info.path.name} has no header row that could be recognized; its columns were "
                "named column0, column1, ...: name them with --columns"
            )
        info.columns = _pad_trailing(names, data, info)
    info.columns = _dedupe(info.columns, info)


def _pick_delimiter(lines: list[str]) -> tuple[str | None, list[list[str]]]:
    """The delimiter that splits the sample into the most consistent, widest rows."""
    best: tuple[float, int] = (0.0, 1)
    chosen: str | None = None
    chosen_rows: list[list[str]] = []
    for delim in DELIMITERS:
        try:
            rows = list(csv.reader(io.StringIO("".join(lines)), delimiter=delim))
        except csv.Error:
            continue
        rows = [r for r in rows if r]
        if not rows:
            continue
        widths = [len(r) for r in rows]
        mode = max(set(widths), key=widths.count)
        score = (widths.count(mode) / len(widths), mode)
        if mode > 1 and score > best:
            best, chosen, chosen_rows = score, delim, rows
    if chosen is None:
        return ",", list(csv.reader(io.StringIO("".join(lines))))
    return chosen, chosen_rows


def _use_given_columns(info: SourceInfo, first: list[str], data: list[list[str]],
                       columns: list[str]) -> None:
    width = len(first)
    if len(columns) != width and not (len(columns) == width - 1 and first[-1] == ""):
        raise DataError(
            f"--columns names {len(columns)} columns but {info.path.name} has {width} "
            f"({info.delimiter_name}-delimited): give exactly {width} names"
        )
    info.header = looks_like_header(first, data, strict=True)
    if info.header:
        info.warnings.append(
            f"the first row of {info.path.name} looked like a header and was skipped; "
            "the names given with --columns were used instead"
        )
    info.columns = list(columns) + (["_trailing"] if len(columns) < width else [])


def _pad_trailing(names: list[str], data: list[list[str]], info: SourceInfo) -> list[str]:
    """Name the extra empty field that a trailing delimiter adds to every data row."""
    if data and all(len(r) == len(names) + 1 and r[-1] == "" for r in data):
        info.warnings.append("every data row ends with a trailing delimiter; the empty last field was ignored")
        return names + ["_trailing"]
    return [n if n.strip() else f"column{i}" for i, n in enumerate(names)]


def _dedupe(names: list[str], info: SourceInfo) -> list[str]:
    seen: dict[str, int] = {}
    out: list[str] = []
    for name in names:
        name = name.strip() or f"column{len(out)}"
        if name in seen:
            seen[name] += 1
            new = f"{name}_{seen[name]}"
            info.warnings.append(f"duplicate column name {name!r}: the later one was renamed {new!r}")
            name = new
        else:
            seen[name] = 1
        out.append(name)
    return out


def first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
