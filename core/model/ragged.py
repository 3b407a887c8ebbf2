"""Ragged batches: a training batch's rows in groups of similar length, each group padded to its own longest window.

Users' histories differ in length: a batch of 32 windows of 3 to 200 events, padded to the longest, is about half
padding, and the sequence side's cost (the transformer, the behavior memory, the repeat evidence) grows with the
padded cells, attention's with their square. The model reads every row on its own (attention, the memory and the
repeat evidence never cross rows; the newest event always has the last position), so the groups' states are the
batch's states: the loss over the batch, its gradient and its sampled candidates are the same, up to float rounding.
The sequence side and the engagement logits run per group (a group's repeat evidence has its own width); the
loss is the mean over the batch's target positions, and a sampled softmax draws its candidates once per batch.

The groups minimise the padded cells plus a fixed cost per group (:data:`GROUP_CELLS`), over the rows sorted by
length: an exact dynamic programme over the cut points.
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import torch

from core.data.batches import Batch

# One more group costs about as much as this many padded cells of [rows, events] (a forward and backward of the
# sequence side at a few rows has a fixed cost of a few hundred small kernels; measured on the 1M-event bench log)
GROUP_CELLS = 256


def length_groups(lengths: np.ndarray, group_cells: int = GROUP_CELLS) -> list[np.ndarray]:
    """Row indices [n] of ``lengths`` (each row's real events) in groups: rows sorted by length, cut where the sum
    over groups of (rows x longest + ``group_cells``) is least. Every row is in exactly one group."""
    order = np.argsort(lengths, kind="stable")
    size = np.maximum(np.asarray(lengths, np.int64)[order], 1)
    n = len(order)
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    cut = np.zeros(n + 1, np.int64)
    for end in range(1, n + 1):  # the group of rows [start, end) closes at end; its longest is size[end - 1]
        starts = np.arange(end)
        cost = best[:end] + (end - starts) * size[end - 1] + group_cells
        cut[end] = int(np.argmin(cost))
        best[end] = cost[cut[end]]
    groups, end = [], n
    while end > 0:
        groups.append(order[cut[end] : end])
        end = int(cut[end])
    return groups[::-1]


def rows(batch: Batch, index: np.ndarray, removed: torch.Tensor | None = None) -> tuple[Batch, torch.Tensor | None]:
    """The batch's rows ``index``, padded to their own longest window (the leading columns that are padding in every
    one of them dropped): what the batch builder gives for those rows alone; and the same cells of ``removed``
    [B, L] (the events swapped for the mask token), when given."""
    at = torch.as_tensor(index, dtype=torch.long, device=batch.mask.device)
    width = max(1, int(batch.mask[at].sum(1).max()))
    parts = {}
    for f in fields(batch):
        value = getattr(batch, f.name)
        parts[f.name] = value[at][:, -width:] if isinstance(value, torch.Tensor) else value
    return Batch(**parts), None if removed is None else removed[at][:, -width:]
