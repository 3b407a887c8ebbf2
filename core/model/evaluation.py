"""Scoring held-out events: full-ranking metrics, AUC, RMSE/MAE, coverage, each labelled with its protocol."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from core.data.batches import history_batch, seen_items
from core.data.sequences import SequenceData
from core.model import metrics as M
from core.model.catalogue import rank_catalogue
from core.model.fitted import Fitted
from core.model.network import BehaviorModel
from core.model.protocol import RatingScale

K = 10
SCORE_BATCH = 256  # users per forward pass while scoring
PER_USER = "per_user_NDCG@10"  # score_events(per_user=True): each target's NDCG@10, [U]
SCORE_CELLS = 2**26  # scores held at once while evaluating (256 MB of float32): users are scored in chunks of this


@torch.inference_mode()
def user_scores(
    model: BehaviorModel,
    data: SequenceData,
    users: np.ndarray,
    ends: np.ndarray,
    device: torch.device,
    batch_size: int = 256,
    actual_time: bool = False,
) -> tuple[np.ndarray, torch.Tensor]:
    """Log-probabilities over every item [U, N+1] (column 0 = padding, -inf) and rating task states [U, De].

    Asked at the stand-in time unless ``actual_time`` (see :func:`~core.data.batches.history_batch`)."""
    model.eval()
    scores = np.empty((len(users), data.n_items + 1), np.float32)
    states = torch.empty(0)
    items = model.items(None)  # every item's representation, once (not once per batch: a catalogue's text projection)
    order = by_length(data, users, ends, model.cfg.max_len)  # batches of similar lengths; rows back in callers' order
    for start in range(0, len(users), batch_size):
        rows = order[start : start + batch_size]
        batch = history_batch(data, users[rows], ends[rows], model.cfg.max_len, actual_time).to(device)
        task_e, task_r = model(batch, last=True)
        logits = model.engagement_logits(task_e, items=items).float()
        logits[:, 0] = float("-inf")
        scores[rows] = torch.log_softmax(logits, -1).cpu().numpy()
        if start == 0:
            states = task_r.new_empty((len(users), task_r.shape[-1]), dtype=torch.float32)
        states[torch.as_tensor(rows, device=states.device)] = task_r.float()
    return scores, states


@torch.inference_mode()
def predicted_ratings(model: BehaviorModel, states: torch.Tensor, items: np.ndarray, scale: RatingScale) -> np.ndarray:
    """De-standardized rating predictions for (state, item) pairs."""
    idx = torch.as_tensor(items, dtype=torch.long, device=states.device)
    return np.asarray(scale.restore(model.rating_of(states, idx).float().cpu().numpy()))


def exclusion_mask(data: SequenceData, users: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """[U, N+1] True where an item is not a candidate: padding, and every item of an earlier event.

    The candidates depend on the history alone, never on the answer: a target the user had
    met before is excluded like any other earlier item (a miss).
    """
    mask = np.zeros((len(users), data.n_items + 1), dtype=bool)
    mask[:, 0] = True
    for r, seen in enumerate(seen_items(data, users, ends)):
        mask[r, seen] = True
    return mask


def evaluate_split(fitted: Fitted, which: str, per_user: bool = False) -> dict[str, Any]:
    """Metrics of the ``valid`` or ``test`` targets of ``fitted.split`` under ``fitted.protocol`` (``per_user``: with
    each target's NDCG@10 as an array under ``PER_USER``)."""
    split = fitted.split
    pos = split.valid_pos if which == "valid" else split.test_pos
    if len(split.users) == 0:
        return {}
    return score_events(fitted, split.users, pos, pos, per_user)


def score_events(
    fitted: Fitted, users: np.ndarray, ends: np.ndarray, pos: np.ndarray, per_user: bool = False
) -> dict[str, Any]:
    """Metrics of the events at ``pos`` [U] of ``fitted.data``, each user ``users[i]`` asked after their events
    before ``ends[i]`` (leave-last-out: ``ends`` = ``pos``), under ``fitted.protocol``.

    Full ranking goes over the catalogue in blocks of items (:func:`core.model.catalogue.rank_catalogue`); a
    protocol of sampled negatives scores users in chunks of at most :data:`SCORE_CELLS` scores ([chunk, N+1]). Either
    way only ranks and top-K stay: the whole [users, items] matrix is never held."""
    model, data, protocol = fitted.model, fitted.data, fitted.protocol
    scale = fitted.scale
    targets = data.item[pos]
    if protocol.negatives is None:
        ranks, n_cand, tops, states = _full_ranking(fitted, users, ends, targets)
    else:
        ranks, n_cand, tops, states = _sampled_ranking(fitted, users, ends, targets)
    rank, cand = np.concatenate(ranks), np.concatenate(n_cand)
    out: dict[str, Any] = dict(M.ranking_metrics(rank, K))
    out["AUC"] = float(np.mean(np.clip(1.0 - rank / np.maximum(1, cand - 1), 0.0, 1.0)))
    out.update(_rating_metrics(model, data, torch.cat(states), pos, targets, scale))
    out["coverage@10"] = M.catalogue_coverage(np.concatenate(tops), data.n_items)
    out["users"] = int(len(users))
    if per_user:
        out[PER_USER] = M.ndcg_gains(rank, K)
    return out


@torch.inference_mode()
def _full_ranking(fitted: Fitted, users: np.ndarray, ends: np.ndarray, targets: np.ndarray) -> tuple[list, ...]:
    """Each target's rank among every candidate item, the number of candidates, the top-K and the rating states, a
    batch of users at a time, over the catalogue in blocks."""
    model, data, protocol = fitted.model, fitted.data, fitted.protocol
    model.eval()
    items = model.items(None)
    order = by_length(data, users, ends, model.cfg.max_len)  # batches of similar lengths: little padding
    users, ends, targets = users[order], ends[order], targets[order]
    ranks, n_cand, tops, states = [], [], [], []
    for lo in range(0, len(users), SCORE_BATCH):
        part = slice(lo, lo + SCORE_BATCH)
        batch = history_batch(data, users[part], ends[part], model.cfg.max_len, protocol.actual_time).to(fitted.device)
        task_e, task_r = model(batch, last=True)
        seen = seen_items(data, users[part], ends[part]) if protocol.exclude_seen else None
        rank, top = rank_catalogue(model, task_e, items, targets[part], seen, K)
        ranks.append(rank)
        n_cand.append(
            data.n_items - np.array([len(s) for s in seen]) if seen is not None else np.full(len(rank), data.n_items)
        )
        tops.append(top)
        states.append(task_r.float())
    back = np.argsort(order)  # the callers' order
    return (
        [np.concatenate(ranks)[back]],
        [np.concatenate(n_cand)[back]],
        [np.concatenate(tops)[back]],
        [torch.cat(states)[torch.as_tensor(back, device=fitted.device)]],
    )


def by_length(data: SequenceData, users: np.ndarray, ends: np.ndarray, max_len: int) -> np.ndarray:
    """The order of ``users`` by the length of their history window (the events before ``ends``, at most
    ``max_len``): scored in this order, a batch is padded to about its own users' lengths, not to the longest
    history of the log (the model reads each user on their own, so the scores are the same)."""
    lengths = np.minimum(np.asarray(ends) - data.offsets[np.asarray(users)], max_len)
    return np.argsort(lengths, kind="stable")


def _sampled_ranking(fitted: Fitted, users: np.ndarray, ends: np.ndarray, targets: np.ndarray) -> tuple[list, ...]:
    """As :func:`_full_ranking`, each target ranked among ``protocol.negatives`` sampled items (seeded)."""
    model, data, protocol = fitted.model, fitted.data, fitted.protocol
    n = int(protocol.negatives or 0)
    rng = np.random.default_rng(0)
    step = max(1, SCORE_CELLS // (data.n_items + 1) // SCORE_BATCH) * SCORE_BATCH  # whole batches of user_scores
    ranks, n_cand, tops, states = [], [], [], []
    for lo in range(0, len(users), step):
        part = slice(lo, lo + step)
        scores, chunk_states = user_scores(
            model, data, users[part], ends[part], fitted.device, actual_time=protocol.actual_time
        )
        exclude = exclusion_mask(data, users[part], ends[part]) if protocol.exclude_seen else _padding_only(scores)
        negatives = M.sample_negatives(scores.shape[1], targets[part], n, rng, exclude)
        ranks.append(M.rank_among_sampled(scores, targets[part], negatives))
        n_cand.append(np.full(len(scores), n + 1))
        tops.append(_top_k(scores, exclude))
        states.append(chunk_states)
        del scores, exclude
    return ranks, n_cand, tops, states


def _padding_only(scores: np.ndarray) -> np.ndarray:
    mask = np.zeros(scores.shape, dtype=bool)
    mask[:, 0] = True
    return mask


def _rating_metrics(
    model: BehaviorModel,
    data: SequenceData,
    states: torch.Tensor,
    pos: np.ndarray,
    targets: np.ndarray,
    scale: RatingScale,
) -> dict[str, float]:
    truth = data.value[pos]
    has = ~np.isnan(truth)
    if not has.any():
        return {"RMSE": float("nan"), "MAE": float("nan")}
    pred = predicted_ratings(model, states[torch.as_tensor(has, device=states.device)], targets[has], scale)
    return {"RMSE": M.rmse(truth[has], pred), "MAE": M.mae(truth[has], pred)}


def _top_k(scores: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    """Each row's top-K candidate items as item indices 0..N-1 (-1 where fewer than K candidates remain). With torch's
    top-k, which keeps K per row and runs on every thread (numpy's argpartition of each row took 3 s per 256 users
    over 95K items: most of an evaluation)."""
    masked = torch.from_numpy(scores).masked_fill(torch.from_numpy(exclude), float("-inf"))
    values, top = torch.topk(masked, min(K, masked.shape[1]), dim=1)
    return np.where(torch.isfinite(values).numpy(), top.numpy() - 1, -1)
