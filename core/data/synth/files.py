"""The files of a generated sample and their exact text: ``events.csv`` (ISO 8601 UTC
timestamps, minimal quoting, '\\n' line endings), ``items.csv`` (prices with two decimals) and
``ground_truth.json`` (indented, each list of numbers on one line). :func:`write` writes the
three atomically with the store's atomic write, so the same seed gives byte-identical files."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from core.data.synth.config import (
    EVENT_COLUMNS,
    EVENTS_FILE,
    ITEM_FIELDS,
    ITEM_PRICE,
    ITEMS_FILE,
    TRUTH_FILE,
    SyntheticData,
)
from core.schema import BEHAVIOR, ITEM_ID, TEXT, TIMESTAMP, USER_ID, VALUE
from core.store.files import atomic_write_bytes

_FILE_MODE = 0o644  # readable by all, like a plainly written file (temp files start at 0o600)
_NUMBER_LIST = re.compile(r"\[\n\s+(-?[0-9.e+-]+(?:,\n\s+-?[0-9.e+-]+)*)\n\s*\]")


def _format_value(value: float) -> str:
    """Empty for missing, an integer when integral, else 6 significant digits."""
    if math.isnan(value):
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def _csv_text(header: tuple[str, ...], rows: list[list[str]]) -> str:
    """CSV with minimal quoting and '\\n' line endings."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def events_csv(events: pd.DataFrame) -> str:
    """The events file text: ISO 8601 UTC timestamps, empty value/text where none."""
    stamps = events[TIMESTAMP].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    texts = events[TEXT].fillna("").astype(str)
    rows = [
        [u, i, t, b, _format_value(v), x]
        for u, i, t, b, v, x in zip(events[USER_ID], events[ITEM_ID], stamps, events[BEHAVIOR], events[VALUE], texts)
    ]
    return _csv_text(EVENT_COLUMNS, rows)


def items_csv(items: pd.DataFrame) -> str:
    """The items file text; prices with two decimals."""
    rows = [[str(r[c]) for c in ITEM_FIELDS[:-1]] + [f"{r[ITEM_PRICE]:.2f}"] for r in items.to_dict("records")]
    return _csv_text(ITEM_FIELDS, rows)


def truth_json(truth: Mapping[str, object]) -> str:
    """The ground-truth text: indented JSON with each list of numbers on one line."""
    text = json.dumps(truth, indent=2, ensure_ascii=False)
    return _NUMBER_LIST.sub(lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text) + "\n"


def write(data: SyntheticData, out_dir: Path) -> list[Path]:
    """Write events.csv, items.csv and ground_truth.json atomically; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = {
        EVENTS_FILE: events_csv(data.events),
        ITEMS_FILE: items_csv(data.items),
        TRUTH_FILE: truth_json(data.truth),
    }
    paths = []
    for name, text in texts.items():
        atomic_write_bytes(out_dir / name, text.encode("utf-8"))
        os.chmod(out_dir / name, _FILE_MODE)
        paths.append(out_dir / name)
    return paths
