"""Who trains when: the rating scale of the training values, the users each epoch trains on, and their batches
(shuffled, grouped by window length)."""

from __future__ import annotations

import numpy as np

from core.data.batches import Split
from core.data.sequences import SequenceData
from core.model.protocol import RatingScale


def standardize(data: SequenceData, split: Split) -> RatingScale:
    """Mean and std of the training values (events before each user's training end)."""
    keep = np.zeros(len(data.value), dtype=bool)
    for u in range(data.n_users):
        keep[int(data.offsets[u]) : int(split.train_end[u])] = True
    vals = data.value[keep & ~np.isnan(data.value)]
    if len(vals) < 2:
        return RatingScale()
    return RatingScale(float(vals.mean()), float(max(vals.std(), 1e-6)))


def training_users(data: SequenceData, split: Split) -> np.ndarray:
    """Users with at least two training events (one input, one target)."""
    return np.flatnonzero(split.train_end - data.offsets[:-1] >= 2)


def epoch_users(users: np.ndarray, focus: np.ndarray | None, replay: float, rng: np.random.Generator) -> np.ndarray:
    """The users one epoch trains on: all of them, or (an update) those in ``focus`` plus a share ``replay`` of the
    rest, drawn without replacement, so the model keeps what it knew of users without new events."""
    if focus is None:
        return users
    new, rest = users[focus[users]], users[~focus[users]]
    drawn = rng.choice(rest, size=int(round(replay * len(rest))), replace=False) if len(rest) else rest
    picked = np.concatenate([new, drawn])
    return np.sort(picked) if len(picked) else users  # no new user at all: a plain epoch


def length_buckets(
    users: np.ndarray, lengths: np.ndarray, batch_size: int, rng: np.random.Generator, pool: int = 1
) -> list[np.ndarray]:
    """Shuffled batches of users with similar window lengths (less padding, same randomness).

    Users are shuffled, cut into pools of ``pool`` batches, sorted by length within a pool
    and cut into batches; the batches are then shuffled.
    """
    order = rng.permutation(users)
    groups: list[np.ndarray] = []
    for lo in range(0, len(order), batch_size * pool):
        part = order[lo : lo + batch_size * pool]
        part = part[np.argsort(lengths[part], kind="stable")]
        groups += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    return [groups[i] for i in rng.permutation(len(groups))] or [order]
