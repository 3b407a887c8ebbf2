"""The repeat path: a direct line from "this candidate is in the history" to its engagement logit.

Each earlier event k <= q of the user gives evidence for its own item at position q:

    w_qk = f(W[b_k, age_qk] + R[distance_qk]) + last_qk * f(Rank[distinct items since k])   (* presence_k)

W is a learned weight per behavior and age bucket (the event's age at q's request time), R per
recency bucket (how many events ago, log2), Rank for the item's latest event by how many distinct
items came since (the order of "the user's most recent distinct items"), ``presence_k`` 1 for an
event that is there and 0 for a removed one (the mask token). Parameters are stored divided by
:data:`PARAM_SCALE`. The evidence of a candidate j is E_qj = sum of w_qk over its events.

Three ways to meet the rest of the logit (``ModelConfig.repeat_mix`` and ``repeat_evidence``):

- compound mixture (f = softplus, the default): logit_j = log(exp(explore_j) + exp(g(state)) (exp(E_qj) - 1)),
  the repeat and explore modes of RepeatNet (Ren et al. 2019) as one softmax: the user state's gate g
  says how likely a repeat is now, the evidence which earlier item. An item the user just met
  keeps its repeat mass whatever its item vector says, so a noisy vector of a rare item cannot
  sink it, and an item never met (E = 0) is scored by the explore logit alone. Each event adds its
  weight to the item's repeat log-odds, as evidence adds up in a choice model: with g = explore_j the
  logit is explore_j + E_qj exactly, and removing one of an item's events lowers its repeat
  log-mass by about that event's own weight, whatever else the item has.
- summed mixture (f = exp, ``repeat_evidence: "sum"``, runs saved before the compound one):
  logit_j = log(exp(explore_j) + exp(g + log E_qj)). The log of a sum of exponentials is close to its
  largest term, so an item's repeat mass followed its strongest event, and an item's only event
  carried all of it: attributions then credited lone events (most often views) over the behaviors
  that add evidence.
- added term (f = softplus, ``repeat_mix: false``, models saved before the mixture):
  logit_j = explore_j + a log(1 + E_qj).

In repeat-heavy logs the next event often continues what the user just did (the next funnel step
of a viewed item, a re-purchase). Under a protocol that excludes earlier items the path has no
effect on the ranking (and is off by default).

The evidence per (position, event) pair travels beside the user state as trailing features
(:func:`pack`), so every caller that turns task states into logits gets it without a new
argument; :class:`~core.model.heads.EngagementHead` unpacks it. Presence is computed from the
tokens (:func:`presence`), so Integrated Gradients, which interpolates tokens from the mask
token to the event, attributes the repeat evidence to the events that give it (the mixture is
smooth in presence: E is linear in it, inside a log-sum-exp).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from core.data.batches import Batch
from core.data.sequences import GAP_BUCKETS, gap_bucket
from core.model.config import ModelConfig

DISTANCE_BUCKETS = 12  # log2 buckets of how many events ago: 0, 1, 2-3, 4-7, ..., 1024+
# The path's parameters are scaled up, as the memory's weight logits are (core.model.memory):
# Adam moves a parameter by about lr per step, too slowly for a weight that must reach several units.
PARAM_SCALE = 8.0
# up to this many candidates per history event, the mixture is computed densely over [rows, candidates] (ten passes
# over a few hundred columns are cheaper than sorting each row's history: at 200 events, about 450 items)
DENSE_UP_TO = 2.5
RANK_BUCKETS = 22  # distinct items since the last occurrence: 0..15 exactly, then 16-31, 32-63, ... 512+


class RepeatPath(nn.Module):
    """Per-(position, earlier event) repeat evidence [B, Lq, Lk] and its scale in the logit."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.behavior = nn.Embedding(cfg.n_behaviors, GAP_BUCKETS)
        self.distance = nn.Embedding(DISTANCE_BUCKETS, 1)
        self.rank = nn.Embedding(RANK_BUCKETS, 1)  # the last occurrence, by how many distinct items came since
        # It starts as the recency heuristic ("the user's most recent items first"): as a summed mixture, the
        # newest event weighs e^2 + e^2 (its recency and its rank), an item four events back e^0 + e^0, so
        # every earlier item outranks the near-uniform explore logits of a new model, newest first; as a
        # compound mixture softplus(2) + softplus(2) = 4.3 nats of repeat log-odds against 1.4 for an item last
        # met four events back; as an added term, a gain of 2 log(1 + softplus(2 - recency bucket)). Training
        # moves it from there: up where users repeat, down where they never do (the gate, or the scale a).
        self.scale = nn.Parameter(torch.full((), 4.0 / PARAM_SCALE))
        self.mix = cfg.repeat_mix
        # compound evidence: each event adds its (non-negative) weight to the item's repeat log-odds
        self.compound = cfg.repeat_mix and getattr(cfg, "repeat_evidence", "sum") == "compound"
        # the mixture's gate: how likely a repeat is at this position, from the engagement task state
        self.gate = nn.Linear(cfg.expert_dim, 1) if self.mix else None  # none: added-term models load
        if self.gate is not None:
            nn.init.zeros_(self.gate.weight)
            nn.init.zeros_(self.gate.bias)
        nn.init.zeros_(self.behavior.weight)
        with torch.no_grad():
            # A steeper fall with distance would make a new compound model rank earlier items exactly as the
            # heuristic does however often an older item was met (slope 3: Tmall NDCG@10 equal to the heuristic),
            # but older events then start with almost no gradient (softplus far below 0) and the model leans on
            # the behavior-blind recency rank: on the sample, planted-truth recovery fell (slope 2: swap 0.19,
            # leave-one-out -0.24; slope 1: 0.905 and 0.643), so older events start alive.
            self.distance.weight.copy_(
                (2.0 - torch.arange(DISTANCE_BUCKETS, dtype=torch.float32)).unsqueeze(1) / PARAM_SCALE
            )
            self.rank.weight.copy_(
                (2.0 - 0.5 * torch.arange(RANK_BUCKETS, dtype=torch.float32)).unsqueeze(1) / PARAM_SCALE
            )

    def evidence(
        self, batch: Batch, now: torch.Tensor, presence: torch.Tensor, bucket: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[B, Lq, Lk] weight of event k as evidence for its own item at position q (0 for later events), for
        the newest Lq positions (``now`` [B, Lq]: their request times; all L, or the last one)."""
        b, length = batch.ts.shape
        if bucket is None:  # each event's age bucket at each position's request time: [B, Lq, Lk]
            bucket = gap_bucket((now.unsqueeze(2) - batch.ts.unsqueeze(1)).clamp(min=0))
        lq = bucket.shape[1]
        table = self.behavior(batch.behavior)  # [B, Lk, G]
        index = bucket + GAP_BUCKETS * torch.arange(length, device=now.device)
        per_pair = table.reshape(b, -1).gather(1, index.reshape(b, -1)).view(b, lq, length)
        pos = torch.arange(length, device=now.device)
        ago = (pos[length - lq :].unsqueeze(1) - pos.unsqueeze(0)).clamp(min=0)  # [Lq, Lk]
        recency = _lookup(self.distance.weight, distance_bucket(ago))  # [Lq, Lk]
        causal = torch.ones(length, length, dtype=torch.bool, device=now.device).tril()[length - lq :]
        there = batch.mask & (presence > 0)  # a removed event is no occurrence at all
        allowed = causal & there.unsqueeze(1)  # [B, Lq, Lk]
        absent = -1 - torch.arange(length, device=now.device).expand_as(batch.item)  # matches no other event
        last, rank = last_occurrences(torch.where(there, batch.item, absent), allowed)
        weight = self._positive
        every = weight(PARAM_SCALE * (per_pair + recency))
        # the weight of each possible rank 0..L-1 first, then one lookup over [B, Lq, Lk] (not its bucket's arithmetic)
        per_rank = weight(PARAM_SCALE * self.rank.weight).squeeze(-1)[rank_bucket(pos)]  # [L]
        latest = per_rank.index_select(0, rank.reshape(-1)).view(rank.shape) * last
        return (every + latest) * allowed * presence.unsqueeze(1)

    def _positive(self, x: torch.Tensor) -> torch.Tensor:
        """A weight from its logit: exp for the mixture (capped: e^15 is far past any softmax margin), softplus
        for the added term."""
        return torch.exp(x.clamp(max=15.0)) if self.mix and not self.compound else F.softplus(x)

    def combine(
        self,
        explore: torch.Tensor,
        evidence: torch.Tensor,
        items: torch.Tensor,
        item_idx: torch.Tensor | None,
        state: torch.Tensor,
        shared: bool = False,
    ) -> torch.Tensor:
        """The engagement logits with the repeat path: explore logits [P, n1] (or paired [P]; or [P, K] over the
        ``shared`` candidates ``item_idx`` [K]), evidence and items [P, Lk], the engagement task state [P, De] (the
        mixture's gate) -> logits of the same shape.

        Over many candidates only the row's history items change: their logits are computed at [P, Lk] and written
        into a copy of the explore logits, so the cost does not grow with the catalogue (the dense form took 10 passes
        over [P, n1], forward and backward: most of a validation over 95K items)."""
        if item_idx is not None and not shared:  # paired: one candidate per row
            total = (evidence.float() * (items == item_idx.unsqueeze(-1))).sum(-1)
            return self._mixed(explore, total, self._gate(state))
        if explore.dim() == 2 and explore.shape[-1] <= DENSE_UP_TO * evidence.shape[-1]:  # few candidates: dense
            total = _dense_totals(evidence.float(), items, item_idx, explore.shape[-1])
            gate = self._gate(state)
            return self._mixed(explore, total, None if gate is None else gate.unsqueeze(-1))
        flat = explore.reshape(-1, explore.shape[-1])
        rows, columns, logits = self.history_cells(evidence, items, item_idx, state, lambda r, c: flat[r, c])
        return flat.index_put((rows, columns), logits.to(explore.dtype)).view(explore.shape)

    def history_cells(
        self,
        evidence: torch.Tensor,
        items: torch.Tensor,
        candidates: torch.Tensor | None,
        state: torch.Tensor,
        explore_at: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The cells the path changes: each row's distinct history items with evidence, as (rows [M], columns [M],
        logits [M]) over evidence and items [..., Lk] and the task state [..., De] (rows of their flattened leading
        dimensions); a column is the item index, or its place among ``candidates`` [K]. ``explore_at(rows, columns)``
        gives the explore logits there. Every other cell keeps its explore logit."""
        lk = evidence.shape[-1]
        rows, columns, total = _history_totals(evidence.float().reshape(-1, lk), items.reshape(-1, lk), candidates)
        gate = self._gate(state)
        return (
            rows,
            columns,
            self._mixed(explore_at(rows, columns), total, None if gate is None else gate.reshape(-1)[rows]),
        )

    def _gate(self, state: torch.Tensor) -> torch.Tensor | None:
        """The mixture's gate per row [...] (how likely a repeat is now), or None for the added term."""
        return None if not self.mix or self.gate is None else self.gate(state).float().squeeze(-1)

    def _mixed(self, explore: torch.Tensor, total: torch.Tensor, gate: torch.Tensor | None) -> torch.Tensor:
        """Logits from explore logits, evidence totals E and the mixture's gate, one of each per cell (a cell with
        E = 0 keeps its explore logit)."""
        if gate is None:
            return explore + PARAM_SCALE * self.scale * torch.log1p(total)
        if self.compound:  # log(e^A - 1) = A + log(1 - e^-A), stable for every A > 0
            a = total.clamp(min=1e-30)
            repeat = gate + a + torch.log(-torch.expm1(-a))
        else:
            repeat = gate + torch.log(total.clamp(min=1e-30))
        return torch.where(total > 0, torch.logaddexp(explore.float(), repeat), explore.float()).to(explore.dtype)


def _history_totals(
    evidence: torch.Tensor, items: torch.Tensor, candidates: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row's distinct history items with evidence: (rows [M], columns [M], totals E [M]) over evidence and
    items [P, Lk]; a column is the item index (``candidates`` None: every item) or the item's place among the
    ``candidates`` [K] (items not among them are left out). One sort of each row's Lk items, segment sums by cumsum
    (in float64: a difference of running sums keeps E's digits)."""
    items, k = _columns(items, candidates)
    cols, order = torch.sort(items, dim=1)
    ev = evidence.gather(1, order).double()
    csum = ev.cumsum(1)
    length = cols.shape[1]
    starts = torch.ones_like(cols, dtype=torch.bool)
    starts[:, 1:] = cols[:, 1:] != cols[:, :-1]
    ends = torch.ones_like(starts)
    ends[:, :-1] = starts[:, 1:]
    first = torch.where(starts, torch.arange(length, device=cols.device), 0).cummax(1).values
    total = (csum - csum.gather(1, first) + ev.gather(1, first)).float()  # the segment's sum, at its last entry
    keep = ends & (total > 0) & (cols != k)
    rows = torch.arange(cols.shape[0], device=cols.device).unsqueeze(1).expand_as(cols)
    return rows[keep], cols[keep], total[keep]


def _columns(items: torch.Tensor, candidates: torch.Tensor | None) -> tuple[torch.Tensor, int]:
    """Each history item's column: its index (``candidates`` None; -1 is no column) or its place among the
    ``candidates`` [K] (K: not among them)."""
    if candidates is None:
        return items, -1  # item 0, padding, has no evidence
    k = len(candidates)
    column = torch.full((int(max(items.max(), candidates.max())) + 1,), k, device=items.device)
    column[candidates] = torch.arange(k, device=items.device)
    return column[items], k


def _dense_totals(evidence: torch.Tensor, items: torch.Tensor, candidates: torch.Tensor | None, n: int) -> torch.Tensor:
    """Every candidate's evidence E [P, n] (n: the items, or the ``candidates``), by one scatter over [P, n]."""
    columns, k = _columns(items, candidates)
    total = torch.zeros(evidence.shape[0], n if k < 0 else k + 1, dtype=evidence.dtype, device=evidence.device)
    return total.scatter_add(1, columns, evidence)[:, :n]


def _lookup(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """table [K, 1] at ``index`` [...] -> [...]. An index_select, whose backward is one index_add: an
    embedding lookup over [B, L, L] indices sorted them in its backward, a sixth of a training step."""
    return table.squeeze(-1).index_select(0, index.reshape(-1)).view(index.shape)


def last_occurrences(items: torch.Tensor, allowed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Which events are their item's last occurrence up to each position, and how recent.

    items [B, L], allowed [B, Lq, Lk] (causal, real events; the newest Lq positions) -> (last [B, Lq, Lk]
    float: event k is the newest event of its item among events <= q; rank [B, Lq, Lk] int32: how many
    distinct items occurred after k up to q, the recency order of "the user's most recent distinct items").
    """
    length, lq = items.shape[1], allowed.shape[1]
    # each event's next occurrence of its item (L: none), from one stable sort of the row: O(L log L), not [L, L]
    order = torch.sort(items, dim=1, stable=True).indices  # positions by item, then by position
    ranked = items.gather(1, order)
    follows = torch.full_like(order, length)
    follows[:, :-1] = torch.where(ranked[:, 1:] == ranked[:, :-1], order[:, 1:], length)
    following = torch.empty_like(order).scatter_(1, order, follows)  # [B, Lk]
    q = torch.arange(length - lq, length, device=items.device).view(1, -1, 1)
    last = allowed & (q < following.unsqueeze(1))  # [B, Lq, Lk]: k <= q and k's item not met again by q
    upto = torch.cumsum(last.to(torch.int32), 2)  # last occurrences among events <= k
    after = upto[..., -1:] - upto  # ... after k
    return last.float(), after


def rank_bucket(rank: torch.Tensor) -> torch.Tensor:
    """Distinct items since (>= 0) -> bucket: exact below 16, then log2 (16-31, 32-63, ...)."""
    log = 12 + torch.floor(torch.log2(rank.float().clamp(min=1))).long()  # 16 -> 16, 32 -> 17, ...
    return torch.where(rank < 16, rank, log).clamp(max=RANK_BUCKETS - 1)


def distance_bucket(ago: torch.Tensor) -> torch.Tensor:
    """How many events ago (>= 0) -> log2 bucket 0..DISTANCE_BUCKETS-1."""
    return torch.floor(torch.log2(ago.float() + 1)).long().clamp(max=DISTANCE_BUCKETS - 1)


def presence(tokens: torch.Tensor, exact: torch.Tensor, mask_token: torch.Tensor) -> torch.Tensor:
    """[B, L] how much of each event is there: the projection of (token - mask) on (event's own token - mask).

    1 for the event's own token, 0 for the mask token (a removed event), linear in between (the
    path of Integrated Gradients)."""
    full = exact - mask_token
    return ((tokens - mask_token) * full).sum(-1) / full.pow(2).sum(-1).clamp(min=1e-12)


def pack(evidence: torch.Tensor, batch: Batch) -> torch.Tensor:
    """[B, Lq, Lk] evidence + the batch's items -> [B, Lq, 2 Lk] trailing features (item indices as floats,
    exact below 2^24 items). An event without evidence at q (later, padding, removed) lists item 0, so
    position q's features say nothing of later or removed events."""
    items = batch.item.unsqueeze(1).expand(-1, evidence.shape[1], -1)
    items = torch.where(evidence != 0, items, torch.zeros_like(items)).float()
    return torch.cat([evidence.float(), items], -1)


def unpack(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[P, 2 Lk] -> (evidence [P, Lk] float, items [P, Lk] long)."""
    lk = features.shape[-1] // 2
    return features[..., :lk].float(), features[..., lk:].round().long()
