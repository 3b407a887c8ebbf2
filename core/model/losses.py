"""The training losses, outside the model (torchrec style).

Every position predicts the next event (SASRec style): the engagement loss is a full
softmax over all items (or BCE with sampled negatives), the rating loss an MSE on
standardized values, masked where the next event has no value. Task weights are fixed
or learned (uncertainty weighting, Kendall et al. 2018).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from core.data.batches import Batch
from core.model.config import TrainConfig
from core.model.network import BehaviorModel
from core.model.protocol import RatingScale

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

    def forward(self, model: BehaviorModel, batch: Batch, removed: torch.Tensor | None) -> LossParts:
        task_e, task_r = model(batch, removed)
        target_item, target_value = batch.targets()
        has_target = target_item > 0  # [B, L]
        h_e, h_r = task_e[has_target], task_r[has_target]  # [P, De]
        target = target_item[has_target]  # [P]
        engagement = self._engagement(model, h_e, target)
        values = (target_value[has_target] - self.scale.mean) / self.scale.std  # standardized
        rated = ~torch.isnan(values)
        if rated.any():
            rating = F.mse_loss(model.rating_of(h_r[rated], target[rated]).float(), values[rated])
        else:
            rating = torch.zeros((), device=values.device)
        return LossParts(self._combine(engagement, rating), engagement.detach(), rating.detach())

    def _engagement(self, model: BehaviorModel, h_e: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.cfg.loss == "softmax":
            # in chunks of positions whose logits stay under glibc's largest heap block (32 MB): a larger
            # tensor is a fresh mapping whose pages fault in on every step (as much system CPU as compute)
            items = model.items(None)
            step = max(1, _LOGIT_CELLS // items.shape[0])
            total = h_e.new_zeros((), dtype=torch.float32)
            for lo in range(0, len(target), step):
                logits = model.engagement_logits(h_e[lo : lo + step], items=items).float()
                logits[:, 0] = float("-inf")
                if self.blocked is not None:
                    logits[:, self.blocked] = float("-inf")  # no gradient reaches a held-out item's rows
                total = total + F.cross_entropy(logits, target[lo : lo + step], reduction="sum")
            return total / max(1, len(target))
        if self.blocked is None:
            negs = torch.randint(1, self.n_items, (len(target), self.cfg.n_negatives), device=target.device)
            negs = negs + (negs >= target.unsqueeze(1)).long()  # uniform over the other items, never the target
        else:  # uniform over the other items trained on (held-out ones are never negatives)
            pool = torch.nonzero(~self.blocked[1:]).squeeze(1) + 1  # [A] sorted
            draw = torch.randint(0, len(pool) - 1, (len(target), self.cfg.n_negatives), device=target.device)
            negs = pool[draw + (draw >= torch.searchsorted(pool, target).unsqueeze(1)).long()]
        cand = torch.cat([target.unsqueeze(1), negs], 1)  # [P, 1+n]
        flat = model.engagement_logits(h_e.repeat_interleave(cand.shape[1], 0), cand.flatten()).float()
        labels = torch.zeros_like(flat).view(cand.shape)
        labels[:, 0] = 1.0
        return F.binary_cross_entropy_with_logits(flat.view(cand.shape), labels)

    def _combine(self, engagement: torch.Tensor, rating: torch.Tensor) -> torch.Tensor:
        if self.log_vars is None:
            return self.fixed[0] * engagement + self.fixed[1] * rating
        s = self.log_vars
        return torch.exp(-s[0]) * engagement + torch.exp(-s[1]) * rating + s.sum()
