"""Data-parallel training on ``torch.distributed``: one process per rank, launched by torch's elastic launcher.

``behaviorlens train --nproc-per-node N`` (or ``torchrun --nproc-per-node N -m core.cli train ...``) starts N
processes; each reads ``RANK``, ``WORLD_SIZE`` and the rendezvous from the launcher's environment
(:func:`setup`): gloo on the CPU, NCCL on GPUs (one GPU per local rank).

Every rank builds the same index of the data (the vocabularies must agree) and walks the same shuffled batches;
each computes the loss of its own share of each batch's users (:func:`shard`), and
:class:`~torch.nn.parallel.DistributedDataParallel` averages the gradients. Each rank's loss parts are scaled by
its share of the batch's target positions and rated positions times the world size (:func:`shares`), so the
averaged gradient is the gradient of the whole batch's loss: N processes take the same steps as one process
with the same global batch, up to the order of floating-point sums. Rank 0 alone validates (the others receive
its metrics, so every rank stops at the same epoch), and rank 0 alone writes the run, its checkpoints and its
progress (:mod:`core.runs.train`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Group:
    """This process's place in the job: its rank, the world size and its local rank on the node."""

    rank: int
    world: int
    local_rank: int

    @property
    def leader(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """This process was started by an elastic launcher with more than one rank."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def follower() -> bool:
    """This process is a rank other than 0 of a multi-process launch (known from the launcher's environment, before
    :func:`setup` joins the group)."""
    return launched() and int(os.environ.get("RANK", "0")) != 0


def setup(device: str = "auto") -> Group | None:
    """Join the launcher's process group (once); None outside a multi-process launch. ``device``: the run's
    (cuda, or auto with a GPU: NCCL and the local rank's GPU; else gloo)."""
    if not launched():
        return None
    cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(local)
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return Group(dist.get_rank(), dist.get_world_size(), local)


def current() -> Group | None:
    """The process group this process trains in, once :func:`setup` joined it (None: a single process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return Group(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(users: np.ndarray, group: Group | None) -> np.ndarray:
    """This rank's users of a batch: every ``world``-th, from its rank (all of them in a single process)."""
    return users if group is None else users[group.rank :: group.world]


def broadcast(value: Any, group: Group | None) -> Any:
    """Rank 0's ``value`` on every rank (a picklable object)."""
    if group is None:
        return value
    box = [value if group.leader else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mine(n: int, group: Group | None = None) -> range:
    """The indices 0..n-1 this rank computes of a job sharded over the ranks (all of them in a single process)."""
    group = group if group is not None else current()
    return range(n) if group is None else range(group.rank, n, group.world)


def in_order(found: dict[int, Any], n: int, group: Group | None = None) -> list[Any]:
    """Every rank's ``found`` ({index: result} of :func:`mine`) merged: the n results in index order, on every
    rank (each then reports the same merged result: a sharded job equals its single-process run)."""
    group = group if group is not None else current()
    if group is not None:
        found = {i: v for part in gathered(found, group) for i, v in part.items()}
    return [found[i] for i in range(n)]


def gathered(value: Any, group: Group | None) -> list[Any]:
    """Every rank's ``value`` (a picklable object), in rank order, on every rank (``[value]`` in a single process)."""
    if group is None:
        return [value]
    out: list[Any] = [None] * group.world
    dist.all_gather_object(out, value)
    return out


def total(values: list[float], group: Group | None) -> list[float]:
    """The sums over the ranks of ``values`` (the values themselves in a single process)."""
    if group is None:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def shares(batch: Any, group: Group | None) -> tuple[float, float]:
    """(engagement, rating) factors of this rank's loss parts: world × its share of the batch's target positions
    (rated positions), so that DDP's average of the ranks' gradients is the whole batch's gradient."""
    if group is None:
        return 1.0, 1.0
    target, value = batch.targets()
    has = target > 0
    mine = [float(has.sum()), float((has & ~torch.isnan(value)).sum())]
    every = total(mine, group)
    return tuple(group.world * m / e if e else 0.0 for m, e in zip(mine, every))  # type: ignore[return-value]


class LossStep(nn.Module):
    """The model and the loss module as one module whose forward is a batch's loss parts: what
    DistributedDataParallel wraps (the loss calls many parts of the model, not only its forward)."""

    def __init__(self, model: nn.Module, loss_fn: nn.Module, encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.model, self.loss_fn = model, loss_fn
        self.encoder = encoder  # a fine-tuned text encoder (its step's vectors enter the loss's graph)

    def forward(self, batch: Any, removed: torch.Tensor | None, weights: tuple[float, float]) -> Any:
        return self.loss_fn(self.model, batch, removed, weights)


def wrap(
    model: nn.Module, loss_fn: nn.Module, group: Group | None, device: torch.device, encoder: nn.Module | None = None
) -> nn.Module | None:
    """DistributedDataParallel over the model, the loss and a fine-tuned ``encoder`` (None in a single process).
    Parts a batch does not use (the rating head without ratings, an event text without text) are allowed."""
    if group is None:
        return None
    ids = [device.index] if device.type == "cuda" and device.index is not None else None
    step = LossStep(model, loss_fn, encoder)
    # buffers (the item text table) are equal on every rank by construction: not sent again at every forward
    return nn.parallel.DistributedDataParallel(
        step, device_ids=ids, find_unused_parameters=True, forward_sync_buffers=False
    )
