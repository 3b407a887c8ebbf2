"""The attributed function: one user's history -> one number for one item and target.

Every method sees a model through :class:`EventScorer`: the event tokens of the
history (the attribution surface, ``BehaviorModel.tokens``), the baseline tokens
(the learned mask token at every event) and two ways to score:

- ``score_tokens``: tokens [S, n, D] -> [S] (differentiable; Integrated Gradients);
- ``score_removed``: removed [S, n] bool -> [S] (no grad; leave-one-out, SHAP,
  deletion curves). A removed event is swapped for the mask token in place, so
  every other event keeps its position (``BehaviorModel.encode``).

The history is the user's last ``max_len`` events (all of them when shorter), cut to
its real length: left padding is never attended to, so the scores equal those of the
padded batch the rest of the code uses (checked by the tests).

Targets (functions of the last position's task states):

- ``engagement``: log-probability of the item, log_softmax over every item (the head is
  trained with a full softmax; its raw logit carries a per-history offset). A run
  trained with sampled BCE (``train.loss = "bce"``) uses log σ(logit) instead.
- ``rating``: the predicted rating, de-standardized with the run's RatingScale.
- ``fused``: see :mod:`core.explain.fused`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from core.data.batches import Batch, history_batch
from core.data.sequences import SequenceData
from core.model.config import SIGMOID_LOSSES
from core.model.network import BehaviorModel
from core.model.protocol import RatingScale

TargetFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (task_e [S, De], task_r [S, De+2]) -> [S]
_CELLS = 1 << 22  # attention cells (rows x L x L x heads) per chunk of a removed-mask pass
_LOGITS = 1 << 23  # logits (rows x items) per chunk


class EventScorer(Protocol):
    """What an attribution method needs from a model (a toy model can implement it too)."""

    @property
    def n_events(self) -> int: ...

    def tokens(self) -> torch.Tensor:
        """Event tokens [1, n, D]."""

    def baseline_tokens(self) -> torch.Tensor:
        """Baseline tokens [1, n, D]: every event masked."""

    def score_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens [S, n, D] -> target [S] (differentiable)."""

    def score_removed(self, removed: torch.Tensor) -> torch.Tensor:
        """Removed-event masks [S, n] bool -> target [S] (no grad)."""


def user_history(data: SequenceData, user: int, max_len: int) -> Batch:
    """The last ``max_len`` events of user row ``user`` as a batch [1, n] without padding."""
    end = int(data.offsets[user + 1])
    n = min(max_len, end - int(data.offsets[user]))
    full = history_batch(data, np.array([user]), np.array([end]), max_len)
    return Batch(**{k: v[:, -n:] for k, v in full.__dict__.items() if isinstance(v, torch.Tensor)})


def expand(batch: Batch, rows: int) -> Batch:
    """A one-row batch [1, n] broadcast to [rows, n] (views, no copy)."""
    return Batch(**{k: v.expand(rows, -1) for k, v in batch.__dict__.items() if isinstance(v, torch.Tensor)})


class HistoryScorer:
    """``EventScorer`` over a ``BehaviorModel`` (eval mode) and one user's history batch [1, n]."""

    def __init__(self, model: BehaviorModel, batch: Batch, target: TargetFn) -> None:
        model.eval()
        self.model, self.batch, self.target = model, batch, target
        with torch.no_grad():
            self._tokens = model.tokens(batch).detach()  # [1, n, D]
        self._baseline = model.events.mask_token.detach().expand_as(self._tokens).clone()  # [1, n, D]
        n, cfg = batch.item.shape[1], model.cfg
        self.chunk = max(1, min(_CELLS // max(1, n * n * cfg.n_heads), _LOGITS // (cfg.n_items + 1)))

    @property
    def n_events(self) -> int:
        return int(self.batch.item.shape[1])

    def tokens(self) -> torch.Tensor:
        return self._tokens

    def baseline_tokens(self) -> torch.Tensor:
        return self._baseline

    def _heads(self, states: torch.Tensor, batch: Batch) -> torch.Tensor:
        """User states [S, n, D] -> target [S], from the last position only."""
        task_e, task_r = self.model.tasks(states, batch, last=True)  # [S, De], [S, De + 2]
        return self.target(task_e, task_r)

    def score_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        batch = expand(self.batch, tokens.shape[0])
        return self._heads(self.model.encode(tokens, batch, last=True), batch)

    @torch.no_grad()
    def score_removed(self, removed: torch.Tensor) -> torch.Tensor:
        removed = torch.as_tensor(removed, dtype=torch.bool)
        out = []
        for lo in range(0, removed.shape[0], self.chunk):
            part = removed[lo : lo + self.chunk]
            batch = expand(self.batch, part.shape[0])
            tokens = self._tokens.expand(part.shape[0], -1, -1)
            out.append(self._heads(self.model.encode(tokens, batch, part, last=True), batch))
        return torch.cat(out) if out else torch.zeros(0)


def engagement_target(model: BehaviorModel, item: int, loss: str = "softmax") -> TargetFn:
    """log p(item | history): log_softmax over every item (padding excluded); log σ for a BCE head."""
    if loss in SIGMOID_LOSSES:

        def bce(task_e: torch.Tensor, task_r: torch.Tensor) -> torch.Tensor:
            idx = torch.full((task_e.shape[0],), item, dtype=torch.long)
            return F.logsigmoid(model.engagement_logits(task_e, idx).float())

        return bce

    def softmax(task_e: torch.Tensor, task_r: torch.Tensor) -> torch.Tensor:
        logits = model.engagement_logits(task_e).float()  # [S, N+1]
        logits = logits.masked_fill(torch.arange(logits.shape[1]) == 0, float("-inf"))
        return torch.log_softmax(logits, -1)[:, item]

    return softmax


def rating_target(model: BehaviorModel, item: int, scale: RatingScale) -> TargetFn:
    """The predicted rating of ``item`` in value units."""

    def rating(task_e: torch.Tensor, task_r: torch.Tensor) -> torch.Tensor:
        idx = torch.full((task_r.shape[0],), item, dtype=torch.long)
        return scale.restore(model.rating_of(task_r, idx).float())

    return rating
