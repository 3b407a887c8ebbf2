"""The settings of one ingest (:class:`IngestOptions`): every field has a CLI flag of the same meaning."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from core import schema as S

MEMORY_ENV = "BEHAVIORLENS_INGEST_MEMORY"


@dataclass
class IngestOptions:
    """Settings of one ingest; every field has a CLI flag of the same meaning (those that advice names:
    ``core.ingest.advice.CLI_FLAGS``; the Data page's boxes for them: ``pages/_advice.py``)."""

    name: str | None = None
    columns: list[str] | None = None
    mapping: dict[str, str | None] = field(default_factory=dict)
    behavior_codes: dict[str, str] | str | None = None
    keep_ids: bool = False
    default_behavior: str | None = None
    rating_range: tuple[float, float] = S.DEFAULT_RATING_RANGE
    time_format: str | None = None
    drop_duplicates: bool = False
    items_id_column: str | None = None
    # the events file's columns that describe items, read into the item text (core.ingest.item_text):
    # names, "auto" (None: the columns that describe items) or "none"
    item_text_columns: list[str] | str | None = None
    # the items file's columns joined into the item text, in this order (None: every text column)
    items_text_columns: list[str] | None = None
    # the stored dataset the rows are added to (core.ingest.append); None: a dataset of its own
    append_to: str | None = None
    memory_limit: str = field(default_factory=lambda: os.environ.get(MEMORY_ENV, "1GB"))
