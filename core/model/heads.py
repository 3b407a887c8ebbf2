"""The multi-task top: MMoE over the user state, the engagement head (a logit per item), the rating head.

MMoE         = shared experts over the user state (+ the request gap), one softmax gate per task
engagement   = <engagement task state + memory, item representation> + item bias  (a logit per item),
               then the repeat path's mixture (core.model.repeat) where the model has one
rating       = tower([task state, item, task state * item, user mean]) + item bias, standardized units
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from core.data.batches import Batch
from core.model.config import ModelConfig
from core.model.layers import Dropout
from core.model.repeat import RepeatPath, unpack


class MMoE(nn.Module):
    """Shared experts and one softmax gate per task over the user state."""

    def __init__(self, cfg: ModelConfig, n_tasks: int = 2) -> None:
        super().__init__()
        self.n_experts, self.expert_dim = cfg.n_experts, cfg.expert_dim
        self.experts = nn.Sequential(nn.Linear(cfg.d_model, cfg.n_experts * cfg.expert_dim), nn.GELU())
        self.gates = nn.ModuleList(nn.Linear(cfg.d_model, cfg.n_experts) for _ in range(n_tasks))

    def forward(self, state: torch.Tensor) -> list[torch.Tensor]:
        """state [..., D] -> one [..., expert_dim] mixture per task."""
        experts = self.outputs(state)
        return [self.task(state, i, experts) for i in range(len(self.gates))]

    def outputs(self, state: torch.Tensor) -> torch.Tensor:
        """state [..., D] -> the experts' outputs [..., E, De]."""
        return self.experts(state).unflatten(-1, (self.n_experts, self.expert_dim))

    def task(self, state: torch.Tensor, which: int, experts: torch.Tensor) -> torch.Tensor:
        """Task ``which``'s mixture [..., De] of the experts' outputs [..., E, De] (:meth:`outputs`) at ``state``."""
        return (self.gates[which](state).softmax(-1).unsqueeze(-1) * experts).sum(-2)


class EngagementHead(nn.Module):
    """Logit of engaging with a candidate: task state · item representation + item bias.

    With the behavior memory, the task state carries it as D trailing features, added to
    the projected state: logit = (proj(task) + memory) · item + item bias.
    """

    def __init__(self, cfg: ModelConfig, repeat: RepeatPath | None = None) -> None:
        super().__init__()
        self.proj = nn.Linear(cfg.expert_dim, cfg.d_model)
        self.item_bias = nn.Embedding(cfg.n_items + 1, 1)
        nn.init.zeros_(self.item_bias.weight)
        self.dropped: torch.Tensor | None = None  # [N+1] bool: items without their bias (BehaviorModel.dropping_ids)
        self.memory_dim = cfg.d_model if cfg.use_memory else 0
        self._repeat = [repeat]  # a list: the network owns the module, the head only uses it

    def forward(
        self, task_state: torch.Tensor, items: torch.Tensor, item_idx: torch.Tensor | None, shared: bool = False
    ) -> torch.Tensor:
        """[P, De (+ D memory) (+ 2L repeat)] x items [N', D] (all, when item_idx is None) -> logits [P, N'];
        or paired [P] when items [P, D]; ``shared``: ``item_idx`` [K] are candidates of every row -> [P, K]."""
        h = self._user(task_state)
        bias = item_bias(self.item_bias, item_idx, self.dropped)
        logits = h @ items.T + bias if item_idx is None or shared else (h * items).sum(-1) + bias
        repeat, rest = self._repeat[0], task_state[..., self.proj.in_features + self.memory_dim :]
        if repeat is None or rest.shape[-1] == 0:
            return logits
        evidence, seen = unpack(rest)
        return repeat.combine(logits, evidence, seen, item_idx, task_state[..., : self.proj.in_features], shared)

    def blocks(self, task_state: torch.Tensor, items: torch.Tensor, width: int) -> Iterator[tuple[int, torch.Tensor]]:
        """The logits over every item (``forward`` with ``item_idx`` None), ``width`` columns at a time: (first
        column, logits [P, <= width]) of task states [P, ...] and every item's representation [N+1, D]. The
        [P, N+1] matrix is never held, and a block stays in the CPU's cache while the caller reads it; each block
        is written into the previous one's memory (keep what you need before the next)."""
        h = self._user(task_state)
        bias = item_bias(self.item_bias, None, self.dropped)
        repeat, rest = self._repeat[0], task_state[..., self.proj.in_features + self.memory_dim :]
        cells = None
        if repeat is not None and rest.shape[-1]:
            evidence, seen = unpack(rest)
            cells = repeat.history_cells(
                evidence,
                seen,
                None,
                task_state[..., : self.proj.in_features],
                lambda r, c: (h[r] * items[c]).sum(-1) + bias[c],
            )
            order = torch.argsort(cells[1])  # by column: each block's cells are one slice
            cells = (cells[0][order], cells[1][order], cells[2][order].to(h.dtype))
        n = items.shape[0]
        buffer = h.new_empty(h.shape[0], min(width, n))
        for lo in range(0, n, width):
            hi = min(lo + width, n)
            out = torch.addmm(bias[lo:hi], h, items[lo:hi].T, out=buffer if hi - lo == width else None)
            if cells is not None:
                a, b = (int(x) for x in torch.searchsorted(cells[1], torch.tensor([lo, hi], device=h.device)))
                out[cells[0][a:b], cells[1][a:b] - lo] = cells[2][a:b]
            yield lo, out

    def _user(self, task_state: torch.Tensor) -> torch.Tensor:
        """The user side of the dot product: the projected task state (+ the behavior memory's trailing features)."""
        de = self.proj.in_features
        h = self.proj(task_state[..., :de])
        if self.memory_dim and task_state.shape[-1] > de:
            h = h + task_state[..., de : de + self.memory_dim]
        return h


class RatingHead(nn.Module):
    """Standardized rating: tower([state, item, state * item, user mean]) + w * user mean + item bias.

    The task state carries two extra trailing features: the user's mean earlier value
    (standardized) and whether there is one.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.proj = nn.Linear(cfg.expert_dim, d)
        self.tower = nn.Sequential(nn.Linear(3 * d + 2, d), nn.GELU(), Dropout(cfg.dropout), nn.Linear(d, 1))
        self.user_weight = nn.Parameter(torch.zeros(()))
        self.item_bias = nn.Embedding(cfg.n_items + 1, 1)
        nn.init.zeros_(self.item_bias.weight)
        self.dropped: torch.Tensor | None = None  # [N+1] bool: items without their bias (BehaviorModel.dropping_ids)

    def forward(self, task_state: torch.Tensor, items: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """task_state [P, De + 2], items [P, D], item_idx [P] -> [P]."""
        h, extra = self.proj(task_state[..., :-2]), task_state[..., -2:]
        out = self.tower(torch.cat([h, items, h * items, extra], -1)).squeeze(-1)
        return out + self.user_weight * extra[..., 0] + item_bias(self.item_bias, item_idx, self.dropped)


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


def item_bias(table: nn.Embedding, idx: torch.Tensor | None, dropped: torch.Tensor | None) -> torch.Tensor:
    """The item biases of ``idx`` (every item when None), zero for the ``dropped`` items."""
    bias = table.weight.squeeze(-1) if idx is None else table(idx).squeeze(-1)
    if dropped is not None:
        bias = bias * ~(dropped if idx is None else dropped[idx])
    return bias
