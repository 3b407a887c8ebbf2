"""The sequence side of the network: item representations, event tokens, time-biased causal attention.

event token  = item(text projection + ID) + behavior + value + time gap (+ the event's own text projection,
               or a learned "no text" vector) + position
history      = causal pre-norm transformer over tokens, attention biased by each event's age
               at the request time (when the prediction is asked)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from core.data.batches import Batch
from core.data.sequences import GAP_BUCKETS, VALUE_BUCKETS, gap_bucket
from core.errors import ArtifactError
from core.model.config import ModelConfig


class Dropout(nn.Dropout):
    """Inverted dropout whose mask comes from ``rand_like`` (about 2x cheaper on CPU than the
    ``bernoulli_`` that ``nn.Dropout`` draws: a sixth of a training step went there)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand_like(x) >= self.p
        return x * keep / (1.0 - self.p)


# Above this many item indices, the text projection runs once per distinct item and is then looked up: a batch
# of [32, 200] events names a few hundred items, and projecting its [B, L, T] text rows was a tenth of a step.
_DISTINCT_FROM = 64


class ItemEncoder(nn.Module):
    """Item index -> representation: projected frozen text embedding + item-ID embedding.

    The text table holds each distinct text's vector once (``text`` [V, T], row 0 zeros) and each item's row of it
    (``text_of`` [N+1]): items without text, or with the same text, share a row (a log of 947K items and no catalogue
    held 1.45 GB of copies of one vector). A table given without ``text_of`` has a row per item."""

    text: torch.Tensor  # a buffer, [V, T]: the distinct text vectors, row 0 = padding (zeros)
    text_of: torch.Tensor  # a buffer, [N+1]: each item's row of ``text``

    def __init__(self, cfg: ModelConfig, text: torch.Tensor, text_of: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("text", text.float(), persistent=True)
        if text_of is None:
            text_of = torch.arange(text.shape[0], device=text.device)
        self.register_buffer("text_of", text_of.long(), persistent=True)
        self.proj = nn.Linear(cfg.text_dim, cfg.d_model)
        self.id_emb = nn.Embedding(cfg.n_items + 1, cfg.d_model, padding_idx=0)
        nn.init.normal_(self.id_emb.weight, std=0.02)
        self.use_text, self.use_item_id = cfg.use_text, cfg.use_item_id
        self.dropped: torch.Tensor | None = None  # [N+1] bool: items without their ID row (BehaviorModel.dropping_ids)
        self.live: tuple[torch.Tensor, torch.Tensor] | None = None  # (item -> position [N+1], vectors [K, T])

    def vectors(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """The text vectors of items ``idx`` [...] -> [..., T] (None: every item, [N+1, T])."""
        return self.text[self.text_of if idx is None else self.text_of[idx]]

    def set_vectors(self, table: torch.Tensor) -> None:
        """Every item's text vector from ``table`` [N+1, T] (a row per item: a fine-tuned encoder's new table)."""
        self.text = table.to(self.text.device, self.text.dtype)
        self.text_of = torch.arange(table.shape[0], device=self.text_of.device)

    @contextmanager
    def replacing(self, rows: torch.Tensor, vectors: torch.Tensor | None) -> Iterator[None]:
        """Within: the text vectors of items ``rows`` [K] are ``vectors`` [K, T] (read by a fine-tuned encoder with
        gradients, :mod:`core.model.finetune`) instead of the table's."""
        if vectors is None or len(rows) == 0:
            yield
            return
        at = torch.full((self.text_of.shape[0],), -1, dtype=torch.long, device=self.text.device)
        at[rows] = torch.arange(len(rows), device=self.text.device)
        self.live = (at, vectors.to(self.text.dtype))
        try:
            yield
        finally:
            self.live = None

    def forward(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """``idx`` [...] -> [..., D]; None -> every item [N+1, D]."""
        if idx is not None and idx.numel() > _DISTINCT_FROM:
            distinct, at = torch.unique(idx, return_inverse=True)
            return self._rows(distinct)[at]
        return self._rows(idx)

    def _rows(self, idx: torch.Tensor | None) -> torch.Tensor:
        ids = self.id_emb.weight if idx is None else self.id_emb(idx)
        if self.dropped is not None:
            ids = ids * ~(self.dropped if idx is None else self.dropped[idx]).unsqueeze(-1)
        out = torch.zeros_like(ids)
        if self.use_text:
            out = out + self._projected(idx)
        if self.use_item_id:
            out = out + ids
        return out

    def _projected(self, idx: torch.Tensor | None) -> torch.Tensor:
        """The projected text of items ``idx`` (None: every item): each distinct text projected once."""
        rows = self.text_of if idx is None else self.text_of[idx]
        if self.live is None:
            return self.proj(self.text)[rows] if idx is None else self.proj(self.text[rows])
        at = self.live[0] if idx is None else self.live[0][idx]
        text = torch.where((at >= 0).unsqueeze(-1), self.live[1][at.clamp(min=0)], self.text[rows])
        return self.proj(text)


class EventText(nn.Module):
    """An event's own text (review, comment, search query, tag) -> [..., D]: its frozen text vector projected,
    or a learned "no text" vector for an event without one.

    ``table`` [T+1, text_dim] (row 0 = no text) is a non-persistent buffer: users' texts are personal data, so
    their vectors never go into the saved model; :mod:`core.model.event_text` rebuilds it from the events."""

    table: torch.Tensor  # a buffer, [T+1, text_dim]

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.register_buffer("table", torch.zeros(1, cfg.text_dim), persistent=False)
        self.proj = nn.Linear(cfg.text_dim, cfg.d_model)
        self.no_text = nn.Parameter(torch.zeros(cfg.d_model))

    def set_table(self, table: torch.Tensor) -> None:
        """Use ``table`` [T+1, text_dim] (row 0 = no text) for the rows the batches name."""
        if table.ndim != 2 or table.shape[0] < 1 or table.shape[1] != self.proj.in_features:
            raise ArtifactError(
                f"event text vectors of shape {tuple(table.shape)}: expected [T+1, {self.proj.in_features}] "
                "(the model's text width; was the encoder changed?)"
            )
        self.table = table.float().to(self.no_text.device)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows`` [B, L] (0 = no text) -> [B, L, D]."""
        distinct, at = torch.unique(rows, return_inverse=True)  # most events have no text, many share one
        has = (rows > 0).unsqueeze(-1)
        return torch.where(has, self.proj(self.table[distinct])[at], self.no_text)


class EventEmbedding(nn.Module):
    """Event token = item + behavior + value + gap-to-previous (+ event text) + position embeddings."""

    text: EventText | None  # set by BehaviorModel where the model reads event text

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.behavior = nn.Embedding(cfg.n_behaviors, d, padding_idx=0)
        self.value = nn.Embedding(VALUE_BUCKETS, d)
        self.gap = nn.Embedding(GAP_BUCKETS, d)
        self.position = nn.Embedding(cfg.max_len, d)
        self.mask_token = nn.Parameter(torch.zeros(d))  # stands in for a removed event
        self.drop = Dropout(cfg.dropout)
        self.scale = math.sqrt(d)
        for emb in (self.behavior, self.value, self.gap, self.position):
            nn.init.normal_(emb.weight, std=0.02)
        self.text = None

    def forward(self, batch: Batch, item_repr: torch.Tensor) -> torch.Tensor:
        """[B, L] codes + item representations [B, L, D] -> tokens [B, L, D] (before dropout)."""
        gaps = torch.zeros_like(batch.ts)
        gaps[:, 1:] = gap_bucket(batch.ts[:, 1:] - batch.ts[:, :-1]).masked_fill(~batch.mask[:, :-1], 0)
        gaps = gaps.masked_fill(~batch.mask, 0)  # the first real event has no previous one: bucket 0
        tok = item_repr * self.scale + self.behavior(batch.behavior) + self.value(batch.value) + self.gap(gaps)
        if self.text is not None:  # scaled as the item's text is
            tok = tok + self.text(torch.zeros_like(batch.item) if batch.text is None else batch.text) * self.scale
        return tok * batch.mask.unsqueeze(-1)

    def positions(self, length: int) -> torch.Tensor:
        return self.position.weight[-length:]  # [L, D]; the newest event always has the last position


def pair_ages(ts: torch.Tensor, now: torch.Tensor) -> torch.Tensor:
    """ts [B, Lk], now [B, Lq] -> [B, Lq, Lk] float32 age in seconds (>= 0) of each event at each request time: the
    time bias, the behavior memory and the repeat path read one copy per forward."""
    return (now.unsqueeze(2) - ts.unsqueeze(1)).float().clamp_(min=0)


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

    def forward(
        self,
        ts: torch.Tensor,
        key_mask: torch.Tensor,
        now: torch.Tensor | None = None,
        ages: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """ts [B, L], key_mask [B, L], now [B, L] (default ts) -> float mask [B, H, L, L] (-inf where not allowed).
        ``ages``: :func:`pair_ages` of ``ts`` at ``now``, when the caller has them."""
        length = ts.shape[1]
        # few passes over [B, H, L, L] (elementwise work over it was half an evaluation's time):
        # log2(1 + age) = log1p(age) / ln 2 folds into the slope, the linear part is one fused addcmul
        age = (pair_ages(ts, ts if now is None else now) if ages is None else ages).unsqueeze(1)  # [B, 1, Lq, Lk]
        bias = age.log1p() * (self.log_slope / math.log(2)).view(1, -1, 1, 1)
        bias = bias.addcmul(age, (self.day_slope / 86400).view(1, -1, 1, 1))
        causal = torch.ones(length, length, dtype=torch.bool, device=ts.device).tril()
        blocked = ~(causal & key_mask.unsqueeze(1))  # [B, L, L]
        blocked &= ~torch.eye(length, dtype=torch.bool, device=ts.device)  # never an empty row
        return bias.masked_fill_(blocked.unsqueeze(1), float("-inf"))


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(Dh) + bias) v: q [B, H, Lq, Dh], k and v [B, H, Lk, Dh], bias [B, H, Lq, Lk].

    On the CPU as three batched kernels: torch's fused CPU kernel with a float mask took twice as long, forward
    and backward, at the model's sizes (Dh 32, L 200: 18 ms against 8 ms forward, 38 against 26 with backward).
    Elsewhere, torch's fused attention."""
    if q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    b, h, lq, dh = q.shape
    lk = k.shape[2]
    scores = torch.baddbmm(
        bias.reshape(b * h, lq, lk),
        q.reshape(b * h, lq, dh),
        k.reshape(b * h, lk, dh).transpose(1, 2),
        alpha=dh**-0.5,
    )
    return torch.bmm(scores.softmax(-1), v.reshape(b * h, lk, dh)).view(b, h, lq, dh)


class Block(nn.Module):
    """Pre-norm transformer block; dropout on residuals only (fast on CPU)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d, self.heads = cfg.d_model, cfg.n_heads
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.ffn = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.drop = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor, last: bool = False) -> torch.Tensor:
        """x [B, L, D], attn_bias [B, H, L, L] -> [B, L, D]; with ``last``, the newest position's [B, 1, D]
        (its query alone attends: the other rows' outputs are never read)."""
        b, length, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if last:
            q, attn_bias, x = q[:, :, -1:], attn_bias[:, :, -1:], x[:, -1:]
        att = attention(q, k, v, attn_bias)  # [B, H, Lq, Dh]
        x = x + self.drop(self.out(att.transpose(1, 2).reshape(b, x.shape[1], d)))
        return x + self.drop(self.ffn(self.norm2(x)))


class HistoryEncoder(nn.Module):
    """Causal transformer over event tokens -> a user state at every position."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.time_bias = TimeBias(cfg)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(
        self,
        tokens: torch.Tensor,
        ts: torch.Tensor,
        key_mask: torch.Tensor,
        now: torch.Tensor | None = None,
        last: bool = False,
        ages: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """tokens [B, L, D], times [B, L] -> states [B, L, D] (``last``: the newest position's, [B, 1, D]);
        ``ages``: :func:`pair_ages` at ``now``, when the caller has them."""
        bias = self.time_bias(ts, key_mask, now, ages)
        x = tokens
        for i, block in enumerate(self.blocks):
            x = block(x, bias, last and i == len(self.blocks) - 1)
        return self.norm(x[:, -1:] if last else x)
