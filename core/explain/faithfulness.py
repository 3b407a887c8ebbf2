"""Faithfulness of an attribution: deletion curves and AOPC, against random orders.

Deletion curve of an order o over the n events: c_k = f(history with o_1..o_k removed),
k = 0..n (c_0 = f(all), c_n = f(none)); removal is masking in place, as everywhere.
AOPC (area over the perturbation curve, Samek et al. 2017) = 1/(n+1) Σ_k (c_0 − c_k):
high when the events an explanation ranks first really carry the score. Every curve
of an explanation (its own order and ``n_random`` seeded random permutations) is
scored in one batched pass of (1 + n_random)·(n + 1) histories.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.explain.scorer import EventScorer

N_RANDOM = 3  # random permutations averaged into the baseline curve


@dataclass
class Faithfulness:
    """AOPC of an attribution order and of random orders, with their curves ([n+1] each)."""

    aopc: float
    aopc_random: float
    curve: np.ndarray  # [n+1] score after removing the k highest-attributed events
    random_curve: np.ndarray  # [n+1] mean over random orders


def deletion_order(values: np.ndarray) -> np.ndarray:
    """Event indices by decreasing attribution [n]; ties keep the older event first."""
    return np.argsort(-np.asarray(values, dtype=np.float64), kind="stable")


def removal_masks(orders: np.ndarray) -> torch.Tensor:
    """Orders [R, n] -> removed masks [R·(n+1), n]: row r·(n+1)+k removes the first k of order r."""
    orders = np.atleast_2d(orders)
    r, n = orders.shape
    ranks = np.empty_like(orders)
    np.put_along_axis(ranks, orders, np.arange(n)[None, :].repeat(r, 0), axis=1)  # rank of each event
    removed = ranks[:, None, :] < np.arange(n + 1)[None, :, None]  # [R, n+1, n]
    return torch.from_numpy(removed.reshape(r * (n + 1), n))


def deletion_curves(scorer: EventScorer, orders: np.ndarray) -> np.ndarray:
    """Deletion curves [R, n+1] of each order [R, n], in one batched pass."""
    orders = np.atleast_2d(orders)
    scores = scorer.score_removed(removal_masks(orders)).detach().double().numpy()
    return scores.reshape(orders.shape[0], orders.shape[1] + 1)


def aopc(curve: np.ndarray) -> float:
    """1/(n+1) Σ_{k=0..n} (c_0 − c_k) of a curve [n+1]."""
    curve = np.asarray(curve, dtype=np.float64)
    return float(np.mean(curve[0] - curve))


def random_orders(n: int, count: int = N_RANDOM, seed: int = 0) -> np.ndarray:
    """``count`` seeded permutations of n events [count, n]."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n) for _ in range(count)]) if count else np.zeros((0, n), np.int64)


def faithfulness(scorer: EventScorer, values: np.ndarray, n_random: int = N_RANDOM, seed: int = 0) -> Faithfulness:
    """AOPC of the order given by ``values`` [n] and the mean AOPC of ``n_random`` random orders."""
    n = len(values)
    orders = np.concatenate([deletion_order(values)[None, :], random_orders(n, n_random, seed)])
    curves = deletion_curves(scorer, orders)
    rand = curves[1:].mean(0) if n_random else np.full(n + 1, np.nan)
    return Faithfulness(aopc(curves[0]), aopc(rand) if n_random else float("nan"), curves[0], rand)
