"""Delimited text: pick the delimiter, decide whether the first row is a header, name the columns.

Works on the first lines of a file, already decoded; no I/O. :func:`sniff_csv` fills the
delimiter, header and column names of a :class:`~core.ingest.source_info.SourceInfo` (the
analyst's names for a headerless file, else the header's, else ``column0..N``; duplicate names
made unique and a trailing delimiter's empty field named) and adds its warnings; a file that is
not delimited text at all raises :class:`~core.errors.UnusableFileError`.
"""

from __future__ import annotations

import csv
import io
import sys

from core.errors import DataError, UnusableFileError
from core.ingest.advice import Hint, Notice
from core.ingest.mapping import looks_like_header
from core.ingest.source_info import SourceInfo

DELIMITERS = (",", "\t", ";", "|")
TRAILING = "_trailing"  # name of the empty field a trailing delimiter adds
SNIFF_LINES = 400

# A long review in the sniff window must not break csv.reader (default limit 128 KB).
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def sniff_csv(info: SourceInfo, text: str, complete: bool, columns: list[str] | None) -> None:
    """Fill ``info.delimiter``, ``info.header`` and ``info.columns`` from the file's head."""
    lines = text.splitlines(keepends=True)
    if not complete and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut by the sniff window
    lines = [ln for ln in lines if ln.strip()][:SNIFF_LINES]
    if not lines:
        raise UnusableFileError(f"{info.path.name} holds only blank lines: it has no rows")
    delim, rows = pick_delimiter(lines)
    if delim is None and not columns:
        raise UnusableFileError(
            f"{info.path.name}: found a single column; expected a delimited file with at least a "
            "user and an item column (delimiters tried: comma, TAB, semicolon, pipe)"
        )
    info.delimiter = delim or ","
    first, data = rows[0], rows[1:]
    if columns:
        _use_given_columns(info, first, data, columns)
    else:
        info.header = looks_like_header(first, data)
        names = list(first) if info.header else [f"column{i}" for i in range(len(first))]
        if not info.header:
            info.warnings.append(
                Notice(
                    f"{info.path.name} has no header row that could be recognized; its columns were "
                    "named column0, column1, ...: name them with ",
                    Hint("columns"),
                )
            )
        info.columns = _pad_trailing(names, data, info)
    info.columns = _dedupe(info.columns, info)


def pick_delimiter(lines: list[str]) -> tuple[str | None, list[list[str]]]:
    """The delimiter that splits the sample into the most consistent, widest rows.

    Returns ``(None, rows split on commas)`` when no delimiter gives two or more columns.
    """
    best: tuple[float, int] = (0.0, 1)
    chosen: str | None = None
    chosen_rows: list[list[str]] = []
    sample = "".join(lines)
    for delim in DELIMITERS:
        rows = _split(sample, delim)
        if not rows:
            continue
        widths = [len(r) for r in rows]
        mode = max(set(widths), key=widths.count)
        score = (widths.count(mode) / len(widths), mode)
        if mode > 1 and score > best:
            best, chosen, chosen_rows = score, delim, rows
    if chosen is None:
        return None, _split(sample, ",") or [[sample.strip()]]
    return chosen, chosen_rows


def _split(sample: str, delim: str) -> list[list[str]]:
    try:
        return [r for r in csv.reader(io.StringIO(sample), delimiter=delim) if r]
    except csv.Error:
        return []


def _use_given_columns(info: SourceInfo, first: list[str], data: list[list[str]], columns: list[str]) -> None:
    width = len(first)
    if len(columns) != width and not (len(columns) == width - 1 and first[-1] == ""):
        raise DataError(
            Notice(
                Hint("columns"),
                f" names {len(columns)} columns but {info.path.name} has {width} "
                f"({info.delimiter_name}-delimited): give exactly {width} names",
            )
        )
    info.header = looks_like_header(first, data, strict=True)
    if info.header:
        info.warnings.append(
            Notice(
                f"the first row of {info.path.name} looked like a header and was skipped; the names given with ",
                Hint("columns"),
                " were used instead",
            )
        )
    info.columns = list(columns) + ([TRAILING] if len(columns) < width else [])


def _pad_trailing(names: list[str], data: list[list[str]], info: SourceInfo) -> list[str]:
    """Name the extra empty field that a trailing delimiter adds to every data row."""
    if data and all(len(r) == len(names) + 1 and r[-1] == "" for r in data):
        info.warnings.append("every data row ends with a trailing delimiter; the empty last field was ignored")
        return names + [TRAILING]
    return [n if n.strip() else f"column{i}" for i, n in enumerate(names)]


def _dedupe(names: list[str], info: SourceInfo) -> list[str]:
    """Unique names; DuckDB compares column names case-insensitively, so do we."""
    taken: set[str] = set()
    out: list[str] = []
    for name in names:
        name = name.strip() or f"column{len(out)}"
        new, k = name, 1
        while new.lower() in taken:
            k += 1
            new = f"{name}_{k}"
        if new != name:
            info.warnings.append(f"duplicate column name {name!r}: the later one was renamed {new!r}")
        taken.add(new.lower())
        out.append(new)
    return out
