"""The fit loop: epochs of shuffled (optionally length-bucketed) batches, early stopping, callbacks.

No printing: progress goes through the one callback shape of :mod:`core.progress`. The losses
are :mod:`core.model.losses`; the model, data, split, protocol and rating scale arrive as one
:class:`~core.model.fitted.Fitted`.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.data.batches import training_batch
from core.model import distributed
from core.model.config import TrainConfig
from core.model.distributed import Group
from core.model.epochs import Stall, epoch_random, epoch_users, length_buckets, selection_score, training_users
from core.model.evaluation import PER_USER, evaluate_split
from core.model.fitted import Fitted
from core.model.heap import return_freed_memory, trim_freed_memory
from core.model.losses import MultiTaskLoss, training_counts
from core.model.optimizer import make_optimizer
from core.model.privacy import NoisySum, PrivacyPlan, plan_privacy, refuse_unprivate_modules
from core.progress import CancelFn, ProgressFn, report

FROZEN_TEXT = "items.text"  # the item text table's key in the model's state


@dataclass
class FitState:
    """What the loop hands back: per-epoch history and the best state."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float = -math.inf
    best_state: dict[str, torch.Tensor] | None = None
    cancelled: bool = False
    epochs_done: int = 0  # finished epochs (a resumed run starts after them)
    privacy: dict[str, Any] | None = None  # a private run's epsilon spent and mechanism (PrivacyPlan.summary)
    best_tuner: dict[str, torch.Tensor] | None = None  # a fine-tuned encoder's weights at the best epoch
    stall: Stall = field(default_factory=Stall)  # the epoch to beat: patience counts from it


@dataclass
class Hooks:
    """How a caller follows and steers training: progress events, a cancel check, an end-of-epoch hook."""

    progress: ProgressFn | None = None
    cancel: CancelFn | None = None
    on_epoch: Callable[[FitState, int], None] | None = None


@dataclass
class Optimization:
    """The loss module and the optimizer over the model's and the loss's parameters."""

    loss_fn: MultiTaskLoss
    optimizer: torch.optim.Optimizer
    tuner: Any = None  # a fine-tuned text encoder (core.model.finetune.EncoderTuner)
    ddp: Any = None  # the loss step wrapped in DistributedDataParallel (core.model.distributed), several processes
    group: Group | None = None


def fit(
    fitted: Fitted,
    cfg: TrainConfig,
    *,
    state: FitState | None = None,
    loss_fn: MultiTaskLoss | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    hooks: Hooks | None = None,
    focus: np.ndarray | None = None,
    tuner: Any = None,
) -> FitState:
    """Train ``fitted.model`` with AdamW and early stopping on validation NDCG@10 (-RMSE for a rating-only
    model), from ``state.epochs_done`` (a resumed run passes its saved state, loss and optimizer).

    ``focus`` ([U] bool, an update's users with new events): each epoch trains on them and on a fresh sample of
    ``cfg.update_replay`` of the others (:func:`epoch_users`); validation still covers every user.

    With ``cfg.privacy`` the steps are DP-SGD's (:mod:`core.model.privacy`), every planned epoch runs and
    the last one is kept: choosing an epoch on the users' validation events is outside the accounting.

    ``tuner`` (:class:`core.model.finetune.EncoderTuner`): the text encoder trains too; its tables are re-encoded
    at the end of every epoch, before validation, and its weights kept with the best epoch's."""
    return_freed_memory()
    model, data, split = fitted.model, fitted.data, fitted.split
    state, hooks = state or FitState(), hooks or Hooks()
    loss_fn = loss_fn or MultiTaskLoss(cfg, data.n_items, fitted.scale).to(fitted.device)
    optimizer = optimizer or make_optimizer(model, loss_fn, cfg)
    users = training_users(data, split)
    if loss_fn.loss == "sampled_softmax" and loss_fn.popularity is None:  # private: drawn uniformly, not by the users
        loss_fn.set_popularity(torch.zeros(data.n_items + 1) if cfg.privacy else training_counts(data, split))
    plan = None
    if cfg.privacy is not None:
        refuse_unprivate_modules(model, loss_fn)
        plan = plan_privacy(cfg.privacy, len(users), cfg.batch_size, cfg.epochs)
        state.privacy = plan.summary(state.epochs_done)
    group = distributed.current()  # private: no DDP, the ranks sum their clipped gradients before the noise
    ddp = None if plan is not None else distributed.wrap(model, loss_fn, group, fitted.device, tuner and tuner.net)
    if tuner is not None and state.best_tuner is None:  # its weights as they are, matching the tables as they are
        state.best_tuner = tuner.state()
    for epoch in range(state.epochs_done, cfg.epochs):
        started = time.perf_counter()
        opt = Optimization(loss_fn, optimizer, tuner, ddp, group)
        rng = epoch_random(cfg.seed, epoch)  # from the seed and the epoch alone: a resumed run draws what it would have
        if plan is None:
            picked = epoch_users(users, focus, cfg.update_replay, rng)
            losses = _run_epoch(fitted, cfg, picked, rng, opt, hooks, epoch)
        else:
            losses = _private_epoch(fitted, cfg, users, opt, hooks, epoch, plan)
        if losses is None:
            state.cancelled = True
            break
        state.epochs_done = epoch + 1
        if tuner is not None:
            tuner.refresh(model)
        if plan is not None:
            state.privacy = plan.summary(state.epochs_done)
        # rank 0 validates; every rank takes its figures, so all stop at the same epoch
        metrics = distributed.broadcast(
            evaluate_split(fitted, "valid", True) if not group or group.leader else None, group
        )
        gains = metrics.pop(PER_USER, None)
        record = {
            "epoch": epoch + 1,
            "seconds": round(time.perf_counter() - started, 2),
            **losses,
            **{f"valid_{k}": v for k, v in metrics.items()},
        }
        state.history.append(record)
        trim_freed_memory()
        score = selection_score(cfg, metrics)
        if plan is not None or score > state.best_score:
            state.best_score, state.best_epoch = score, epoch + 1
            state.best_state = snapshot(model, tuner is not None)
            state.best_tuner = None if tuner is None else tuner.state()
        report(hooks.progress, "epoch", epoch + 1, cfg.epochs, **record, best_epoch=state.best_epoch)
        if hooks.on_epoch:
            hooks.on_epoch(state, epoch + 1)
        state.stall.see(epoch + 1, score, gains if score == metrics.get("NDCG@10") else None, cfg.min_improvement)
        if plan is None and epoch + 1 - state.stall.epoch >= cfg.patience:
            break
    return state


def snapshot(model: torch.nn.Module, tuned: bool) -> dict[str, torch.Tensor]:
    """A copy of the model's state; the item text table is shared, not copied, unless the encoder is fine-tuned (it
    is the frozen encoder's output, the same every epoch: at 947K items, 1.45 GB that a copy doubled)."""
    return {k: v if k == FROZEN_TEXT and not tuned else v.detach().clone() for k, v in model.state_dict().items()}


def refits_rating(cfg: TrainConfig) -> bool:
    """Both heads train: the rating task gets its own checkpoint selection (core.model.rating_refit)."""
    if cfg.rating_refit_epochs <= 0:
        return False
    return isinstance(cfg.loss_weights, str) or (cfg.loss_weights[0] > 0 and cfg.loss_weights[1] > 0)


def _run_epoch(
    fitted: Fitted,
    cfg: TrainConfig,
    users: np.ndarray,
    rng: np.random.Generator,
    opt: Optimization,
    hooks: Hooks,
    epoch: int,
) -> dict[str, float] | None:
    """One pass over the training users; the mean losses, or None when cancelled. Over several processes every rank
    walks the same batches and computes its share of each (:mod:`core.model.distributed`); a cancel on rank 0 stops
    them all at the same step."""
    model, data, split = fitted.model, fitted.data, fitted.split
    model.train()
    lengths = np.minimum(split.train_end - data.offsets[:-1], model.cfg.max_len + 1)
    groups = length_buckets(users, lengths, cfg.batch_size, rng, cfg.bucket_pool)
    world = 1 if opt.group is None else opt.group.world
    groups = [g for g in groups if len(g) >= world]  # every rank gets a user of each batch
    steps = len(groups)
    sums = np.zeros(3)
    for step, idx in enumerate(groups):
        if _cancelled(hooks, opt.group):
            return None
        parts, shares = _step_loss(fitted, cfg, distributed.shard(idx, opt.group), opt, rng)
        opt.optimizer.zero_grad(set_to_none=True)
        parts.total.backward()
        opt.optimizer.step()
        # this rank's part of the batch means (each part weighted by its share; summed over the ranks below)
        sums += [
            parts.total.item() / world,
            *(p.item() * w / world for p, w in zip((parts.engagement, parts.rating), shares)),
        ]
        report(
            hooks.progress,
            "step",
            step + 1,
            steps,
            epoch=epoch + 1,
            step=step + 1,
            steps=steps,
            loss=float(parts.total.item()),
        )
    mean = np.asarray(distributed.total(list(sums), opt.group)) / max(1, steps)
    return {"loss": float(mean[0]), "loss_engagement": float(mean[1]), "loss_rating": float(mean[2])}


def _cancelled(hooks: Hooks, group: Group | None) -> bool:
    """A cancel was asked (on rank 0: every rank stops at the same step)."""
    stop = bool(hooks.cancel and hooks.cancel())
    return distributed.total([float(stop)], group)[0] > 0 if group is not None else stop


def _step_loss(
    fitted: Fitted, cfg: TrainConfig, idx: np.ndarray, opt: Optimization, rng: np.random.Generator | None = None
) -> tuple[Any, tuple[float, float]]:
    """The losses of one batch of users: their training windows, some positions asked at the stand-in time,
    some input events dropped, some items without their ID embedding and biases (``item_id_dropout``), some items'
    text read by the fine-tuned encoder with gradients (``opt.tuner``); and this rank's shares of the batch."""
    model, data, split, device = fitted.model, fitted.data, fitted.split, fitted.device
    batch = training_batch(data, idx, split.train_end[idx], model.cfg.max_len).to(device)
    if cfg.standin_rate > 0 and batch.request_ts is not None:
        standin = torch.rand(batch.mask.shape, device=device) < cfg.standin_rate
        batch.request_ts = batch.request_ts.masked_fill(standin, -1)
    removed = (torch.rand(batch.mask.shape, device=device) < cfg.event_dropout) & batch.mask
    dropped = torch.rand(data.n_items + 1, device=device) < cfg.item_id_dropout if cfg.item_id_dropout else None
    shares, removed_or_none = distributed.shares(batch, opt.group), removed if cfg.event_dropout > 0 else None
    with contextlib.ExitStack() as stack:
        stack.enter_context(model.dropping_ids(dropped))
        stack.enter_context(torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"))
        if opt.tuner is not None:
            seen = torch.cat([batch.item.flatten(), batch.targets()[0].flatten()])
            stack.enter_context(opt.tuner.step(model, seen, rng or np.random.default_rng()))
        if opt.ddp is not None:
            return opt.ddp(batch, removed_or_none, shares), shares
        return opt.loss_fn(model, batch, removed_or_none, shares), shares


def _private_epoch(
    fitted: Fitted,
    cfg: TrainConfig,
    users: np.ndarray,
    opt: Optimization,
    hooks: Hooks,
    epoch: int,
    plan: PrivacyPlan,
) -> dict[str, float] | None:
    """One epoch of DP-SGD: Poisson-sampled users, each one's gradient clipped, Gaussian noise on the sum. In several
    processes every rank draws the same sample and takes every world-th sampled user; the clipped sums are added up
    over the ranks and every rank adds the same noise, once: the mechanism of one process."""
    fitted.model.train()
    params = [p for p in list(fitted.model.parameters()) + list(opt.loss_fn.parameters()) if p.requires_grad]
    # who is sampled and the noise must not follow from anything stored with the run (its seed is): both
    # are drawn from generators seeded by the operating system's random source (rank 0's, shared by the ranks)
    seeds = distributed.broadcast((secrets.randbits(128), secrets.randbits(63)), opt.group)
    sampling, noise = np.random.default_rng(seeds[0]), torch.Generator().manual_seed(seeds[1])
    alone = Optimization(opt.loss_fn, opt.optimizer, opt.tuner, None, None)  # one user's loss: no collective
    sums, norms = np.zeros(4), []
    for step in range(plan.steps_per_epoch):
        if _cancelled(hooks, opt.group):
            return None
        step_sum = NoisySum(params, plan, noise)
        for user in distributed.shard(users[sampling.random(len(users)) < plan.sample_rate], opt.group):
            parts, _ = _step_loss(fitted, cfg, np.array([user]), alone)
            norms.append(step_sum.add(parts.total))
            sums += [parts.total.item(), parts.engagement.item(), parts.rating.item(), 1]
        step_sum.release(opt.group)
        opt.optimizer.step()
        loss = float(sums[0] / max(1, sums[3]))
        report(
            hooks.progress,
            "step",
            step + 1,
            plan.steps_per_epoch,
            epoch=epoch + 1,
            step=step + 1,
            steps=plan.steps_per_epoch,
            loss=loss,
        )
    sums = np.asarray(distributed.total(list(sums), opt.group))
    norms = [n for part in distributed.gathered(norms, opt.group) for n in part]  # every rank's users
    mean = sums[:3] / max(1, sums[3])
    return {
        "loss": float(mean[0]),
        "loss_engagement": float(mean[1]),
        "loss_rating": float(mean[2]),
        # how the bound meets the users' gradients: their median norm, and the share clipped
        "grad_norm_median": float(np.median(norms)) if norms else 0.0,
        "clipped_share": float(np.mean(np.asarray(norms) > plan.max_grad_norm)) if norms else 0.0,
    }
