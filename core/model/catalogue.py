"""Full ranking over the whole catalogue in blocks of items: each target's rank and each row's top-K.

The logits over every item come a block of columns at a time (:meth:`~core.model.heads.EngagementHead.blocks`).
Each block adds to each row's count of candidates that outrank its target and yields its own top-K, merged at the
end; the [users, items] matrix is never held, and a block stays in the CPU's cache while it is read. The ranks are
those of :func:`core.model.metrics.rank_of_targets` over the same logits (a softmax does not reorder a row):
candidates scoring strictly higher, plus those scoring equal with a smaller index; NaN never outranks; an excluded
target is a miss (rank N + 1, the width of the score rows).
"""

from __future__ import annotations

import numpy as np
import torch

from core.errors import DataError
from core.model.network import BehaviorModel

BLOCK = 16_384  # items per block: [256 users, 16K] float32 is 16 MB


@torch.inference_mode()
def rank_catalogue(
    model: BehaviorModel,
    task_e: torch.Tensor,
    items: torch.Tensor,
    targets: np.ndarray,
    seen: list[np.ndarray] | None,
    k: int,
    block: int = BLOCK,
) -> tuple[np.ndarray, np.ndarray]:
    """Engagement task states [B, ...] (``model(batch, last=True)``), every item's representation [N+1, D]
    (``model.items(None)``), targets [B] and each row's excluded items (None: none) -> (ranks [B] int64, top-K
    [B, k] item indices 0..N-1, -1 where fewer than k candidates remain). Column 0 (padding) is never a candidate."""
    device, n1 = task_e.device, items.shape[0]
    target = torch.as_tensor(targets, dtype=torch.long, device=device)
    score = model.engagement_logits(task_e, target, items=items[target]).float()  # each target's own logit
    if torch.isnan(score).any():
        raise DataError(f"the target item's score is NaN for {int(torch.isnan(score).sum())} user(s); expected numbers")
    rows_x, cols_x = _exclusions(seen, device)
    missed = torch.zeros(len(target), dtype=torch.bool, device=device)
    if len(rows_x):
        missed[rows_x[cols_x == target[rows_x]]] = True
    # one comparison per block: "outranks" is > the target's score after it, >= before it (ties: the smaller index)
    above = torch.nextafter(score, torch.tensor(float("-inf"), device=device))
    count = torch.zeros(len(target), dtype=torch.int64, device=device)
    best = torch.full((len(target), k), float("-inf"), device=device)  # each row's top k so far, and their items
    best_at = torch.full((len(target), k), 0, dtype=torch.long, device=device)
    for lo, logits in model.engagement.blocks(task_e, items, block):
        hi = lo + logits.shape[1]
        logits = logits.float()
        if lo == 0:
            logits[:, 0] = float("-inf")
        a, b = (int(x) for x in torch.searchsorted(cols_x, torch.tensor([lo, hi], device=device)))
        logits[rows_x[a:b], cols_x[a:b] - lo] = float("-inf")
        inside = (target >= lo) & (target < hi)
        threshold = torch.where(target >= hi, above, score).masked_fill(inside, float("inf"))
        count += (logits > threshold.unsqueeze(1)).sum(1, dtype=torch.int32)
        if inside.any():  # the rows whose target is in this block: the index decides ties, the target is not counted
            r = inside.nonzero().squeeze(1)
            column = torch.arange(hi - lo, device=device).unsqueeze(0)
            own = (target[r] - lo).unsqueeze(1)
            part, s = logits[r], score[r].unsqueeze(1)
            count[r] += (torch.where(column < own, part >= s, part > s) & (column != own)).sum(1)
        # the top k: only rows whose block holds a logit above their k-th best so far (after the first blocks, few)
        peak = torch.nan_to_num(logits.amax(1), nan=float("inf"))
        r = (peak > best[:, -1]).nonzero().squeeze(1)
        if len(r):
            v, i = torch.topk(logits[r], min(k, hi - lo), dim=1)
            values, order = torch.topk(torch.cat([best[r], v], 1), k, dim=1)
            best[r], best_at[r] = values, torch.cat([best_at[r], i + lo], 1).gather(1, order)
    count[missed] = n1
    top = torch.where(torch.isfinite(best), best_at - 1, -1)
    return count.cpu().numpy(), top.cpu().numpy()


def _exclusions(seen: list[np.ndarray] | None, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's excluded items as (rows [M], columns [M]) sorted by column."""
    if not seen:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty
    rows = np.repeat(np.arange(len(seen)), [len(s) for s in seen])
    cols = np.concatenate(seen).astype(np.int64) if len(rows) else np.zeros(0, np.int64)
    order = np.argsort(cols, kind="stable")
    return torch.as_tensor(rows[order], device=device), torch.as_tensor(cols[order], device=device)
