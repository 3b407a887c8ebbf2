"""The multi-task sequence model: typed torch modules whose ``forward`` reads like the architecture.

    event token  = item(text projection + ID) + behavior + value + time gap + position
    history      = causal pre-norm transformer over tokens, attention biased by each event's age
                   at the request time (when the prediction is asked)
    memory       = sum over events of w(behavior, value, age) * V (token - mask token): evidence that adds up
    MMoE         = shared experts over the user state (+ the request gap), one softmax gate per task
    engagement   = <engagement task state + memory, item representation> + item bias  (a logit per item)
    rating       = tower([task state, item, task state * item]) + item bias, in standardized units

The model returns logits and standardized ratings; sigmoid/softmax, de-standardization
and fusion live outside (ranking code), the losses in ``core.model.training``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from core.data.batches import Batch
from core.data.sequences import GAP_BUCKETS, VALUE_BUCKETS, gap_bucket


@dataclass
class ModelConfig:
    """Architecture settings (all JSON-serializable)."""

    n_items: int
    n_behaviors: int  # including padding index 0
    text_dim: int
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    max_len: int = 200
    dropout: float = 0.2
    n_experts: int = 4
    expert_dim: int = 64
    use_text: bool = True
    use_item_id: bool = True
    use_request_time: bool = True  # condition on when the prediction is asked (see RequestTime)
    use_memory: bool = True  # the additive behavior memory beside the transformer (see BehaviorMemory)
    request_gap: float = 86400.0  # seconds after the last event a whole-history request is asked
    value_mean: float = 0.0  # rating standardization, (value - mean) / std
    value_std: float = 1.0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class ItemEncoder(nn.Module):
    """Item index -> representation: projected frozen text embedding + item-ID embedding."""

    def __init__(self, cfg: ModelConfig, text: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("text", text.float(), persistent=True)  # [N+1, T], row 0 = padding
        self.proj = nn.Linear(cfg.text_dim, cfg.d_model)
        self.id_emb = nn.Embedding(cfg.n_items + 1, cfg.d_model, padding_idx=0)
        nn.init.normal_(self.id_emb.weight, std=0.02)
        self.use_text, self.use_item_id = cfg.use_text, cfg.use_item_id

    def forward(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """``idx`` [...] -> [..., D]; None -> every item [N+1, D]."""
        text = self.text if idx is None else self.text[idx]
        ids = self.id_emb.weight if idx is None else self.id_emb(idx)
        out = torch.zeros_like(ids)
        if self.use_text:
            out = out + self.proj(text)
        if self.use_item_id:
            out = out + ids
        return out


class EventEmbedding(nn.Module):
    """Event token = item + behavior + value + gap-to-previous + position embeddings."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.behavior = nn.Embedding(cfg.n_behaviors, d, padding_idx=0)
        self.value = nn.Embedding(VALUE_BUCKETS, d)
        self.gap = nn.Embedding(GAP_BUCKETS, d)
        self.position = nn.Embedding(cfg.max_len, d)
        self.mask_token = nn.Parameter(torch.zeros(d))  # stands in for a removed event
        self.drop = nn.Dropout(cfg.dropout)
        self.scale = math.sqrt(d)
        for emb in (self.behavior, self.value, self.gap, self.position):
            nn.init.normal_(emb.weight, std=0.02)

    def forward(self, batch: Batch, item_repr: torch.Tensor) -> torch.Tensor:
        """[B, L] codes + item representations [B, L, D] -> tokens [B, L, D] (before dropout)."""
        gaps = torch.zeros_like(batch.ts)
        gaps[:, 1:] = gap_bucket(batch.ts[:, 1:] - batch.ts[:, :-1]).masked_fill(~batch.mask[:, :-1], 0)
        gaps = gaps.masked_fill(~batch.mask, 0)  # the first real event has no previous one: bucket 0
        tok = item_repr * self.scale + self.behavior(batch.behavior) + self.value(batch.value) + self.gap(gaps)
        return tok * batch.mask.unsqueeze(-1)

    def positions(self, length: int) -> torch.Tensor:
        return self.position.weight[-length:]  # [L, D]; the newest event always has the last position


class TimeBias(nn.Module):
    """Additive attention bias that is a learned function of each earlier event's age.

    bias_h(age) = a_h * log2(1 + age in seconds) + b_h * age in days: a per-head recency
    decay (logarithmic and linear parts) that costs one broadcast, not a lookup per pair.
    The age is measured at the query position's request time (``now`` [B, L]).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.log_slope = nn.Parameter(torch.zeros(cfg.n_heads))
        self.day_slope = nn.Parameter(torch.zeros(cfg.n_heads))

    def forward(self, ts: torch.Tensor, key_mask: torch.Tensor, now: torch.Tensor | None = None) -> torch.Tensor:
        """ts [B, L], key_mask [B, L], now [B, L] (default ts) -> float mask [B, H, L, L] (-inf where not allowed)."""
        length = ts.shape[1]
        now = ts if now is None else now
        age = (now.unsqueeze(2) - ts.unsqueeze(1)).clamp(min=0).float().unsqueeze(1)  # [B, 1, Lq, Lk]
        bias = self.log_slope.view(1, -1, 1, 1) * torch.log2(1 + age) + self.day_slope.view(1, -1, 1, 1) * (age / 86400)
        causal = torch.ones(length, length, dtype=torch.bool, device=ts.device).tril()
        allowed = causal & key_mask.unsqueeze(1)  # [B, L, L]
        allowed = allowed | torch.eye(length, dtype=torch.bool, device=ts.device)  # never an empty row
        return bias.masked_fill(~allowed.unsqueeze(1), float("-inf"))


class Block(nn.Module):
    """Pre-norm transformer block; dropout on residuals only (fast on CPU)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d, self.heads = cfg.d_model, cfg.n_heads
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.ffn = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor) -> torch.Tensor:
        """x [B, L, D], attn_bias [B, H, L, L] -> [B, L, D]."""
        b, length, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)  # [B, H, L, Dh]
        x = x + self.drop(self.out(att.transpose(1, 2).reshape(b, length, d)))
        return x + self.drop(self.ffn(self.norm2(x)))


class HistoryEncoder(nn.Module):
    """Causal transformer over event tokens -> a user state at every position."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.time_bias = TimeBias(cfg)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(self, tokens: torch.Tensor, ts: torch.Tensor, key_mask: torch.Tensor,
                now: torch.Tensor | None = None) -> torch.Tensor:
        """tokens [B, L, D], times [B, L] -> states [B, L, D]."""
        bias = self.time_bias(ts, key_mask, now)
        x = tokens
        for block in self.blocks:
            x = block(x, bias)
        return self.norm(x)


# The memory's weight logits are scaled up: a table entry gets one gradient per step, and
# Adam moves it by about lr per step, too slowly for weights that differ several-fold.
GATE_SCALE = 8.0


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

    def weights(self, batch: Batch, now: torch.Tensor) -> torch.Tensor:
        """[B, Lq, Lk] weight of event k in position q's memory (0 for later events and padding)."""
        length = batch.ts.shape[1]
        bucket = gap_bucket((now.unsqueeze(2) - batch.ts.unsqueeze(1)).clamp(min=0))  # [B, Lq, Lk]
        logits = GATE_SCALE * (self.behavior(batch.behavior) + self.value(batch.value))  # [B, Lk, G]
        per_pair = logits.unsqueeze(1).expand(-1, length, -1, -1).gather(-1, bucket.unsqueeze(-1)).squeeze(-1)
        causal = torch.ones(length, length, dtype=torch.bool, device=now.device).tril()
        return F.softplus(per_pair) * (causal & batch.mask.unsqueeze(1))

    @torch.no_grad()
    def table(self, behaviors: torch.Tensor, values: torch.Tensor, ages: torch.Tensor) -> torch.Tensor:
        """The learned weight w of behavior codes [K] with value buckets [K] at ages in seconds [A]: [K, A]."""
        logits = self.behavior.weight[behaviors] + self.value.weight[values]  # [K, G]
        return F.softplus(GATE_SCALE * logits[:, gap_bucket(ages)])

    def forward(self, tokens: torch.Tensor, batch: Batch, now: torch.Tensor, mask_token: torch.Tensor) -> torch.Tensor:
        """Tokens [B, L, D] (removed events already the mask token) -> memory [B, L, D]."""
        return self.weights(batch, now) @ self.proj(tokens - mask_token)


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


class MMoE(nn.Module):
    """Shared experts and one softmax gate per task over the user state."""

    def __init__(self, cfg: ModelConfig, n_tasks: int = 2) -> None:
        super().__init__()
        self.n_experts, self.expert_dim = cfg.n_experts, cfg.expert_dim
        self.experts = nn.Sequential(nn.Linear(cfg.d_model, cfg.n_experts * cfg.expert_dim), nn.GELU())
        self.gates = nn.ModuleList(nn.Linear(cfg.d_model, cfg.n_experts) for _ in range(n_tasks))

    def forward(self, state: torch.Tensor) -> list[torch.Tensor]:
        """state [..., D] -> one [..., expert_dim] mixture per task."""
        experts = self.experts(state).unflatten(-1, (self.n_experts, self.expert_dim))  # [..., E, De]
        return [(gate(state).softmax(-1).unsqueeze(-1) * experts).sum(-2) for gate in self.gates]


class EngagementHead(nn.Module):
    """Logit of engaging with a candidate: task state · item representation + item bias.

    With the behavior memory, the task state carries it as D trailing features, added to
    the projected state: logit = (proj(task) + memory) · item + item bias.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.proj = nn.Linear(cfg.expert_dim, cfg.d_model)
        self.item_bias = nn.Embedding(cfg.n_items + 1, 1)
        nn.init.zeros_(self.item_bias.weight)

    def forward(self, task_state: torch.Tensor, items: torch.Tensor, item_idx: torch.Tensor | None) -> torch.Tensor:
        """[P, De] x items [N', D] (all, when item_idx is None) -> logits [P, N']; or paired [P] when items [P, D]."""
        h = self.proj(task_state[..., :self.proj.in_features])
        if task_state.shape[-1] > self.proj.in_features:  # the behavior memory's trailing features
            h = h + task_state[..., self.proj.in_features:]
        bias = self.item_bias.weight.squeeze(-1) if item_idx is None else self.item_bias(item_idx).squeeze(-1)
        if item_idx is None:
            return h @ items.T + bias
        return (h * items).sum(-1) + bias


class RatingHead(nn.Module):
    """Standardized rating: tower([state, item, state * item, user mean]) + w * user mean + item bias.

    The task state carries two extra trailing features: the user's mean earlier value
    (standardized) and whether there is one.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.proj = nn.Linear(cfg.expert_dim, d)
        self.tower = nn.Sequential(nn.Linear(3 * d + 2, d), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(d, 1))
        self.user_weight = nn.Parameter(torch.zeros(()))
        self.item_bias = nn.Embedding(cfg.n_items + 1, 1)
        nn.init.zeros_(self.item_bias.weight)

    def forward(self, task_state: torch.Tensor, items: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """task_state [P, De + 2], items [P, D], item_idx [P] -> [P]."""
        h, extra = self.proj(task_state[..., :-2]), task_state[..., -2:]
        out = self.tower(torch.cat([h, items, h * items, extra], -1)).squeeze(-1)
        return out + self.user_weight * extra[..., 0] + self.item_bias(item_idx).squeeze(-1)


def user_value_mean(batch: Batch, cfg: ModelConfig, removed: torch.Tensor | None = None) -> torch.Tensor:
    """Causal running mean of each user's event values, standardized: [B, L, 2] (mean, has one).

    Removed events (``removed`` [B, L]) do not count, like everything else about them.
    """
    has = (batch.value > 0) & batch.mask
    if removed is not None:
        has = has & ~removed
    values = ((batch.value - 1).float() - cfg.value_mean) / cfg.value_std
    total = torch.cumsum(values * has, 1)
    count = torch.cumsum(has.float(), 1)
    mean = torch.where(count > 0, total / count.clamp(min=1), torch.zeros_like(total))
    return torch.stack([mean, (count > 0).float()], -1)


class BehaviorModel(nn.Module):
    """History encoder + request time + MMoE + engagement and rating heads."""

    def __init__(self, cfg: ModelConfig, text: torch.Tensor) -> None:
        super().__init__()
        self.cfg = cfg
        self.items = ItemEncoder(cfg, text)
        self.events = EventEmbedding(cfg)
        self.history = HistoryEncoder(cfg)
        self.request = RequestTime(cfg)
        self.memory = BehaviorMemory(cfg) if cfg.use_memory else None  # none: old checkpoints load
        self.mmoe = MMoE(cfg)
        self.engagement = EngagementHead(cfg)
        self.rating = RatingHead(cfg)

    def tokens(self, batch: Batch) -> torch.Tensor:
        """Event tokens [B, L, D] without position and dropout (the attribution surface)."""
        return self.events(batch, self.items(batch.item))

    def encode(self, tokens: torch.Tensor, batch: Batch, removed: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens [B, L, D] -> user states [B, L, D] (with the behavior memory [B, L, 2D]: the
        transformer's states, then the memory); ``removed`` [B, L] bool swaps events for the mask token."""
        if removed is not None:
            tokens = torch.where(removed.unsqueeze(-1), self.events.mask_token.expand_as(tokens), tokens)
        now = self.request.times(batch)
        x = self.events.drop(tokens + self.events.positions(tokens.shape[1]))
        states = self.history(x, batch.ts, batch.mask, now)
        if self.memory is None:
            return states
        return torch.cat([states, self.memory(tokens, batch, now, self.events.mask_token)], -1)

    def mixed(self, states: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The MMoE input [B, L, D]: the transformer's states + the request-gap embedding."""
        return states[..., :self.cfg.d_model] + self.request(batch, self.request.times(batch))

    def tasks(self, states: torch.Tensor, batch: Batch, removed: torch.Tensor | None = None,
              last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """User states (from :meth:`encode`) -> (engagement task state [B, L, De] (+ D memory features),
        rating task state [B, L, De + 2]).

        ``last``: only the newest position ([B, De (+ D)] and [B, De + 2]).
        """
        mixed = self.mixed(states, batch)  # [B, L, D]
        memory = states[..., self.cfg.d_model:]  # [B, L, D] or [B, L, 0]
        extra = user_value_mean(batch, self.cfg, removed)  # [B, L, 2]
        if last:
            mixed, extra, memory = mixed[:, -1], extra[:, -1], memory[:, -1]
        task_e, task_r = self.mmoe(mixed)
        return torch.cat([task_e, memory], -1), torch.cat([task_r, extra], -1)

    def forward(self, batch: Batch, removed: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch -> (engagement task state [B, L, De], rating task state [B, L, De + 2])."""
        return self.tasks(self.encode(self.tokens(batch), batch, removed), batch, removed)

    def engagement_logits(self, task_e: torch.Tensor, item_idx: torch.Tensor | None = None) -> torch.Tensor:
        """[P, De] -> logits over every item [P, N+1] (index 0 = padding), or paired [P] for ``item_idx`` [P]."""
        items = self.items(item_idx)
        return self.engagement(task_e, items, item_idx)

    def rating_of(self, task_r: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """[P, De + 2] and items [P] -> standardized ratings [P]."""
        return self.rating(task_r, self.items(item_idx), item_idx)
