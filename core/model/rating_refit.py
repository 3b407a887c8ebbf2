"""Per-task checkpoint selection for the rating head: refit its tower on the frozen encoder.

The rating head starts to overfit while the ranking still improves, so the epoch that
early stopping picks (best validation NDCG@10) is rarely the best one for ratings. After
the main loop has restored that epoch, this phase freezes everything the engagement head
depends on (item encoder, history encoder, request time, shared MMoE experts, engagement
head) and trains only the rating task's gate and the rating head on the cached user
states of every training position, keeping the epoch with the lowest validation RMSE;
"no refit" (the restored state) is a candidate too, so validation RMSE never gets worse
and engagement outputs are unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from core.data.batches import history_batch, training_batch
from core.model import metrics as M
from core.model.fitted import Fitted
from core.model.network import BehaviorModel, user_value_mean
from core.progress import ProgressFn, report

_ENCODE_BATCH = 128
_STEP_BATCH = 1024


@dataclass
class RatingPositions:
    """Training positions whose next event has a value, with the frozen model's inputs to the rating task."""

    mixed: torch.Tensor  # [P, D] user state + request-gap embedding (the MMoE input)
    extra: torch.Tensor  # [P, 2] running mean of the user's earlier values, has one
    item: torch.Tensor  # [P] target item index
    value: torch.Tensor  # [P] standardized target value


@dataclass
class ValidRatings:
    """The validation targets with a value, and the frozen model's inputs to their rating task (the newest
    position of each history): computed once, so each refit epoch's validation RMSE costs one head pass."""

    mixed: torch.Tensor  # [U, D] MMoE input
    extra: torch.Tensor  # [U, 2] running mean of the user's earlier values, has one
    item: torch.Tensor  # [U] target item index
    truth: np.ndarray  # [U] target value (original units)


def rating_parameters(model: BehaviorModel) -> list[torch.nn.Parameter]:
    """What the refit trains: the rating task's MMoE gate and the rating head."""
    return list(model.mmoe.gates[1].parameters()) + list(model.rating.parameters())


@torch.no_grad()
def rating_positions(fitted: Fitted, users: np.ndarray) -> RatingPositions:
    """Run the frozen model (eval mode, no dropout) once over every training window of ``users``."""
    model, data, split, scale, device = fitted.model, fitted.data, fitted.split, fitted.scale, fitted.device
    model.eval()
    parts: list[tuple[torch.Tensor, ...]] = []
    for lo in range(0, len(users), _ENCODE_BATCH):
        idx = users[lo : lo + _ENCODE_BATCH]
        batch = training_batch(data, idx, split.train_end[idx], model.cfg.max_len).to(device)
        target_item, target_value = batch.targets()
        values = (target_value - scale.mean) / scale.std  # [B, L]
        keep = (target_item > 0) & ~torch.isnan(values)
        if not keep.any():
            continue
        states = model.encode(model.tokens(batch), batch, transformer_only=True)
        mixed = model.mixed(states, batch)
        extra = user_value_mean(batch, model.cfg)
        parts.append((mixed[keep].float(), extra[keep].float(), target_item[keep], values[keep].float()))
    if not parts:
        empty = torch.zeros(0, device=device)
        return RatingPositions(empty.view(0, model.cfg.d_model), empty.view(0, 2), empty.long(), empty)
    return RatingPositions(*(torch.cat([p[i] for p in parts]) for i in range(4)))


@torch.no_grad()
def valid_ratings(fitted: Fitted) -> ValidRatings:
    """The rating task's inputs for every validation target with a value, as :func:`evaluate_split` asks them
    (the same histories and request time), from the frozen model."""
    model, data, split, device = fitted.model, fitted.data, fitted.split, fitted.device
    model.eval()
    truth = data.value[split.valid_pos] if len(split.users) else np.zeros(0)
    has = ~np.isnan(truth)
    users, ends = split.users[has], split.valid_pos[has]
    mixed, extra = [], []
    for lo in range(0, len(users), _ENCODE_BATCH):
        sl = slice(lo, lo + _ENCODE_BATCH)
        batch = history_batch(data, users[sl], ends[sl], model.cfg.max_len, fitted.protocol.actual_time).to(device)
        states = model.encode(model.tokens(batch), batch, last=True, transformer_only=True)
        mixed.append(model.mixed(states, batch, last=True).float())
        extra.append(user_value_mean(batch, model.cfg)[:, -1].float())
    d = model.cfg.d_model
    return ValidRatings(
        torch.cat(mixed) if mixed else torch.zeros(0, d, device=device),
        torch.cat(extra) if extra else torch.zeros(0, 2, device=device),
        torch.as_tensor(data.item[ends], dtype=torch.long, device=device),
        truth[has],
    )


@torch.no_grad()
def valid_rmse(fitted: Fitted, valid: ValidRatings) -> float:
    """Validation RMSE of the rating task on the cached inputs (equal to ``evaluate_split``'s)."""
    if len(valid.truth) == 0:
        return math.nan
    _, task_r = fitted.model.mmoe(valid.mixed)
    pred = fitted.model.rating_of(torch.cat([task_r, valid.extra], -1), valid.item).float().cpu().numpy()
    return M.rmse(valid.truth, np.asarray(fitted.scale.restore(pred)))


def _epoch(
    model: BehaviorModel,
    pos: RatingPositions,
    optimizer: torch.optim.Optimizer,
    rng: np.random.Generator,
    items: torch.Tensor,
) -> float:
    """One pass over the cached positions in shuffled mini-batches; mean MSE. ``items`` [N+1, D]: the frozen item
    representations. Only what the refit trains is in the graph: the frozen experts run without gradients, the
    engagement gate not at all (a third of a refit step computed gradients nothing read)."""
    model.rating.train()
    order = torch.as_tensor(rng.permutation(len(pos.item)), device=pos.item.device)
    total = 0.0
    for lo in range(0, len(order), _STEP_BATCH):
        idx = order[lo : lo + _STEP_BATCH]
        mixed, target = pos.mixed[idx], pos.item[idx]
        with torch.no_grad():
            experts = model.mmoe.outputs(mixed)
        task_r = model.mmoe.task(mixed, 1, experts)
        pred = model.rating(torch.cat([task_r, pos.extra[idx]], -1), items[target], target).float()
        loss = F.mse_loss(pred, pos.value[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.item()) * len(idx)
    model.rating.eval()
    return total / max(1, len(order))


def refit_rating(
    fitted: Fitted,
    users: np.ndarray,
    epochs: int,
    lr: float,
    *,
    patience: int = 3,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Refit the rating task of ``fitted.model`` on its frozen encoder, over the training windows of ``users``;
    keeps the state with the best validation RMSE.

    Returns a summary: the validation RMSE before and after, and the refit epoch kept (0 = none).
    """
    model = fitted.model
    valid = valid_ratings(fitted)
    before = valid_rmse(fitted, valid)  # what evaluate_split("valid") reports, from the cached inputs
    summary = {"valid_RMSE_before": before, "valid_RMSE": before, "epoch": 0, "epochs_run": 0}
    if epochs <= 0 or not math.isfinite(before):
        return summary
    pos = rating_positions(fitted, users)
    if len(pos.item) == 0:
        return summary
    params = rating_parameters(model)
    best = {id(p): p.detach().clone() for p in params}
    optimizer = torch.optim.AdamW(params, lr=lr)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        items = model.items(None)
    for epoch in range(1, epochs + 1):
        loss = _epoch(model, pos, optimizer, rng, items)
        rmse = valid_rmse(fitted, valid)
        summary["epochs_run"] = epoch
        report(progress, "rating_refit", epoch, epochs, epoch=epoch, loss_rating=loss, valid_RMSE=rmse)
        if rmse < summary["valid_RMSE"]:
            summary.update(valid_RMSE=rmse, epoch=epoch)
            best = {id(p): p.detach().clone() for p in params}
        elif epoch - summary["epoch"] >= patience:
            break
    with torch.no_grad():
        for p in params:
            p.copy_(best[id(p)])
    return summary
