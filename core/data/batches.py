"""The leave-last-out split and left-padded tensor batches over :class:`SequenceData`.

Split (DESIGN §9): per user, events sorted by (timestamp, item ID); the last
event (or the last of one target behavior) is the test target, the one before
it the validation target, the rest train. At test time the history includes the
validation event. Users too short to hold out two targets train on everything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.data.sequences import PAD, SequenceData, value_bucket
from core.errors import DataError

REPEAT_RATE_THRESHOLD = 0.05  # above it, earlier items stay candidates by default
NEW_VISIT_SECONDS = 1800  # a gap this long between two of a user's events starts a new visit
DEFAULT_RETURN_GAP = 86400.0  # seconds, when the data has no such gap


@dataclass
class Split:
    """Held-out event positions (absolute indices into the CSR arrays)."""

    target_behavior: str | None
    users: np.ndarray  # [Ue] indices of evaluated users
    valid_pos: np.ndarray  # [Ue]
    test_pos: np.ndarray  # [Ue]
    train_end: np.ndarray  # [U] exclusive end of each user's training prefix


@dataclass
class Batch:
    """Left-padded event windows; ``mask`` marks real events."""

    item: torch.Tensor  # [B, L] long
    behavior: torch.Tensor  # [B, L] long
    value: torch.Tensor  # [B, L] long (value bucket)
    ts: torch.Tensor  # [B, L] long seconds
    mask: torch.Tensor  # [B, L] bool
    target_item: torch.Tensor | None = None  # [B, L] long, 0 = no target
    target_value: torch.Tensor | None = None  # [B, L] float, NaN = no value
    # When each position's prediction is asked (seconds): the next event's time; -1 at the last
    # position of a whole history = "the model's default request gap after the last event".
    request_ts: torch.Tensor | None = None  # [B, L] long
    text: torch.Tensor | None = None  # [B, L] long: each event's row of its data's ``texts`` (0 = no text)

    def targets(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(target item, target value) of a training batch (:func:`training_batch`); [B, L] each."""
        if self.target_item is None or self.target_value is None:
            raise RuntimeError("this batch has no next-event targets: build it with training_batch")
        return self.target_item, self.target_value

    def to(self, device: torch.device | str) -> Batch:
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return Batch(**moved)


def leave_last_out(data: SequenceData, target_behavior: str | None = None) -> Split:
    """Choose each user's validation and test events under the given protocol."""
    if target_behavior is not None and target_behavior not in data.behaviors[1:]:
        raise DataError(f"target behavior {target_behavior!r} does not occur; behaviors are {data.behaviors[1:]}")
    code = None if target_behavior is None else data.behaviors.index(target_behavior)
    users, valid, test = [], [], []
    train_end = data.offsets[1:].copy()
    for u in range(data.n_users):
        start, end = int(data.offsets[u]), int(data.offsets[u + 1])
        cand = np.arange(start, end) if code is None else start + np.flatnonzero(data.behavior[start:end] == code)
        if len(cand) < 2 or cand[-2] <= start:
            continue  # not enough to hold out two targets after at least one history event
        users.append(u)
        valid.append(cand[-2])
        test.append(cand[-1])
        train_end[u] = cand[-2]
    return Split(
        target_behavior,
        np.array(users, np.int64),
        np.array(valid, np.int64),
        np.array(test, np.int64),
        train_end.astype(np.int64),
    )


def repeat_rate(data: SequenceData) -> float:
    """Share of events whose item the user had already interacted with."""
    repeats = 0
    for u in range(data.n_users):
        items = data.item[data.user_slice(u)]
        repeats += len(items) - len(np.unique(items))
    return repeats / max(1, len(data.item))


def default_exclude_seen(data: SequenceData) -> bool:
    """Rating-style data (few repeats) excludes earlier items from the candidates."""
    return repeat_rate(data) < REPEAT_RATE_THRESHOLD


def _window(data: SequenceData, u: int, end: int, length: int) -> slice:
    start = int(data.offsets[u])
    return slice(max(start, end - length), end)


def _width(rows: list[slice]) -> int:
    """Batches are padded to their longest window, not to the model's maximum length."""
    return max([1] + [sl.stop - sl.start for sl in rows])


def _fill(rows: list[slice], data: SequenceData, width: int) -> Batch:
    b = len(rows)
    item = np.zeros((b, width), np.int64)
    beh = np.zeros((b, width), np.int64)
    val = np.zeros((b, width), np.int64)
    ts = np.zeros((b, width), np.int64)
    text = np.zeros((b, width), np.int64)
    for r, sl in enumerate(rows):
        n = sl.stop - sl.start
        if n == 0:
            continue
        item[r, -n:] = data.item[sl]
        beh[r, -n:] = data.behavior[sl]
        val[r, -n:] = value_bucket(data.value[sl])
        ts[r, -n:] = data.ts[sl]
        text[r, -n:] = data.text[sl]
    for r, sl in enumerate(rows):  # padding copies the first real time so gaps stay 0
        n = sl.stop - sl.start
        if 0 < n < width:
            ts[r, :-n] = ts[r, -n]
    t = torch.from_numpy
    return Batch(item=t(item), behavior=t(beh), value=t(val), ts=t(ts), mask=t(item != PAD), text=t(text))


def history_batch(
    data: SequenceData, users: np.ndarray, ends: np.ndarray, max_len: int, actual_time: bool = False
) -> Batch:
    """The last ``max_len`` events before ``ends[i]`` of each user ``users[i]``, padded to the longest.

    The newest position is asked at the stand-in time (-1: the model's typical next-visit
    gap after the last event), as a live request for a whole history is: a held-out event
    lends the prediction nothing, not even its timestamp. ``actual_time`` asks at the
    held-out event's own time instead (the "time-aware: target time known" protocol).
    """
    rows = [_window(data, int(u), int(e), max_len) for u, e in zip(users, ends)]
    batch = _fill(rows, data, _width(rows))
    request = _next_times(batch.ts)
    for r, (u, e) in enumerate(zip(users, ends)):
        known = actual_time and int(e) < int(data.offsets[int(u) + 1])
        request[r, -1] = int(data.ts[int(e)]) if known else -1
    batch.request_ts = request
    return batch


def training_batch(data: SequenceData, users: np.ndarray, ends: np.ndarray, max_len: int) -> Batch:
    """Next-event windows: inputs are events [..., e-1), targets the event after each input."""
    rows = [_window(data, int(u), int(e), max_len + 1) for u, e in zip(users, ends)]
    inputs = [slice(sl.start, max(sl.start, sl.stop - 1)) for sl in rows]
    width = _width(inputs)
    batch = _fill(inputs, data, width)
    tgt_item = np.zeros((len(rows), width), np.int64)
    tgt_val = np.full((len(rows), width), np.nan, np.float32)
    request = batch.ts.numpy().copy()  # padding: asked at its own time
    for r, sl in enumerate(rows):
        n = sl.stop - sl.start - 1
        if n > 0:
            tgt_item[r, -n:] = data.item[sl.start + 1 : sl.stop]
            tgt_val[r, -n:] = data.value[sl.start + 1 : sl.stop]
            request[r, -n:] = data.ts[sl.start + 1 : sl.stop]
    batch.target_item = torch.from_numpy(tgt_item)
    batch.target_value = torch.from_numpy(tgt_val)
    batch.request_ts = torch.from_numpy(request)
    return batch


def _next_times(ts: torch.Tensor) -> torch.Tensor:
    """[B, L] event times -> the next position's time (the last position: its own time)."""
    out = ts.clone()
    out[:, :-1] = ts[:, 1:]
    return out


def return_gap(data: SequenceData, train_end: np.ndarray) -> float:
    """Median gap (seconds) between a user's visits: over training gaps of at least NEW_VISIT_SECONDS.

    A whole-history recommendation is asked this long after the user's last event: when
    the user is typically back, not in the middle of their last burst of activity.
    """
    keep = np.zeros(len(data.ts), dtype=bool)
    for u in range(data.n_users):
        keep[int(data.offsets[u]) + 1 : int(train_end[u])] = True  # gaps to the previous event of the same user
    gaps = (data.ts[1:] - data.ts[:-1])[keep[1:]]
    visits = gaps[gaps >= NEW_VISIT_SECONDS]
    return float(np.median(visits)) if len(visits) else DEFAULT_RETURN_GAP


def seen_items(data: SequenceData, users: np.ndarray, ends: np.ndarray) -> list[np.ndarray]:
    """Distinct item indices of each user's events (any behavior) before ``ends[i]``."""
    return [np.unique(data.item[int(data.offsets[u]) : int(e)]) for u, e in zip(users, ends)]
