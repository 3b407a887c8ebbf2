"""Column mapping and behavior labels: guess, override, normalize.

Pure functions over column names and labels; no I/O.
"""

from __future__ import annotations

import re

from core import schema as S
from core.errors import DataError

_NUMERIC = re.compile(r"^\s*[-+]?\d+([.,]\d+)?([eE][-+]?\d+)?\s*$")
_ALL_ALIASES = (
    frozenset(a for aliases in S.COLUMN_ALIASES.values() for a in aliases)
    | frozenset(S.ITEM_TEXT_ORDER + S.ITEM_CATEGORY_ALIASES + S.ITEM_TITLE_ALIASES)
    | frozenset(f.replace("_", "") for f in S.EVENT_FIELDS)
)


def normalize_name(name: str) -> str:
    """Lower-case alphanumerics only: ``"Event-Time"`` -> ``"eventtime"``."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def is_numeric_text(value: str) -> bool:
    """True when ``value`` reads as a plain number (decimal point or comma)."""
    return bool(_NUMERIC.match(value))


def looks_like_header(first: list[str], data: list[list[str]], strict: bool = False) -> bool:
    """Whether the first row of a delimited file is a header.

    It is when one of its fields is a known column spelling; otherwise (unless
    ``strict``) when none of its fields is numeric or empty but some column of the
    data rows is mostly numeric.
    """
    if any(normalize_name(f) in _ALL_ALIASES for f in first):
        return True
    if strict or any(not f.strip() or is_numeric_text(f) for f in first):
        return False
    for j in range(len(first)):
        col = [r[j] for r in data[:200] if j < len(r) and r[j].strip()]
        if col and sum(is_numeric_text(v) for v in col) >= 0.8 * len(col):
            return True
    return False


def id_stem(norm: str) -> str:
    """A normalized name without one ID suffix (``S.ID_SUFFIXES``): ``"useridx"`` -> ``"user"``; at least 2 chars."""
    for suffix in S.ID_SUFFIXES:
        if norm.endswith(suffix) and len(norm) - len(suffix) >= 2:
            return norm[: -len(suffix)]
    return norm


def _stems(aliases: tuple[str, ...]) -> list[str]:
    """The stems of ``aliases`` in their order, once each (one-letter stems such as uid's "u" left out)."""
    out: list[str] = []
    for stem in (id_stem(a) for a in aliases):
        if len(stem) >= 2 and stem not in out:
            out.append(stem)
    return out


_ID_STEMS: dict[str, list[str]] = {
    fld: _stems((normalize_name(fld),) + S.COLUMN_ALIASES[fld]) for fld in S.REQUIRED_FIELDS
}
_FALLBACK_STEMS: dict[str, list[str]] = {S.USER_ID: _stems(S.USER_FALLBACK_ALIASES)}


def guess_mapping(columns: list[str]) -> dict[str, str]:
    """Guess field -> column from common spellings; each column is used once.

    First exact spellings (``S.COLUMN_ALIASES``) for every field; then, for a user or item field still
    without a column, the stem of a spelling with or without an ID suffix (``user_idx``, ``item_index``,
    ``video``, ``sku_no``); last, a session column as the user when there is no user column.
    """
    by_norm: dict[str, str] = {}
    for col in columns:
        by_norm.setdefault(normalize_name(col), col)
    mapping: dict[str, str] = {}
    used: set[str] = set()
    for fld in S.EVENT_FIELDS:
        for alias in (normalize_name(fld),) + S.COLUMN_ALIASES[fld]:
            found = by_norm.get(alias)
            if found is not None and found not in used:
                mapping[fld] = found
                used.add(found)
                break
    for stems in (_ID_STEMS, _FALLBACK_STEMS):
        for fld, candidates in stems.items():
            found = None if fld in mapping else _by_stem(columns, candidates, used)
            if found is not None:
                mapping[fld] = found
                used.add(found)
    return {fld: mapping[fld] for fld in S.EVENT_FIELDS if fld in mapping}


def _by_stem(columns: list[str], stems: list[str], used: set[str]) -> str | None:
    """The first unused column whose stem is one of ``stems`` (earlier stems win)."""
    free = [(id_stem(normalize_name(c)), c) for c in columns if c not in used]
    return next((col for stem in stems for s, col in free if s == stem), None)


def resolve_mapping(columns: list[str], overrides: dict[str, str | None] | None = None) -> dict[str, str]:
    """The guessed mapping with the analyst's overrides applied and checked.

    ``overrides`` maps a field to a column name, or to None/"" to unmap the field.
    """
    mapping = guess_mapping(columns)
    for fld, col in (overrides or {}).items():
        if fld not in S.EVENT_FIELDS:
            raise DataError(f"unknown field {fld!r} in the column mapping: expected one of {list(S.EVENT_FIELDS)}")
        if col in (None, ""):
            mapping.pop(fld, None)
            continue
        if col not in columns:
            raise DataError(f"mapping {fld}={col!r}: the file has no column {col!r}; its columns are {columns}")
        for other, c in list(mapping.items()):
            if c == col and other != fld and other not in (overrides or {}):
                del mapping[other]
        mapping[fld] = col
    taken = list(mapping.values())
    dupes = sorted({c for c in taken if taken.count(c) > 1})
    if dupes:
        raise DataError(f"column(s) {dupes} are mapped to more than one field: map each column once")
    return mapping


def parse_pairs(text: str, what: str) -> dict[str, str]:
    """Parse ``"a=b,c=d"`` (also accepts a list of ``a=b`` strings joined by commas)."""
    out: dict[str, str] = {}
    for part in [p.strip() for p in str(text).split(",") if p.strip()]:
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise DataError(f"{what}: {part!r} is not of the form KEY=VALUE (e.g. 0=click)")
        out[key.strip()] = value.strip()
    return out


def behavior_key(label: str) -> str:
    """Lower-case, trimmed, spaces and hyphens to underscores."""
    return re.sub(r"[\s\-]+", "_", str(label).strip().lower())


def canonical_behavior(label: str) -> str:
    """Map a label to its canonical behavior; unknown labels come back normalized (custom)."""
    key = behavior_key(label)
    if key in S.CANONICAL_BEHAVIORS:
        return key
    return S.BEHAVIOR_SYNONYMS.get(key, key)


def parse_behavior_codes(text: str | dict[str, str] | None) -> dict[str, str]:
    """``"0=click,1=cart"`` -> {"0": "click", "1": "cart"} (targets canonicalized)."""
    pairs = parse_pairs(text, "behavior codes") if isinstance(text, str) else dict(text or {})
    out: dict[str, str] = {}
    for code, label in pairs.items():
        if not str(label).strip():
            raise DataError(f"behavior codes: code {code!r} maps to an empty behavior name")
        out[str(code).strip()] = canonical_behavior(label)
    return out


def map_behavior_labels(labels: list[str | None], codes: dict[str, str]) -> dict[str | None, str | None]:
    """Map each distinct raw label to a behavior (None for a missing label)."""
    out: dict[str | None, str | None] = {}
    for raw in labels:
        if raw is None or not str(raw).strip():
            out[raw] = None
            continue
        key = str(raw).strip()
        out[raw] = codes[key] if key in codes else canonical_behavior(key)
    return out
