"""Per-user behavior sequences: an events frame indexed once into integer codes, and their buckets.

:func:`build_sequences` turns the events into a :class:`SequenceData`: integer item and behavior
codes in a CSR layout (one contiguous slice per user, sorted by timestamp, then item ID, then
source row), values, times in seconds and each event's own text (a review, a comment, a query, a
tag) as a row of the distinct texts (``texts``, row 0 = no text: many events share a text). Item
index 0 is padding; items are numbered in sorted item-ID order so that "ties broken by item ID"
means "lower index first"; a fitted model's vocabularies can be imposed. :func:`gap_bucket` and
:func:`value_bucket` are the log2 time-gap and rounded-value codes the model embeds. The split and
the batches are :mod:`core.data.batches`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import overload

import numpy as np
import pandas as pd
import torch

from core import schema as S
from core.errors import DataError

PAD = 0
GAP_BUCKETS = 32  # log2-second buckets of time gaps; 0 = padding / first event
VALUE_BUCKETS = 12  # 0 = no value, 1..11 = value rounded into [0, 10]


@dataclass
class SequenceData:
    """Every user's events as integer codes, CSR layout (``offsets`` has U+1 entries)."""

    users: np.ndarray  # [U] stored user IDs, sorted
    item_ids: np.ndarray  # [N+1] item ID strings; index 0 = padding ("")
    behaviors: list[str]  # behavior vocabulary; index 0 = padding ("")
    offsets: np.ndarray  # [U+1] int64
    item: np.ndarray  # [E] int64 item index (1..N)
    behavior: np.ndarray  # [E] int64 behavior index (1..B)
    value: np.ndarray  # [E] float32, NaN where absent
    ts: np.ndarray  # [E] int64 seconds since epoch
    # [E] int64 row of each event's text in ``texts`` (0 = no text); empty = no event has a text
    text: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    texts: list[str] = field(default_factory=lambda: [""])  # the distinct event texts; row 0 = no text ("")

    def __post_init__(self) -> None:
        if len(self.text) != len(self.item):
            if len(self.text):
                raise DataError(f"{len(self.text)} event text rows for {len(self.item)} events")
            self.text = np.zeros(len(self.item), np.int64)

    @property
    def has_text(self) -> bool:
        """Whether any event has a text of its own."""
        return len(self.texts) > 1

    @property
    def n_items(self) -> int:
        return len(self.item_ids) - 1

    @property
    def n_users(self) -> int:
        return len(self.users)

    def user_slice(self, u: int) -> slice:
        return slice(int(self.offsets[u]), int(self.offsets[u + 1]))

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def build_sequences(
    events: pd.DataFrame, item_ids: list[str] | None = None, behaviors: list[str] | None = None
) -> SequenceData:
    """Index an events frame (schema columns) into sequences.

    ``item_ids``/``behaviors`` fix the vocabularies (e.g. a catalogue with cold
    items, or a fitted model's vocabulary); events outside them raise DataError.
    """
    missing = [c for c in (S.USER_ID, S.ITEM_ID, S.TIMESTAMP, S.BEHAVIOR) if c not in events.columns]
    if missing:
        raise DataError(f"events frame lacks column(s) {missing}; it has {list(events.columns)}")
    if events.empty:
        raise DataError("no events to build sequences from")
    for col in (S.USER_ID, S.ITEM_ID, S.TIMESTAMP, S.BEHAVIOR):
        nulls = events[col].isna()
        if nulls.any():
            raise DataError(
                f"column {col!r} has {int(nulls.sum())} missing value(s) (first at row "
                f"{int(nulls.to_numpy().argmax())}); every event needs a user, an item, a timestamp and a behavior"
            )
    frame = events.assign(
        **{
            S.USER_ID: events[S.USER_ID].astype(str),
            S.ITEM_ID: events[S.ITEM_ID].astype(str),
            "_ts": _to_seconds(events[S.TIMESTAMP]),
        }
    )
    order = [S.USER_ID, "_ts", S.ITEM_ID] + ([S.ROW] if S.ROW in frame.columns else [])
    frame = frame.sort_values(order, kind="stable")
    ids = frame[S.ITEM_ID].to_numpy(dtype=object)
    known = pd.unique(ids) if item_ids is None else set(map(str, item_ids))  # distinct by hashing, then sorted
    vocab = np.array([""] + sorted(known), dtype=object)
    beh_vocab = [""] + list(behaviors if behaviors is not None else _behavior_order(frame[S.BEHAVIOR]))
    item = _codes(ids, vocab[1:], "item")
    beh = _codes(
        frame[S.BEHAVIOR].astype(str).to_numpy(dtype=object), np.array(beh_vocab[1:], dtype=object), "behavior"
    )
    user = frame[S.USER_ID].to_numpy(dtype=object)  # sorted: each user's events are one run of rows
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    users, offsets = user[starts], np.append(starts, len(frame)).astype(np.int64)
    value = (
        frame[S.VALUE].to_numpy(dtype=np.float32, na_value=np.nan)
        if S.VALUE in frame
        else np.full(len(frame), np.nan, np.float32)
    )
    text, texts = _event_texts(frame)
    return SequenceData(
        users=users,
        item_ids=vocab,
        behaviors=beh_vocab,
        offsets=offsets,
        item=item,
        behavior=beh,
        value=value,
        ts=frame["_ts"].to_numpy(np.int64),
        text=text,
        texts=texts,
    )


def _event_texts(frame: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """(the row of each event's text [E], 0 = none; the distinct texts in first-seen order, row 0 = ""): an empty
    or blank text, or none, is no text."""
    if S.TEXT not in frame:
        return np.zeros(len(frame), np.int64), [""]
    raw = frame[S.TEXT]
    given = raw.notna() & raw.astype(str).str.strip().ne("")
    codes, uniques = pd.factorize(raw.where(given).astype(object))  # -1 where missing
    return (codes + 1).astype(np.int64), ["", *map(str, uniques)]


def _to_seconds(ts: pd.Series) -> np.ndarray:
    """Seconds since the epoch (UTC) of a timestamp column."""
    try:
        stamps = pd.to_datetime(ts)
    except (ValueError, TypeError) as exc:
        raise DataError(f"column {S.TIMESTAMP!r} holds a value that is not a timestamp ({exc})") from exc
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    return stamps.to_numpy(dtype="datetime64[s]").astype(np.int64)


def _behavior_order(labels: pd.Series) -> list[str]:
    present = set(map(str, labels.unique()))
    return [b for b in S.CANONICAL_BEHAVIORS if b in present] + sorted(present - set(S.CANONICAL_BEHAVIORS))


def _codes(values: np.ndarray, vocab: np.ndarray, what: str) -> np.ndarray:
    """1-based positions of ``values`` in the sorted-or-listed ``vocab`` (distinct), by one hash lookup each."""
    codes = pd.Index(vocab, dtype=object).get_indexer(values)
    unknown = codes < 0
    if unknown.any():
        raise DataError(f"{what} {values[int(unknown.argmax())]!r} is not in the model's {what} vocabulary")
    return codes.astype(np.int64) + 1


@overload
def gap_bucket(seconds: torch.Tensor) -> torch.Tensor: ...


@overload
def gap_bucket(seconds: np.ndarray) -> np.ndarray: ...


def gap_bucket(seconds: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Log2 bucket (1..GAP_BUCKETS-1) of non-negative time gaps in seconds: 1 + floor(log2(1 + gap)).

    Computed on the gap as a float32 number (the exponent of ``frexp``, exact for every float32), the same way
    for NumPy and torch: the model buckets every (position, event) pair of a batch, and float64 logarithms over
    [B, L, L] were a sixth of a training step. Gaps below 2^24 s (194 days) are exact; above, a gap within
    2^-24 of a power of two may round to the next bucket, for NumPy and torch alike.
    """
    if isinstance(seconds, torch.Tensor):
        t = seconds.to(torch.float32).clamp_(min=0) if seconds.dtype != torch.float32 else seconds.clamp(min=0)
        return torch.frexp(t.add_(1))[1].clamp_(max=GAP_BUCKETS - 1).long()
    s = np.maximum(np.asarray(seconds).astype(np.float32), np.float32(0))
    return np.minimum(np.frexp(s + np.float32(1))[1], GAP_BUCKETS - 1).astype(np.int64)


def value_bucket(values: np.ndarray) -> np.ndarray:
    """0 for NaN, else 1 + value rounded and clipped into [0, 10]."""
    v = np.asarray(values, dtype=np.float64)
    out = np.where(np.isnan(v), 0, 1 + np.clip(np.rint(np.nan_to_num(v)), 0, VALUE_BUCKETS - 2))
    return out.astype(np.int64)
