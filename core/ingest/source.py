"""Source files: detect format, compression and encoding, then hand CSV sniffing to ``sniff``.

:func:`inspect_source` looks at the first bytes of a file and returns a
:class:`SourceInfo` that :func:`core.ingest.reader.load_source` uses to read the whole
file into DuckDB as VARCHAR columns (IDs stay strings: ``007`` is not ``7``).
Formats: CSV/TSV (any of , TAB ; |), Parquet and JSON lines, each optionally
gzip-compressed.

The size cap (``BEHAVIORLENS_MAX_FILE_MB``) applies to the file and to its decompressed bytes:
a ``.parquet.gz`` is capped here while it is decompressed, a Parquet file by the uncompressed
size its footer states (what its codec, e.g. zstd or snappy, inflates to; dictionary and
run-length encodings are not expanded), and a gzipped CSV/TSV/JSONL by
:func:`core.ingest.screen.screen_source`, which counts the bytes while decompressing just before
the read.
"""

from __future__ import annotations

import codecs
import gzip
import json
import os
import shutil
import weakref
import zlib
from pathlib import Path

import duckdb

from core.errors import DataError, UnusableFileError
from core.ingest.sniff import sniff_csv
from core.ingest.source_info import SourceInfo
from core.store.scratch import scratch_dir

MAX_FILE_BYTES_ENV = "BEHAVIORLENS_MAX_FILE_MB"
DEFAULT_MAX_FILE_MB = 4096
SNIFF_BYTES = 256 * 1024
MAX_LINE_BYTES = 8 * 1024 * 1024
_GZIP_ERRORS = (EOFError, OSError, zlib.error)


def max_file_bytes() -> int:
    """The ingest size cap in bytes (``BEHAVIORLENS_MAX_FILE_MB``, default 4096 MB)."""
    raw = os.environ.get(MAX_FILE_BYTES_ENV, str(DEFAULT_MAX_FILE_MB))
    try:
        value = float(raw)
    except ValueError as exc:
        raise DataError(f"{MAX_FILE_BYTES_ENV}={raw!r} is not a number of megabytes") from exc
    if not value > 0:
        raise DataError(f"{MAX_FILE_BYTES_ENV}={raw!r}: expected a positive number of megabytes")
    return int(value * 1024 * 1024)


def inspect_source(
    path: str | os.PathLike[str], columns: list[str] | None = None, max_bytes: int | None = None
) -> SourceInfo:
    """Detect how to read ``path``; raise UnusableFileError when it cannot be read at all."""
    path = Path(path)
    cap = max_file_bytes() if max_bytes is None else max_bytes
    size = _checked_size(path, cap)
    raw_head = _read_prefix(path, 4)
    info = SourceInfo(path=path, format="csv", size_bytes=size, max_bytes=cap)
    if raw_head.startswith(b"\x1f\x8b"):
        info.compression = "gzip"
    head, complete = _text_head(path, info.compression)
    if head.startswith(b"PAR1"):
        info.format = "parquet"
        if info.compression:
            info.read_path = _gunzip_copy(info, cap)
        info.columns = _parquet_columns(info)
        _check_parquet_size(info, cap)
        return info
    _decide_encoding(info, head)
    text = head.decode(info.encoding, errors="replace").lstrip("\ufeff")
    _refuse_binary(path, text)
    stripped = text.lstrip()
    if stripped.startswith("{"):
        info.format = "jsonl"
        info.columns = _jsonl_keys(info)
    elif stripped.startswith("["):
        raise UnusableFileError(f"{path.name} is a JSON array, not JSON lines: write one JSON object per line (JSONL)")
    else:
        sniff_csv(info, text, complete, columns)
    return info


def _checked_size(path: Path, cap: int) -> int:
    if not path.exists():
        raise UnusableFileError(f"{path}: no such file")
    if not path.is_file():
        raise UnusableFileError(f"{path} is not a regular file: give the path of a CSV, Parquet or JSON lines file")
    size = path.stat().st_size
    if size == 0:
        raise UnusableFileError(f"{path.name} is empty (0 bytes): export the log again with its rows")
    if size > cap:
        raise UnusableFileError(too_big(path, size, cap))
    return size


def too_big(path: Path, size: int, cap: int) -> str:
    """The message for a file over the size cap."""
    return (
        f"{path.name} is {size / 2**20:.1f} MB, over the {cap / 2**20:.1f} MB cap: split the file "
        f"or raise the cap with {MAX_FILE_BYTES_ENV}"
    )


def too_big_decompressed(path: Path, cap: int, what: str = "decompresses to") -> str:
    """The message for a compressed file whose decompressed bytes pass the size cap."""
    mb = f"{round(cap / 2**20, 3):g}"
    return (
        f"{path.name} {what} more than {mb} MB, over the {mb} MB cap on the decompressed size: "
        f"split the file or raise the cap with {MAX_FILE_BYTES_ENV}"
    )


def _read_prefix(path: Path, n: int) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError as exc:
        raise UnusableFileError(f"{path.name} cannot be opened: {exc.strerror}") from exc


def _text_head(path: Path, compression: str | None) -> tuple[bytes, bool]:
    """The first SNIFF_BYTES of the (decompressed) file and whether that is all of it."""
    if compression != "gzip":
        data = _read_prefix(path, SNIFF_BYTES + 1)
        return data[:SNIFF_BYTES], len(data) <= SNIFF_BYTES
    try:
        with gzip.open(path, "rb") as fh:
            data = fh.read(SNIFF_BYTES + 1)
    except _GZIP_ERRORS as exc:
        raise UnusableFileError(
            f"{path.name} is a truncated or corrupt gzip file ({exc}): compress the log again"
        ) from exc
    if not data:
        raise UnusableFileError(f"{path.name} is an empty gzip file: it holds no rows")
    return data[:SNIFF_BYTES], len(data) <= SNIFF_BYTES


def _gunzip_copy(info: SourceInfo, cap: int) -> Path:
    """Decompress a .parquet.gz into a private temp folder removed with ``info``."""
    folder = str(scratch_dir("gunzip"))
    weakref.finalize(info, shutil.rmtree, folder, True)
    target = Path(folder) / (info.path.name.removesuffix(".gz") or "data.parquet")
    written = 0
    try:
        with gzip.open(info.path, "rb") as src, open(target, "wb") as dst:
            while chunk := src.read(1 << 20):
                written += len(chunk)
                if written > cap:
                    raise UnusableFileError(too_big_decompressed(info.path, cap))
                dst.write(chunk)
    except _GZIP_ERRORS as exc:
        raise UnusableFileError(
            f"{info.path.name} is a truncated or corrupt gzip file ({exc}): compress the file again"
        ) from exc
    return target


def _decide_encoding(info: SourceInfo, head: bytes) -> None:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UnusableFileError(f"{info.path.name} is UTF-16 encoded: save it as UTF-8 (or latin-1) and upload again")
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


def _parquet_columns(info: SourceInfo) -> list[str]:
    try:
        con = duckdb.connect()
        try:
            rows = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(info.data_path)]).fetchall()
        finally:
            con.close()
    except duckdb.Error as exc:
        raise UnusableFileError(
            f"{info.path.name} is not a readable Parquet file ({first_line(exc)}): export it again"
        ) from exc
    info.numeric = {r[0] for r in rows if _is_number(str(r[1]))}
    return [r[0] for r in rows]


def _is_number(kind: str) -> bool:
    """A Parquet column type whose values are numbers (integers, floats, decimals)."""
    kind = kind.upper()
    return kind in {
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "HUGEINT",
        "FLOAT",
        "DOUBLE",
        "REAL",
    } or kind.startswith(("UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT", "DECIMAL"))


def _check_parquet_size(info: SourceInfo, cap: int) -> None:
    """Refuse a Parquet file whose footer states more uncompressed bytes than the cap."""
    con = duckdb.connect()
    try:
        row = con.execute(
            "SELECT coalesce(sum(total_uncompressed_size), 0) FROM parquet_metadata(?)", [str(info.data_path)]
        ).fetchone()
    except duckdb.Error as exc:
        raise UnusableFileError(
            f"{info.path.name} is not a readable Parquet file ({first_line(exc)}): export it again"
        ) from exc
    finally:
        con.close()
    if row is not None and int(row[0]) > cap:
        raise UnusableFileError(too_big_decompressed(info.path, cap, "holds, uncompressed,"))


def _jsonl_keys(info: SourceInfo) -> list[str]:
    """The keys of the JSON objects on the first lines, in order of appearance."""
    keys: dict[str, None] = {}
    for line in _first_lines(info, 2000):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            keys.update(dict.fromkeys(str(k) for k in obj))
    if not keys:
        raise UnusableFileError(
            f"{info.path.name} starts like JSON but no line holds a JSON object: expected JSON lines, "
            'one object per line such as {"user_id": "u1", "item_id": "i9", ...}'
        )
    return list(keys)


def _first_lines(info: SourceInfo, n: int) -> list[str]:
    """Up to ``n`` whole lines of the (decompressed) file, decoded; they end at the first over-long line."""
    opener = gzip.open if info.compression == "gzip" else open
    out: list[str] = []
    try:
        with opener(info.path, "rb") as fh:
            while len(out) < n and (raw := fh.readline(MAX_LINE_BYTES)):
                if len(raw) == MAX_LINE_BYTES and not raw.endswith(b"\n"):
                    break  # never hold a longer line (a gzip bomb may be one line): the reader rejects it
                out.append(raw.decode(info.encoding, errors="replace").lstrip("\ufeff"))
    except _GZIP_ERRORS:
        pass  # the loader reports a corrupt stream; the whole lines read so far are enough here
    return out


def first_line(exc: BaseException) -> str:
    """The first line of an exception message (DuckDB messages carry long context)."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
