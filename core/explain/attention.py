"""Attention weights as a cheap heuristic: how much the newest position attends to each event.

Weights of the last query position in the last transformer layer, averaged over
heads (softmax of q·k/√d_h plus the model's time bias). They show where the model
looks, not what moves the score: no sign, no completeness, and often unfaithful
(Jain & Wallace 2019). Explanations from this module say ``heuristic=True``.
"""

from __future__ import annotations

import math
import time
from typing import cast

import numpy as np
import torch

from core.data.batches import Batch
from core.errors import DataError
from core.explain.explanation import Explanation
from core.explain.scorer import HistoryScorer
from core.explain.subject import Subject, finish
from core.model.layers import Block
from core.model.network import BehaviorModel


@torch.no_grad()
def last_attention(model: BehaviorModel, tokens: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Tokens [1, n, D] -> head-averaged last-layer attention of the newest position over events [n].

    Recomputes the last block's attention probabilities (its forward uses a fused kernel
    that does not return them) from the same projections and bias.
    """
    model.eval()
    x = model.events.drop(tokens + model.events.positions(tokens.shape[1]))
    bias = model.history.time_bias(batch.ts, batch.mask, model.request.times(batch))  # [1, H, n, n]
    blocks = cast(list[Block], list(model.history.blocks))
    for block in blocks[:-1]:
        x = block(x, bias)
    last = blocks[-1]
    b, n, d = x.shape
    q, k, _ = last.qkv(last.norm1(x)).view(b, n, 3, last.heads, d // last.heads).permute(2, 0, 3, 1, 4)
    scores = q[:, :, -1:] @ k.transpose(-1, -2) / math.sqrt(d // last.heads) + bias[:, :, -1:]  # [1, H, 1, n]
    return scores.softmax(-1).mean(1)[0, 0]  # [n]


def explain_attention(subject: Subject) -> Explanation:
    """Attention-weight explanation of ``subject`` (heuristic, no completeness)."""
    scorer = subject.scorer
    if not isinstance(scorer, HistoryScorer):
        raise DataError("attention weights need a BehaviorModel scorer, not a toy scorer")
    start = time.perf_counter()
    weights = last_attention(scorer.model, scorer.tokens(), scorer.batch).double().numpy()
    ms = (time.perf_counter() - start) * 1000
    return finish(
        subject,
        "attention",
        np.asarray(weights),
        None,
        ms,
        heuristic=True,
        details={"layer": "last", "heads": "mean", "query": "newest event"},
    )
