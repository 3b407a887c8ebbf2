"""Screen a text source's bytes before DuckDB reads them: the size cap once decompressed, long lines, NUL bytes.

DuckDB decompresses a ``.gz`` without any size limit, and its CSV reader skips without a trace
a line longer than about twice its buffer (16 MB and more at the 8 MB line limit). So before the
read, :func:`screen_source` streams the file's (decompressed) bytes once, in chunks no longer
than the line limit:

- it counts the decompressed bytes and stops as soon as they pass the size cap
  (``BEHAVIORLENS_MAX_FILE_MB``), so a gzip bomb is never inflated past it;
- it finds every line longer than ``MAX_LINE_BYTES`` (reason ``line_too_long``) and every line
  holding a NUL byte (reason ``nul_bytes``: binary data, or the zero-filled tail that a writer
  which crashed or a full disk leaves).

A file with neither is read as it is. Otherwise DuckDB reads a screened copy, in a private temp
folder removed with the :class:`SourceInfo`, in which those lines are blank (DuckDB skips blank
lines but counts them, so line numbers stay the file's), and each of them becomes a
:class:`Malformed` record with its reason: it is counted in ``rows_read`` like any rejected row.
"""

from __future__ import annotations

import gzip
import shutil
import weakref
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core import schema as S
from core.errors import UnusableFileError
from core.ingest.source import MAX_LINE_BYTES, max_file_bytes, too_big, too_big_decompressed
from core.ingest.source_info import Malformed, SourceInfo
from core.store.scratch import scratch_dir

CHUNK = min(4 << 20, MAX_LINE_BYTES)  # a line wholly inside one chunk is never too long
RAW_PREVIEW = 300
_GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)


@dataclass(frozen=True)
class _Line:
    """A line DuckDB must not see: bytes ``start`` to ``end`` (its newline or the end of the file)."""

    start: int
    end: int
    nul: bool


def line_too_long(size: int | None) -> str:
    """The error of a ``line_too_long`` record (``size`` in bytes, None when unknown)."""
    what = "line" if size is None else f"line of {_size(size)}"
    return f"{what} is longer than the {MAX_LINE_BYTES // 2**20} MB line limit"


def _nul_error(size: int) -> str:
    return f"line of {_size(size)} holds NUL bytes (\\x00): binary data or a zero-filled tail, not text"


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n:,} bytes"


def screen_source(info: SourceInfo) -> list[Malformed]:
    """Check every byte of a CSV/TSV/JSONL source; return the lines DuckDB will not see, as records.

    Raises :class:`UnusableFileError` when the decompressed bytes pass the size cap (before
    reading any further) or the header line itself is unusable. When lines are returned,
    ``info.read_path`` is the screened copy that DuckDB reads instead of the file.
    """
    if info.format == "parquet":
        return []
    bad = _scan(info)
    if not bad:
        return []
    first = bad[0]
    if first.start == 0 and info.format == "csv" and info.header:
        problem = _nul_error(first.end) if first.nul else line_too_long(first.end)
        raise UnusableFileError(f"{info.path.name}: the header line (line 1) is unusable: {problem}")
    found = _screened_copy(info, bad)
    nul = [m.line for m in found if m.reason == S.R_NUL_BYTES]
    if nul:
        info.warnings.append(
            f"{len(nul)} line(s) of {info.path.name} hold NUL bytes (first at line {nul[0]}) and were rejected as "
            f"{S.R_NUL_BYTES!r}: the file holds binary data or a zero-filled tail (a writer that crashed, a full "
            "disk); check how it was exported"
        )
    return found


def _chunks(info: SourceInfo) -> Iterator[bytes]:
    """The file's bytes, decompressed, in chunks of at most CHUNK bytes."""
    name = info.path.name
    try:
        with gzip.open(info.path, "rb") if info.compression == "gzip" else open(info.path, "rb") as fh:
            while chunk := fh.read1(CHUNK):  # one raw read at a time: never inflates far past the cap
                yield chunk
    except _GZIP_ERRORS as exc:
        raise UnusableFileError(f"{name} is a truncated or corrupt gzip file ({exc}): compress the log again") from exc
    except OSError as exc:
        raise UnusableFileError(f"{name} cannot be read: {exc.strerror or exc}") from exc


def _scan(info: SourceInfo) -> list[_Line]:
    """Every line over the line limit or holding a NUL byte; stops at the size cap."""
    cap = info.max_bytes or max_file_bytes()
    bad: list[_Line] = []
    pos = start = 0  # bytes before this chunk; where the current line starts
    nul = False  # whether the current line holds a NUL byte so far
    for chunk in _chunks(info):
        if pos + len(chunk) > cap:
            raise UnusableFileError(
                too_big_decompressed(info.path, cap) if info.compression else too_big(info.path, pos + len(chunk), cap)
            )
        first = chunk.find(b"\n")
        if first < 0:
            nul = nul or b"\0" in chunk
            pos += len(chunk)
            continue
        _close(bad, start, pos + first, nul or chunk.find(b"\0", 0, first) >= 0)
        last = chunk.rfind(b"\n")
        j = chunk.find(b"\0", first, last)
        while j >= 0:  # lines wholly inside the chunk are short: only their NUL bytes matter
            end = chunk.find(b"\n", j)
            bad.append(_Line(pos + chunk.rfind(b"\n", 0, j) + 1, pos + end, True))
            j = chunk.find(b"\0", end, last)
        start, nul = pos + last + 1, chunk.find(b"\0", last + 1) >= 0
        pos += len(chunk)
    if pos > start:
        _close(bad, start, pos, nul)
    return bad


def _close(bad: list[_Line], start: int, end: int, nul: bool) -> None:
    if nul or end - start > MAX_LINE_BYTES:
        bad.append(_Line(start, end, nul))


def _screened_copy(info: SourceInfo, bad: list[_Line]) -> list[Malformed]:
    """Write the file with the ``bad`` lines blanked; point ``info.read_path`` at it; return their records."""
    folder = str(scratch_dir("screen"))
    weakref.finalize(info, shutil.rmtree, folder, True)
    target = Path(folder) / (info.path.name.removesuffix(".gz") or "data")
    found: list[Malformed] = []
    pos = newlines = k = 0
    with open(target, "wb") as out:
        for chunk in _chunks(info):
            cur = 0  # bytes of the chunk written or skipped so far
            while k < len(bad) and bad[k].start < pos + len(chunk):
                line = bad[k]
                keep = max(line.start - pos, cur)
                out.write(chunk[cur:keep])
                newlines += chunk.count(b"\n", cur, keep)
                if line.start >= pos:
                    found.append(_record(info, line, newlines + 1, chunk[keep : keep + RAW_PREVIEW]))
                cur = min(line.end - pos, len(chunk))  # a bad line holds no newline: none is skipped
                if line.end > pos + len(chunk):
                    break
                k += 1
            out.write(chunk[cur:])
            newlines += chunk.count(b"\n", cur)
            pos += len(chunk)
    info.read_path = target
    return found


def _record(info: SourceInfo, line: _Line, number: int, head: bytes) -> Malformed:
    size = line.end - line.start
    raw = head.decode(info.encoding, errors="replace").replace("\x00", "\\x00")[:RAW_PREVIEW]
    if line.nul:
        return Malformed(line=number, error=_nul_error(size), raw=raw, reason=S.R_NUL_BYTES)
    return Malformed(line=number, error=line_too_long(size), raw=raw, reason=S.R_LINE_TOO_LONG)
