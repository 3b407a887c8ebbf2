"""Ingest advice in the Data page's terms: the box of its form to fill in, not the CLI flag.

A warning or error that names an ingest option is a ``core.ingest.advice.Notice`` (its ``str`` is the
command line's wording); :func:`page_text` words its hints as the boxes of the Data page's form
(:data:`PAGE_WORDS`, whose labels the form uses too). A stored report carries the same warnings as
parts in ``notices`` (:func:`report_warnings`); an older report has only its plain ``warnings``, shown
as stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.ingest.advice import Hint, Notice, notice_from_json

# The Data page's labels for the ingest options (the form uses them; the advice names them).
COLUMN_MAPPING = "Column mapping"
BEHAVIOR_CODES = "Behavior codes (optional)"
KEEP_IDS = "Keep raw user IDs (off: pseudonymized with a keyed hash)"
MORE_OPTIONS = "More options"
TIME_FORMAT = "Time format"
DEFAULT_BEHAVIOR = "Default behavior"
DROP_DUPLICATES = "Drop exact duplicates"
ITEMS_ID = "Items ID column"
COLUMN_NAMES = "Column names"

_IN_FORM = f"of the {COLUMN_MAPPING} form"
_IN_MORE = f"under {MORE_OPTIONS}"
# IngestOptions field -> (the box that sets it, its kind: "text", "check" or "select").
PAGE_WORDS: dict[str, tuple[str, str]] = {
    "mapping": ("the {field} box " + _IN_FORM, "select"),
    "columns": (f"the {COLUMN_NAMES} box above the {COLUMN_MAPPING} form", "text"),
    "behavior_codes": (f"the Behavior codes box {_IN_FORM}", "text"),
    "keep_ids": (f"the Keep raw user IDs box {_IN_FORM}", "check"),
    "default_behavior": (f"the {DEFAULT_BEHAVIOR} box {_IN_MORE}", "text"),
    "time_format": (f"the {TIME_FORMAT} box {_IN_MORE}", "text"),
    "drop_duplicates": (f"the {DROP_DUPLICATES} box {_IN_MORE}", "check"),
    "items_id_column": (f"the {ITEMS_ID} box {_IN_MORE}", "select"),
}
_VERBS = {"text": "fill in", "check": "tick", "select": "pick the column in"}


def page_words(hint: Hint) -> str:
    """A hint in this page's terms: "fill in the Time format box under More options ... (e.g. %m%d)"."""
    box, kind = PAGE_WORDS[hint.option]
    box = box.format(field=hint.field)
    text = f"{_VERBS[kind]} {box}" if hint.act else box + (" ticked" if kind == "check" else "")
    if hint.value is None:
        return text
    return f"{text} (now {hint.value})" if hint.given else f"{text} (e.g. {hint.value})"


def page_text(message: object) -> str:
    """A warning, or an error, in this page's terms: its option hints worded as the form's boxes."""
    if isinstance(message, BaseException):
        first = message.args[0] if len(message.args) == 1 else None
        return page_text(first) if isinstance(first, Notice) else str(message)
    return message.words(page_words) if isinstance(message, Notice) else str(message)


def report_warnings(report: Mapping[str, Any]) -> list[str]:
    """The warnings of an ingest report (or of its ``items_file``), each a Notice where its parts are stored.

    A report stored before ``notices`` existed, or whose notices do not match its warnings, shows its
    ``warnings`` as they are.
    """
    warnings = [str(w) for w in report.get("warnings") or []]
    notices = report.get("notices")
    if not isinstance(notices, list) or len(notices) != len(warnings):
        return warnings
    parsed = [notice_from_json(n) for n in notices]
    return [n if n is not None and n == w else w for n, w in zip(parsed, warnings)]
