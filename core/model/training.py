"""The fit loop and the losses (outside the model, torchrec style). No printing: callbacks report.

Every position predicts the next event (SASRec style): the engagement loss is a
full softmax over all items (or BCE with sampled negatives), the rating loss an
MSE on standardized values, masked where the next event has no value. Task
weights are fixed or learned (uncertainty weighting, Kendall et al. 2018).
"""

from __future__ import annotations

import ctypes
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.data.batches import Batch, Split, training_batch
from core.model.evaluation import Protocol, RatingScale, evaluate_split
from core.model.network import BehaviorModel
from core.data.sequences import SequenceData

ProgressFn = Callable[[dict[str, Any]], None]
CancelFn = Callable[[], bool]
_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


@dataclass
class TrainConfig:
    """Optimization settings (JSON-serializable)."""

    epochs: int = 40
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.0
    loss: str = "softmax"  # "softmax" (full) or "bce" (sampled negatives)
    n_negatives: int = 100
    loss_weights: str | list[float] = field(default_factory=lambda: [1.0, 0.5])  # or "uncertainty"
    event_dropout: float = 0.1  # share of input events swapped for the mask token while training
    patience: int = 5
    rating_refit_epochs: int = 20  # refit the rating task on the frozen encoder, selected on valid RMSE
    # >1: users sorted by history length within pools of this many batches (less padding, faster
    # epochs); 1 = plain shuffled batches. Sorting changed what small models learned (see the README).
    bucket_pool: int = 1
    seed: int = 0
    threads: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LossParts:
    total: torch.Tensor
    engagement: torch.Tensor
    rating: torch.Tensor


class MultiTaskLoss(nn.Module):
    """Engagement (softmax CE or sampled BCE) + rating (masked MSE), fixed or learned weights."""

    def __init__(self, cfg: TrainConfig, n_items: int, scale: RatingScale | None = None) -> None:
        super().__init__()
        self.cfg, self.n_items = cfg, n_items
        self.scale = scale or RatingScale()
        self.learned = cfg.loss_weights == "uncertainty"
        self.log_vars = nn.Parameter(torch.zeros(2)) if self.learned else None
        self.fixed = None if self.learned else [float(w) for w in cfg.loss_weights]

    def forward(self, model: BehaviorModel, batch: Batch, removed: torch.Tensor | None) -> LossParts:
        task_e, task_r = model(batch, removed)
        has_target = batch.target_item > 0  # [B, L]
        h_e, h_r = task_e[has_target], task_r[has_target]  # [P, De]
        target = batch.target_item[has_target]  # [P]
        engagement = self._engagement(model, h_e, target)
        values = (batch.target_value[has_target] - self.scale.mean) / self.scale.std  # standardized
        rated = ~torch.isnan(values)
        if rated.any():
            rating = F.mse_loss(model.rating_of(h_r[rated], target[rated]).float(), values[rated])
        else:
            rating = torch.zeros((), device=values.device)
        return LossParts(self._combine(engagement, rating), engagement.detach(), rating.detach())

    def _engagement(self, model: BehaviorModel, h_e: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.cfg.loss == "softmax":
            logits = model.engagement_logits(h_e).float()
            logits[:, 0] = float("-inf")
            return F.cross_entropy(logits, target)
        negs = torch.randint(1, self.n_items, (len(target), self.cfg.n_negatives), device=target.device)
        negs = negs + (negs >= target.unsqueeze(1)).long()  # uniform over the other items, never the target
        cand = torch.cat([target.unsqueeze(1), negs], 1)  # [P, 1+n]
        flat = model.engagement_logits(h_e.repeat_interleave(cand.shape[1], 0), cand.flatten()).float()
        labels = torch.zeros_like(flat).view(cand.shape)
        labels[:, 0] = 1.0
        return F.binary_cross_entropy_with_logits(flat.view(cand.shape), labels)

    def _combine(self, engagement: torch.Tensor, rating: torch.Tensor) -> torch.Tensor:
        if self.log_vars is None:
            return self.fixed[0] * engagement + self.fixed[1] * rating
        s = self.log_vars
        return torch.exp(-s[0]) * engagement + torch.exp(-s[1]) * rating + s.sum()


@dataclass
class FitState:
    """What the loop hands back: per-epoch history and the best state."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float = -math.inf
    best_state: dict[str, torch.Tensor] | None = None
    cancelled: bool = False


def standardize(data: SequenceData, split: Split) -> RatingScale:
    """Mean and std of the training values (events before each user's training end)."""
    keep = np.zeros(len(data.value), dtype=bool)
    for u in range(data.n_users):
        keep[int(data.offsets[u]): int(split.train_end[u])] = True
    vals = data.value[keep & ~np.isnan(data.value)]
    if len(vals) < 2:
        return RatingScale()
    return RatingScale(float(vals.mean()), float(max(vals.std(), 1e-6)))


def _return_freed_memory() -> None:
    """Make glibc hand large freed blocks back to the OS (Linux/glibc only; a no-op elsewhere).

    Every step allocates and frees tensors of varying sizes (the logits alone are
    [positions, items]); glibc's adaptive mmap threshold then keeps them in a fragmented
    heap, and resident memory climbed past 5 GB on ML-100K. A fixed 1 MB threshold
    returns each large block when it is freed: peak resident memory stays flat.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    libc.mallopt(_M_MMAP_THRESHOLD, 1 << 20)


def fit(model: BehaviorModel, data: SequenceData, split: Split, cfg: TrainConfig, protocol: Protocol,
        scale: RatingScale, device: torch.device, progress: ProgressFn | None = None,
        cancel: CancelFn | None = None, on_epoch: Callable[[FitState, int], None] | None = None,
        state: FitState | None = None, start_epoch: int = 0,
        optimizer: torch.optim.Optimizer | None = None, loss_fn: MultiTaskLoss | None = None) -> FitState:
    """Train with AdamW and early stopping on validation NDCG@10 (-RMSE for a rating-only model)."""
    _return_freed_memory()
    state = state or FitState()
    loss_fn = loss_fn or MultiTaskLoss(cfg, data.n_items, scale).to(device)
    optimizer = optimizer or make_optimizer(model, loss_fn, cfg)
    rng = np.random.default_rng(cfg.seed + start_epoch)
    users = training_users(data, split)
    for epoch in range(start_epoch, cfg.epochs):
        started = time.perf_counter()
        losses = _run_epoch(model, data, split, cfg, users, rng, device, optimizer, loss_fn, progress, cancel, epoch)
        if losses is None:
            state.cancelled = True
            break
        metrics = evaluate_split(model, data, split, "valid", protocol, scale, device)
        record = {"epoch": epoch + 1, "seconds": round(time.perf_counter() - started, 2), **losses,
                  **{f"valid_{k}": v for k, v in metrics.items()}}
        state.history.append(record)
        score = selection_score(cfg, metrics)
        if score > state.best_score:
            state.best_score, state.best_epoch = score, epoch + 1
            state.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if progress:
            progress({"event": "epoch", **record, "best_epoch": state.best_epoch})
        if on_epoch:
            on_epoch(state, epoch + 1)
        if epoch + 1 - state.best_epoch >= cfg.patience:
            break
    return state


def selection_score(cfg: TrainConfig, metrics: dict[str, float]) -> float:
    """What early stopping maximizes: validation NDCG@10, or -RMSE when only the rating head trains."""
    rating_only = isinstance(cfg.loss_weights, list) and cfg.loss_weights[0] == 0
    if rating_only and math.isfinite(metrics.get("RMSE", float("nan"))):
        return -metrics["RMSE"]
    return metrics.get("NDCG@10", 0.0)


def refits_rating(cfg: TrainConfig) -> bool:
    """Both heads train: the rating task gets its own checkpoint selection (core.model.rating_refit)."""
    if cfg.rating_refit_epochs <= 0:
        return False
    return cfg.loss_weights == "uncertainty" or (cfg.loss_weights[0] > 0 and cfg.loss_weights[1] > 0)


def training_users(data: SequenceData, split: Split) -> np.ndarray:
    """Users with at least two training events (one input, one target)."""
    return np.flatnonzero(split.train_end - data.offsets[:-1] >= 2)


def make_optimizer(model: BehaviorModel, loss_fn: MultiTaskLoss, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in list(model.parameters()) + list(loss_fn.parameters()) if p.requires_grad]
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def length_buckets(users: np.ndarray, lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                   pool: int = 1) -> list[np.ndarray]:
    """Shuffled batches of users with similar window lengths (less padding, same randomness).

    Users are shuffled, cut into pools of ``pool`` batches, sorted by length within a pool
    and cut into batches; the batches are then shuffled.
    """
    order = rng.permutation(users)
    groups: list[np.ndarray] = []
    for lo in range(0, len(order), batch_size * pool):
        part = order[lo:lo + batch_size * pool]
        part = part[np.argsort(lengths[part], kind="stable")]
        groups += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    return [groups[i] for i in rng.permutation(len(groups))] or [order]


def _run_epoch(model: BehaviorModel, data: SequenceData, split: Split, cfg: TrainConfig, users: np.ndarray,
               rng: np.random.Generator, device: torch.device, optimizer: torch.optim.Optimizer,
               loss_fn: MultiTaskLoss, progress: ProgressFn | None, cancel: CancelFn | None,
               epoch: int) -> dict[str, float] | None:
    model.train()
    lengths = np.minimum(split.train_end - data.offsets[:-1], model.cfg.max_len + 1)
    groups = length_buckets(users, lengths, cfg.batch_size, rng, cfg.bucket_pool)
    steps = len(groups)
    sums = np.zeros(3)
    for step, idx in enumerate(groups):
        if cancel and cancel():
            return None
        batch = training_batch(data, idx, split.train_end[idx], model.cfg.max_len).to(device)
        removed = (torch.rand(batch.mask.shape, device=device) < cfg.event_dropout) & batch.mask
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            parts = loss_fn(model, batch, removed if cfg.event_dropout > 0 else None)
        optimizer.zero_grad(set_to_none=True)
        parts.total.backward()
        optimizer.step()
        sums += [parts.total.item(), parts.engagement.item(), parts.rating.item()]
        if progress:
            progress({"event": "step", "epoch": epoch + 1, "step": step + 1, "steps": steps,
                      "loss": float(parts.total.item())})
    mean = sums / steps
    return {"loss": float(mean[0]), "loss_engagement": float(mean[1]), "loss_rating": float(mean[2])}
