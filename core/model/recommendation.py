"""One user's top-k from a fitted model: the items ranked by engagement logit, with both head outputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from core import schema as S
from core._checks import check_whole
from core.data.batches import history_batch
from core.errors import NotFoundError
from core.model.evaluation import exclusion_mask
from core.model.fitted import Fitted


@torch.inference_mode()
def top_items(fitted: Fitted, user_id: str, k: int, exclude_seen: bool, sigmoid: bool = False) -> pd.DataFrame:
    """Top-``k`` items for a stored user ID after their whole history: item_id, engagement (softmax over items,
    or ``sigmoid`` for a BCE-trained head), engagement_logit, rating; NotFoundError for an unknown user."""
    check_whole("k", k, 1)
    model, data = fitted.model, fitted.data
    pos = np.searchsorted(data.users, user_id)
    if pos >= len(data.users) or data.users[pos] != user_id:
        raise NotFoundError(f"user {user_id!r} is not in the fitted data")
    users, ends = np.array([pos]), np.array([data.offsets[pos + 1]])
    batch = history_batch(data, users, ends, model.cfg.max_len).to(fitted.device)
    model.eval()
    task_e, task_r = model(batch, last=True)
    logits = model.engagement_logits(task_e).float()[0]
    logits[0] = float("-inf")
    if exclude_seen:
        mask = exclusion_mask(data, users, ends)[0]
        logits[torch.as_tensor(mask, device=logits.device)] = float("-inf")
    # the engagement probability: softmax over items for a softmax-trained head, sigmoid for BCE
    probs = torch.sigmoid(logits) if sigmoid else torch.softmax(logits, -1)
    order = torch.argsort(-logits, stable=True)[: min(k, int(torch.isfinite(logits).sum()))]
    ratings = model.rating_of(task_r.expand(len(order), -1), order).float()
    return pd.DataFrame(
        {
            S.ITEM_ID: data.item_ids[order.cpu().numpy()],
            "engagement": probs[order].cpu().numpy(),
            "engagement_logit": logits[order].cpu().numpy(),
            "rating": np.asarray(fitted.scale.restore(ratings.cpu().numpy())),
        }
    )
