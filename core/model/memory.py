"""What the transformer cannot say alone: an additive memory of behaviors, and when the prediction is asked.

memory       = sum over events of w(behavior, value, age) * V (token - mask token): evidence that adds up
request time = the gap between the last event and the request, embedded
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.data.batches import Batch
from core.data.sequences import GAP_BUCKETS, VALUE_BUCKETS, gap_bucket
from core.model.config import ModelConfig

# The memory's weight logits are scaled up: a table entry gets one gradient per step, and
# Adam moves it by about lr per step, too slowly for weights that differ several-fold.
GATE_SCALE = 8.0


def pair_age_buckets(batch: Batch, now: torch.Tensor) -> torch.Tensor:
    """[B, Lq, Lk] gap bucket of each event's age at each position's request time (computed once per forward:
    the memory and the repeat path share it)."""
    return gap_bucket((now.unsqueeze(2) - batch.ts.unsqueeze(1)).clamp(min=0))


class BehaviorMemory(nn.Module):
    """An additive, age-weighted memory of the user's earlier events, beside the transformer.

    memory_q = sum over events k <= q of  w(b_k, v_k, g_qk) * V (x_k - m)

    over event tokens x_k (m = the mask token, so a removed event adds exactly nothing),
    with a learned weight per behavior b, value bucket v and age bucket g (the event's age
    at q's request time): w = softplus(8 (W_b[b, g] + W_v[v, g])). Softmax attention averages
    its inputs, so the transformer alone cannot say "two purchases count more than one";
    this memory adds each event's evidence and enters the engagement logit linearly
    (``h · item_j``). The weights are the model's own per-behavior influence by age, one
    number per (behavior, age bucket), not per item. ``V`` starts at zero: a new model
    starts as the transformer alone.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.behavior = nn.Embedding(cfg.n_behaviors, GAP_BUCKETS)
        self.value = nn.Embedding(VALUE_BUCKETS, GAP_BUCKETS)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        for weight in (self.behavior.weight, self.value.weight, self.proj.weight):
            nn.init.zeros_(weight)

    def weights(self, batch: Batch, now: torch.Tensor, bucket: torch.Tensor | None = None) -> torch.Tensor:
        """[B, Lq, Lk] weight of event k in position q's memory (0 for later events and padding). ``now``
        [B, Lq]: the request times of the newest Lq positions (all L, or the last one)."""
        b, length = batch.ts.shape
        if bucket is None:  # the age bucket of every (position, event) pair: [B, Lq, Lk]
            bucket = pair_age_buckets(batch, now)
        lq = bucket.shape[1]
        logits = GATE_SCALE * (self.behavior(batch.behavior) + self.value(batch.value))  # [B, Lk, G]
        # one flat gather from [B, Lk * G]: gathering from a [B, Lq, Lk, G] expansion would make
        # its backward fill and scatter into a tensor Lq times larger (most of a step's time)
        index = bucket + GAP_BUCKETS * torch.arange(length, device=now.device)  # [B, Lq, Lk]
        per_pair = logits.reshape(b, -1).gather(1, index.reshape(b, -1)).view(b, lq, length)
        causal = torch.ones(length, length, dtype=torch.bool, device=now.device).tril()[length - lq :]
        return F.softplus(per_pair) * (causal & batch.mask.unsqueeze(1))

    @torch.no_grad()
    def table(self, behaviors: torch.Tensor, values: torch.Tensor, ages: torch.Tensor) -> torch.Tensor:
        """The learned weight w of behavior codes [K] with value buckets [K] at ages in seconds [A]: [K, A]."""
        logits = self.behavior.weight[behaviors] + self.value.weight[values]  # [K, G]
        return F.softplus(GATE_SCALE * logits[:, gap_bucket(ages)])

    def forward(
        self,
        tokens: torch.Tensor,
        batch: Batch,
        now: torch.Tensor,
        mask_token: torch.Tensor,
        bucket: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Tokens [B, L, D] (removed events already the mask token) -> memory [B, Lq, D] of the newest Lq
        positions (``now`` [B, Lq])."""
        return self.weights(batch, now, bucket) @ self.proj(tokens - mask_token)


class RequestTime(nn.Module):
    """When the prediction is asked: the request time of every position and its gap embedding.

    Training asks each position at the next event's time; evaluation at the held-out
    event's time; a whole-history request (marked -1) ``request_gap`` seconds after the
    last event. Whether the user is still in the same burst of activity or back days later
    changes what comes next (the same item's next funnel step, or a new choice).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.enabled, self.default_gap = cfg.use_request_time, int(round(cfg.request_gap))
        self.d_model = cfg.d_model
        self.gap = nn.Embedding(GAP_BUCKETS, cfg.d_model) if self.enabled else None  # none: old checkpoints load
        if self.gap is not None:
            nn.init.normal_(self.gap.weight, std=0.02)

    def times(self, batch: Batch) -> torch.Tensor:
        """[B, L] request time of each position (seconds)."""
        if not self.enabled:
            return batch.ts
        if batch.request_ts is None:
            now = torch.cat([batch.ts[:, 1:], batch.ts[:, -1:] + self.default_gap], 1)
        else:
            now = torch.where(batch.request_ts < 0, batch.ts + self.default_gap, batch.request_ts)
        return torch.maximum(now, batch.ts)

    def forward(self, batch: Batch, now: torch.Tensor) -> torch.Tensor:
        """[B, L] -> gap embedding [B, L, D] (zeros when disabled)."""
        if self.gap is None:
            return torch.zeros(*now.shape, self.d_model, device=now.device)
        return self.gap(gap_bucket(now - batch.ts))
