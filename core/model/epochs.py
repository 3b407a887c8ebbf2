"""Who trains when: the rating scale of the training values, the users each epoch trains on, their batches
(shuffled, grouped by window length), and when to stop."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from core.data.batches import Split
from core.data.sequences import SequenceData
from core.model.config import TrainConfig
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


def selection_score(cfg: TrainConfig, metrics: dict[str, float]) -> float:
    """What early stopping maximizes: validation NDCG@10, or -RMSE when only the rating head trains."""
    rating_only = isinstance(cfg.loss_weights, list) and cfg.loss_weights[0] == 0
    if rating_only and math.isfinite(metrics.get("RMSE", float("nan"))):
        return -metrics["RMSE"]
    return metrics.get("NDCG@10", 0.0)


@dataclass
class Stall:
    """Early stopping that tells a gain from noise: the epoch to beat, its validation score and its users' NDCG@10.

    An epoch replaces it only when its score beats it by more than ``min_improvement``: a number (0, the default:
    any rise, as the best epoch does), or "auto", one standard error of the users' paired gains (this epoch's
    NDCG@10 minus the epoch to beat's, user by user). On a flat curve the validation score wanders by about that
    much from epoch to epoch, and a patience counted from the best of those wanderings trains on for nothing (the
    sample: 14 epochs for what the second one had); but on ML-100K, whose curve climbs by less than that per
    epoch, "auto" stopped one seed of three at epoch 10 (test NDCG@10 0.084 against about 0.10), so it is not
    the default. The weights kept are the best epoch's either way (:class:`~core.model.training.FitState`)."""

    epoch: int = 0  # the epoch to beat (0: none yet)
    score: float = -math.inf
    gains: np.ndarray | None = None  # [U] its validation users' NDCG@10, when known

    def margin(self, gains: np.ndarray | None, min_improvement: float | str) -> float:
        if min_improvement != "auto":
            return float(min_improvement)
        if gains is None or self.gains is None or len(gains) != len(self.gains) or len(gains) < 2:
            return 0.0
        diff = np.asarray(gains, dtype=np.float64) - self.gains
        return float(diff.std(ddof=1) / math.sqrt(len(diff)))

    def see(self, epoch: int, score: float, gains: np.ndarray | None, min_improvement: float | str) -> None:
        """Epoch ``epoch`` scored ``score`` (its users' NDCG@10 ``gains``): the epoch to beat when it beats it."""
        if score > self.score + self.margin(gains, min_improvement):
            self.epoch, self.score, self.gains = epoch, score, gains


def epoch_random(seed: int, epoch: int) -> np.random.Generator:
    """The random streams of one epoch: numpy's (returned: shuffles, masks, sampled users) and torch's (dropout,
    sampled negatives), both derived from (seed, epoch) alone."""
    sequence = np.random.SeedSequence((seed, epoch))
    torch.manual_seed(int(sequence.generate_state(1, np.uint64)[0] >> np.uint64(1)))
    return np.random.default_rng(sequence)
