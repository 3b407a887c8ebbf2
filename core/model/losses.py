"""The training losses, outside the model (torchrec style).

Every position predicts the next event (SASRec style). The engagement loss (``train.loss``) is one of:

- ``softmax``: a full softmax over every item (cross-entropy), in chunks of positions;
- ``sampled_softmax``: a softmax over the batch's own targets and ``n_negatives`` items drawn by
  popularity, shared by every position, each logit corrected by minus the log of its item's sampling
  probability (log-Q correction, Yi et al. 2019), so that the trained logits estimate the full softmax's;
  its cost grows with the batch, not the catalogue;
- ``bce``: binary cross-entropy of the target against ``n_negatives`` uniform negatives per position;
- ``gbce``: gSASRec's generalised BCE (Petrov & Macdonald 2023): the target's probability raised to
  beta = alpha (t (1 - 1/alpha) + 1/alpha), alpha the negative sampling rate, t = ``gbce_t``, which
  undoes the overconfidence sampling causes, so sigmoid(logit) stays a calibrated probability;
- ``auto``: the full softmax up to :data:`core.model.config.AUTO_SAMPLED_ABOVE` items, the sampled
  softmax above.

The rating loss is an MSE on standardized values, masked where the next event has no value. Task
weights are fixed or learned (uncertainty weighting, Kendall et al. 2018). Items held out of training
(``blocked``) are never a logit, a negative or a sampled candidate.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.data.batches import Batch, Split
from core.data.sequences import SequenceData
from core.model.config import TrainConfig, resolve_loss
from core.model.network import BehaviorModel
from core.model.protocol import RatingScale
from core.model.ragged import GROUP_CELLS, length_groups, rows

_LOGIT_CELLS = 6 << 20  # floats per chunk of softmax logits (24 MB)


@dataclass
class LossParts:
    total: torch.Tensor
    engagement: torch.Tensor
    rating: torch.Tensor


class MultiTaskLoss(nn.Module):
    """Engagement (softmax CE or sampled BCE) + rating (masked MSE), fixed or learned weights."""

    def __init__(
        self, cfg: TrainConfig, n_items: int, scale: RatingScale | None = None, blocked: torch.Tensor | None = None
    ) -> None:
        """``blocked`` [N+1] bool: items held out of training (core.model.held_out), never a logit or a negative."""
        super().__init__()
        self.cfg, self.n_items = cfg, n_items
        self.blocked: torch.Tensor | None
        self.register_buffer("blocked", blocked, persistent=False)
        self.scale = scale or RatingScale()
        self.learned = cfg.loss_weights == "uncertainty"
        self.log_vars = nn.Parameter(torch.zeros(2)) if self.learned else None
        self.fixed = [] if isinstance(cfg.loss_weights, str) else [float(w) for w in cfg.loss_weights]
        self.loss = resolve_loss(cfg.loss, n_items)
        self.popularity: torch.Tensor | None = None  # [N+1] training target counts (sampled_softmax: set_popularity)
        self.group_cells = GROUP_CELLS  # the sequence side runs over rows of similar length (core.model.ragged)

    def set_popularity(self, counts: torch.Tensor) -> None:
        """The training targets' counts per item [N+1]: what the sampled softmax draws negatives by."""
        q = counts.float() + 1.0  # every trainable item can be drawn
        q[0] = 0.0
        if self.blocked is not None:
            q[self.blocked.to(q.device)] = 0.0
        self.popularity = q / q.sum()

    def forward(
        self, model: BehaviorModel, batch: Batch, removed: torch.Tensor | None, shares: tuple[float, float] = (1, 1)
    ) -> LossParts:
        """``shares``: factors of the (engagement, rating) parts in the total (a rank's share of a batch split over
        processes, :func:`core.model.distributed.shares`); the parts are returned unscaled."""
        groups = self._positions(model, batch, removed)
        engagement = self._engagement(model, [(g[0], g[2]) for g in groups])
        h_r, target, value = (torch.cat([g[i] for g in groups]) for i in (1, 2, 3))
        values = (value - self.scale.mean) / self.scale.std  # standardized
        rated = ~torch.isnan(values)
        if rated.any():
            rating = F.mse_loss(model.rating_of(h_r[rated], target[rated]).float(), values[rated])
        else:
            rating = torch.zeros((), device=values.device)
        total = self._combine(engagement * shares[0], rating * shares[1])
        return LossParts(total, engagement.detach(), rating.detach())

    def _positions(self, model: BehaviorModel, batch: Batch, removed: torch.Tensor | None) -> list[tuple[Tensor, ...]]:
        """Per group of rows of similar length (:mod:`core.model.ragged`), the task states of its target positions
        (engagement [P, ...], rating [P, ...]), their target items [P] and values [P]. A group's engagement states
        carry its own width of repeat evidence, so the engagement logits are computed group by group."""
        groups = length_groups(batch.mask.sum(1).cpu().numpy(), self.group_cells)
        states: list[tuple[Tensor, ...]] = []
        for index in groups:
            part, gone = (batch, removed) if len(groups) == 1 else rows(batch, index, removed)
            task_e, task_r = model(part, gone)
            target_item, target_value = part.targets()
            has = target_item > 0  # [b, l]
            states.append((task_e[has], task_r[has], target_item[has], target_value[has]))
        return states

    def _engagement(self, model: BehaviorModel, groups: list[tuple[Tensor, Tensor]]) -> torch.Tensor:
        """The engagement loss, a mean over the positions of ``groups`` [(task states [P, ...], targets [P])]."""
        positions = max(1, sum(len(t) for _, t in groups))
        if self.loss == "softmax":
            # in chunks of positions whose logits stay under glibc's largest heap block (32 MB): a larger
            # tensor is a fresh mapping whose pages fault in on every step (as much system CPU as compute)
            items = model.items(None)
            total = groups[0][0].new_zeros((), dtype=torch.float32)
            for h_e, target in _chunks(groups, _LOGIT_CELLS // items.shape[0]):
                logits = model.engagement_logits(h_e, items=items).float()
                logits[:, 0] = float("-inf")
                if self.blocked is not None:
                    logits[:, self.blocked] = float("-inf")  # no gradient reaches a held-out item's rows
                total = total + F.cross_entropy(logits, target, reduction="sum")
            return total / positions
        if self.loss == "sampled_softmax":
            return self._sampled_softmax(model, groups) / positions
        paired = []
        for h_e, target in groups:
            cand = torch.cat([target.unsqueeze(1), self._negatives(target)], 1)  # [P, 1+n]
            flat = model.engagement_logits(h_e.repeat_interleave(cand.shape[1], 0), cand.flatten()).float()
            paired.append(flat.view(cand.shape))
        every = torch.cat(paired)
        if self.loss == "gbce":
            return self._gbce(every)
        labels = torch.zeros_like(every)
        labels[:, 0] = 1.0
        return F.binary_cross_entropy_with_logits(every, labels)

    def _negatives(self, target: torch.Tensor) -> torch.Tensor:
        """[P, n] negatives per position, uniform over the other items trained on (never the target, never a
        held-out item)."""
        n = self.cfg.n_negatives
        if self.blocked is None:
            negs = torch.randint(1, self.n_items, (len(target), n), device=target.device)
            return negs + (negs >= target.unsqueeze(1)).long()
        pool = torch.nonzero(~self.blocked[1:]).squeeze(1) + 1  # [A] sorted
        draw = torch.randint(0, len(pool) - 1, (len(target), n), device=target.device)
        return pool[draw + (draw >= torch.searchsorted(pool, target).unsqueeze(1)).long()]

    def _gbce(self, logits: torch.Tensor) -> torch.Tensor:
        """gBCE over [P, 1+n] logits (target first): beta * -log sigmoid(s+) + sum -log(1 - sigmoid(s-)), per cell
        as BCE averages, beta from the sampling rate alpha = n / (trainable items - 1) and ``gbce_t``."""
        trainable = self.n_items - (int(self.blocked[1:].sum()) if self.blocked is not None else 0)
        alpha = min(1.0, self.cfg.n_negatives / max(1, trainable - 1))
        t = self.cfg.gbce_t
        beta = alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)
        per_row = beta * F.softplus(-logits[:, 0]) + F.softplus(logits[:, 1:]).sum(-1)
        return per_row.mean() / logits.shape[1]

    def _sampled_softmax(self, model: BehaviorModel, groups: list[tuple[Tensor, Tensor]]) -> torch.Tensor:
        """The summed cross-entropy over the batch's targets and popularity-drawn negatives (shared by every
        position), each logit minus log Q(item) (log-Q correction)."""
        if self.popularity is None:
            raise RuntimeError("the sampled softmax needs the training popularity: call set_popularity first")
        targets = torch.cat([t for _, t in groups])
        q = self.popularity.to(targets.device)
        drawn = torch.multinomial(q, self.cfg.n_negatives, replacement=True)
        cands = torch.unique(torch.cat([targets, drawn]))  # sorted; every position's target is a column
        items, log_q = model.items(cands), torch.log(q[cands])
        total = targets.new_zeros((), dtype=torch.float32)
        for h_e, target in _chunks(groups, _LOGIT_CELLS // len(cands)):
            logits = model.engagement_logits(h_e, cands, items=items, shared=True).float() - log_q
            total = total + F.cross_entropy(logits, torch.searchsorted(cands, target), reduction="sum")
        return total

    def _combine(self, engagement: torch.Tensor, rating: torch.Tensor) -> torch.Tensor:
        if self.log_vars is None:
            return self.fixed[0] * engagement + self.fixed[1] * rating
        s = self.log_vars
        return torch.exp(-s[0]) * engagement + torch.exp(-s[1]) * rating + s.sum()


def _chunks(groups: list[tuple[Tensor, Tensor]], step: int) -> Iterator[tuple[Tensor, Tensor]]:
    """(task states, targets) of ``groups`` in pieces of at most ``step`` positions (at least one), group by group."""
    step = max(1, step)
    for h_e, target in groups:
        for lo in range(0, len(target), step):
            yield h_e[lo : lo + step], target[lo : lo + step]


def training_counts(data: SequenceData, split: Split) -> torch.Tensor:
    """[N+1] how often each item is an event of the users' training windows (what a sampled softmax draws by)."""
    user = np.repeat(np.arange(data.n_users), np.diff(data.offsets))  # each event's user
    own = np.arange(len(data.item)) < split.train_end[user]
    return torch.from_numpy(np.bincount(data.item[own], minlength=data.n_items + 1))
