"""What is known about a source file (:class:`SourceInfo`) and a record that did not parse (:class:`Malformed`).

Filled by :mod:`core.ingest.source` (format, compression, encoding) and :mod:`core.ingest.sniff`
(delimiter, header, column names); read by the reader, the catalogue and the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core import schema as S

_DELIM_NAMES = {",": "comma", "\t": "TAB", ";": "semicolon", "|": "pipe"}


@dataclass
class SourceInfo:
    """What :func:`inspect_source` learned about a file."""

    path: Path
    format: str  # "csv" | "parquet" | "jsonl"
    compression: str | None = None  # "gzip" or None
    encoding: str = "utf-8"
    delimiter: str | None = None
    header: bool = True
    columns: list[str] = field(default_factory=list)
    size_bytes: int = 0
    warnings: list[str] = field(default_factory=list)
    read_path: Path | None = None  # what DuckDB reads: a decompressed copy (.parquet.gz) or a screened one
    max_bytes: int = 0  # the size cap, applied to the decompressed bytes (0: not set)
    numeric: set[str] = field(default_factory=set)  # Parquet columns stored as numbers (their text needs no trim)

    @property
    def delimiter_name(self) -> str | None:
        return None if self.delimiter is None else _DELIM_NAMES.get(self.delimiter, self.delimiter)

    @property
    def data_path(self) -> Path:
        return self.read_path or self.path


@dataclass
class Malformed:
    """A record the reader could not use, with its reason (a key of ``rejected_by_reason``)."""

    line: int
    error: str
    raw: str
    reason: str = S.R_MALFORMED
