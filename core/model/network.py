"""The multi-task sequence model: typed torch modules whose ``forward`` reads like the architecture.

    event token  = item(text projection + ID) + behavior + value + time gap + event text (or "no text") + position
    history      = causal pre-norm transformer over tokens, attention biased by each event's age
                   at the request time (when the prediction is asked)
    memory       = sum over events of w(behavior, value, age) * V (token - mask token): evidence that adds up
    repeat       = E_j = sum over earlier events of candidate j of w(behavior, age, recency):
                   "this very item is in the history" straight into its engagement logit, mixed
                   with the rest as log(e^explore_j + e^gate(state) (e^E_j - 1)) (RepeatNet's modes;
                   each event adds its weight to the item's repeat log-odds)
    MMoE         = shared experts over the user state (+ the request gap), one softmax gate per task
    engagement   = explore_j = <engagement task state + memory, item representation> + item bias, then the
                   repeat mixture (a logit per item)
    rating       = tower([task state, item, task state * item, user's mean value]) + w * user's mean value
                   + item bias, in standardized units (the mean of the user's earlier values, causal)

The model returns logits and standardized ratings; sigmoid/softmax, de-standardization
and fusion live outside (ranking code), the losses in ``core.model.losses``. The parts are
:mod:`core.model.layers`, :mod:`core.model.memory` and :mod:`core.model.heads`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from core.data.batches import Batch
from core.data.sequences import gap_bucket
from core.model.config import ModelConfig
from core.model.heads import EngagementHead, MMoE, RatingHead, user_value_mean
from core.model.layers import EventEmbedding, EventText, HistoryEncoder, ItemEncoder, pair_ages
from core.model.memory import BehaviorMemory, RequestTime
from core.model.repeat import RepeatPath, pack, presence


class BehaviorModel(nn.Module):
    """History encoder + request time + MMoE + engagement and rating heads."""

    def __init__(self, cfg: ModelConfig, text: torch.Tensor, text_of: torch.Tensor | None = None) -> None:
        """``text`` [V, T]: the distinct item text vectors, ``text_of`` [N+1] each item's row (None: a row per
        item, :class:`~core.model.layers.ItemEncoder`)."""
        super().__init__()
        self.cfg = cfg
        self.items = ItemEncoder(cfg, text, text_of)
        self.events = EventEmbedding(cfg)
        self.history = HistoryEncoder(cfg)
        self.request = RequestTime(cfg)
        self.memory = BehaviorMemory(cfg) if cfg.use_memory else None  # none: old checkpoints load
        self.repeat = RepeatPath(cfg) if cfg.use_repeat else None
        self.mmoe = MMoE(cfg)
        self.engagement = EngagementHead(cfg, self.repeat)
        self.rating = RatingHead(cfg)
        if cfg.use_event_text:  # built last, so the other parts initialize as in a model without it
            self.events.text = EventText(cfg)  # its table of text vectors: core.model.event_text

    @contextmanager
    def dropping_ids(self, dropped: torch.Tensor | None) -> Iterator[None]:
        """Within: the items ``dropped`` ([N+1] bool; None: none) have no ID embedding and no item biases, in the
        history and among the candidates alike (item-ID dropout: the model learns to rank an item from its text
        alone, as it must an item it never saw)."""
        parts = (self.items, self.engagement, self.rating)
        for part in parts:
            part.dropped = dropped
        try:
            yield
        finally:
            for part in parts:
                part.dropped = None

    def tokens(self, batch: Batch) -> torch.Tensor:
        """Event tokens [B, L, D] without position and dropout (the attribution surface)."""
        return self.events(batch, self.items(batch.item))

    def encode(
        self,
        tokens: torch.Tensor,
        batch: Batch,
        removed: torch.Tensor | None = None,
        present: torch.Tensor | None = None,
        last: bool = False,
        transformer_only: bool = False,
    ) -> torch.Tensor:
        """Tokens [B, L, D] -> user states [B, L, D + memory D + repeat 2L]: the transformer's states, then
        the behavior memory and the packed repeat evidence when the model has them. ``removed`` [B, L] bool
        swaps events for the mask token. ``present`` [B, L]: how much of each event is there (default:
        measured on the tokens against the batch's own tokens, so interpolated tokens count partly).

        ``last``: the newest position's state only, [B, 1, ...] (what a ranking reads); its pairwise terms
        (memory, repeat evidence, the last layer's attention) are computed for that one row, not L.
        ``transformer_only``: the transformer's states alone (all that the rating task reads)."""
        mask_token = self.events.mask_token
        if removed is not None:
            tokens = torch.where(removed.unsqueeze(-1), mask_token.expand_as(tokens), tokens)
        now = self.request.times(batch)
        x = self.events.drop(tokens + self.events.positions(tokens.shape[1]))
        every = pair_ages(batch.ts, now)  # [B, L, L] seconds, once for the time bias, the memory and the repeat path
        parts = [self.history(x, batch.ts, batch.mask, now, last, every)]
        asked = now[:, -1:] if last else now  # [B, Lq]: the positions whose states are returned
        if transformer_only:
            return parts[0]
        pairs = self.memory is not None or self.repeat is not None
        ages = gap_bucket(every[:, -1:] if last else every) if pairs else None  # [B, Lq, Lk] buckets
        if self.memory is not None:
            parts.append(self.memory(tokens, batch, asked, mask_token, ages))
        if self.repeat is not None:
            if present is None:
                present = presence(tokens, self.tokens(batch).detach(), mask_token.detach())
            parts.append(pack(self.repeat.evidence(batch, asked, present, ages), batch))
        return parts[0] if len(parts) == 1 else torch.cat(parts, -1)

    def mixed(self, states: torch.Tensor, batch: Batch, last: bool = False) -> torch.Tensor:
        """The MMoE input [B, L, D]: the transformer's states + the request-gap embedding (``last``: the
        newest position's, [B, D]; ``states`` may then be that position's alone)."""
        gap = self.request(batch, self.request.times(batch))
        if last:
            states, gap = states[:, -1], gap[:, -1]
        return states[..., : self.cfg.d_model] + gap

    def tasks(
        self, states: torch.Tensor, batch: Batch, removed: torch.Tensor | None = None, last: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """User states (from :meth:`encode`) -> (engagement task state [B, L, De] (+ D memory features),
        rating task state [B, L, De + 2]).

        ``last``: only the newest position ([B, De (+ D)] and [B, De + 2]); ``states`` may then be
        the newest position's alone ([B, 1, ...], from ``encode(..., last=True)``).
        """
        extra = user_value_mean(batch, self.cfg, removed)  # [B, L, 2]
        mixed = self.mixed(states, batch, last)
        if last:
            states, extra = states[:, -1], extra[:, -1]
        memory = states[..., self.cfg.d_model :]  # [.., D] memory and/or [.., 2L] repeat, or [.., 0]
        task_e, task_r = self.mmoe(mixed)
        return torch.cat([task_e, memory], -1), torch.cat([task_r, extra], -1)

    def forward(
        self, batch: Batch, removed: torch.Tensor | None = None, last: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch -> (engagement task state [B, L, De (+ D memory) (+ 2L repeat)], rating task state [B, L, De + 2]);
        with ``last``, the newest position's alone ([B, ...])."""
        present = batch.mask.float() if removed is None else (batch.mask & ~removed).float()
        states = self.encode(self.tokens(batch), batch, removed, present, last)
        return self.tasks(states, batch, removed, last)

    def engagement_logits(
        self,
        task_e: torch.Tensor,
        item_idx: torch.Tensor | None = None,
        items: torch.Tensor | None = None,
        shared: bool = False,
    ) -> torch.Tensor:
        """[P, De] -> logits over every item [P, N+1] (index 0 = padding), or paired [P] for ``item_idx`` [P], or
        [P, K] over candidates ``item_idx`` [K] common to every row (``shared``). ``items``: the item
        representations, when the caller already has them (``self.items(item_idx)``)."""
        return self.engagement(task_e, self.items(item_idx) if items is None else items, item_idx, shared)

    def rating_of(self, task_r: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """[P, De + 2] and items [P] -> standardized ratings [P]."""
        return self.rating(task_r, self.items(item_idx), item_idx)
