"""Advice that names an ingest option, so that each front end words it in its own terms.

A warning or error that tells the analyst which ingest option to set or change is a :class:`Notice`:
a ``str`` whose text is the command line's wording (what ``IngestReport.warnings``, the CLI and
``ingest --json`` have always shown), built from parts: plain text and :class:`Hint` s, each naming an
:class:`~core.ingest.options.IngestOptions` field. Another front end renders the same parts with its
own words for each option (the Data page: the box of its form, ``pages/_advice.py``) through
:meth:`Notice.words`. The parts travel in the report's ``notices`` (:func:`notices_of`) and are read
back by :func:`notice_from_json`; a warning that names no option is a plain ``str``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# IngestOptions field -> (CLI flag, what follows the flag when the hint gives no value).
CLI_FLAGS: dict[str, tuple[str, str]] = {
    "mapping": ("--map", "{field}=COLUMN"),
    "columns": ("--columns", ""),
    "behavior_codes": ("--behavior-codes", ""),
    "keep_ids": ("--keep-ids", ""),
    "default_behavior": ("--default-behavior", ""),
    "time_format": ("--time-format", ""),
    "drop_duplicates": ("--drop-duplicates", ""),
    "items_id_column": ("--items-id", "COLUMN"),
}


@dataclass(frozen=True)
class Hint:
    """Where to act: the ingest option ``option`` (a key of :data:`CLI_FLAGS`).

    ``field``: for ``mapping``, the field whose column to pick (``behavior``). ``value``: a value to
    put there, shown as an example, or (``given``) the value that was given. ``act``: the hint is an
    imperative ("pass --drop-duplicates"), not a noun ("with --default-behavior").
    """

    option: str
    field: str | None = None
    value: str | None = None
    given: bool = False
    act: bool = False

    def __post_init__(self) -> None:
        if self.option not in CLI_FLAGS:  # a programming error: every hinted option has a flag
            raise ValueError(f"no ingest option {self.option!r}: expected one of {sorted(CLI_FLAGS)}")


Part = str | Hint
Words = Callable[[Hint], str]


def cli_words(hint: Hint) -> str:
    """A hint in the command line's terms: ``--time-format '%m%d'``, ``pass --drop-duplicates``."""
    flag, metavar = CLI_FLAGS[hint.option]
    tail = hint.value if hint.value is not None else metavar.format(field=hint.field)
    return ("pass " if hint.act else "") + flag + (f" {tail}" if tail else "")


def render(parts: Iterable[Part], words: Words) -> str:
    """The text of ``parts`` with every hint worded by ``words``."""
    return "".join(p if isinstance(p, str) else words(p) for p in parts)


class Notice(str):
    """A message naming ingest options: its ``str`` is the CLI wording; :meth:`words` words it otherwise."""

    parts: tuple[Part, ...]

    def __new__(cls, *parts: Part) -> Notice:
        self = super().__new__(cls, render(parts, cli_words))
        self.parts = tuple(parts)
        return self

    def __reduce__(self) -> tuple[type[Notice], tuple[Part, ...]]:  # copies and pickles keep the parts
        return type(self), self.parts

    def words(self, words: Words) -> str:
        """This message with its hints worded by ``words`` (a front end's terms)."""
        return render(self.parts, words)

    def to_json(self) -> list[Any]:
        """The parts as JSON: text as is, a hint as an object of its non-default fields."""
        return [p if isinstance(p, str) else _hint_json(p) for p in self.parts]


def _hint_json(hint: Hint) -> dict[str, Any]:
    out: dict[str, Any] = {"option": hint.option}
    for key in ("field", "value"):
        if getattr(hint, key) is not None:
            out[key] = getattr(hint, key)
    for key in ("given", "act"):
        if getattr(hint, key):
            out[key] = True
    return out


def notices_of(messages: Iterable[str]) -> list[list[Any]]:
    """The ``notices`` of a report: one list of parts per message (a plain message is one text part)."""
    return [m.to_json() if isinstance(m, Notice) else [str(m)] for m in messages]


def notice_from_json(parts: object) -> Notice | None:
    """A :class:`Notice` from its stored parts; None if they are not what :meth:`Notice.to_json` writes."""
    if not isinstance(parts, list):
        return None
    out: list[Part] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        if not (isinstance(part, dict) and part.get("option") in CLI_FLAGS):
            return None
        field, value = part.get("field"), part.get("value")
        if not (isinstance(field, str | None) and isinstance(value, str | None)):
            return None
        out.append(Hint(part["option"], field, value, bool(part.get("given")), bool(part.get("act"))))
    return Notice(*out)
