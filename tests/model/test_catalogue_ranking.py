"""Full ranking over the catalogue in blocks of items (core.model.catalogue): the same logits, ranks and top-K as
scoring every item at once, whatever the block width; ties go to the smaller item index; an excluded target is a
miss."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch

from core.data.batches import history_batch, seen_items
from core.model import metrics as M
from core.model.catalogue import rank_catalogue
from core.model.evaluation import exclusion_mask
from core.runs.run import open_run


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory, tiny_run: Any) -> dict[str, Any]:
    """A trained tiny run (repeat path on) and its test users' engagement task states."""
    run = tiny_run(tmp_path_factory.mktemp("catalogue"), n_users=30)
    rec = open_run(run.ws, run.run_id, device="cpu").recommender()
    model, data, split = rec.model_, rec.data_, rec.split_
    model.eval()
    users, ends = split.users, split.test_pos
    with torch.inference_mode():
        batch = history_batch(data, users, ends, model.cfg.max_len)
        task_e, _ = model(batch, last=True)
        items = model.items(None)
        dense = model.engagement_logits(task_e, items=items).float()
    assert model.repeat is not None
    return {
        "model": model,
        "data": data,
        "users": users,
        "ends": ends,
        "task_e": task_e,
        "items": items,
        "dense": dense,
    }


@pytest.mark.parametrize("width", [1, 7, 10_000])
def test_blocks_are_the_dense_logits(scored: dict[str, Any], width: int) -> None:
    with torch.inference_mode():
        parts = [
            (lo, b.clone()) for lo, b in scored["model"].engagement.blocks(scored["task_e"], scored["items"], width)
        ]
    assert [lo for lo, _ in parts] == list(range(0, scored["items"].shape[0], width))
    blocks = torch.cat([b for _, b in parts], 1)
    torch.testing.assert_close(blocks, scored["dense"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("exclude_seen", [True, False])
@pytest.mark.parametrize("width", [3, 16, 10_000])
def test_ranks_and_top_k_equal_the_dense_ranking(scored: dict[str, Any], exclude_seen: bool, width: int) -> None:
    data, users, ends = scored["data"], scored["users"], scored["ends"]
    targets = data.item[ends]
    dense = scored["dense"].clone()
    dense[:, 0] = float("-inf")
    exclude = exclusion_mask(data, users, ends) if exclude_seen else np.eye(1, dense.shape[1], 0, dtype=bool)
    exclude = np.broadcast_to(exclude, dense.shape)
    expected = M.rank_of_targets(dense.numpy(), targets, exclude)
    seen = seen_items(data, users, ends) if exclude_seen else None
    ranks, top = rank_catalogue(scored["model"], scored["task_e"], scored["items"], targets, seen, 10, width)
    np.testing.assert_array_equal(ranks, expected)
    masked = dense.masked_fill(torch.from_numpy(exclude.copy()), float("-inf"))
    best = torch.topk(masked, 10, 1).indices.numpy() - 1
    for row, (got, want) in enumerate(zip(top, best)):
        assert set(got) == set(want), row
    if exclude_seen:  # a target met before is a miss, below every cut-off
        met = [t in s for t, s in zip(targets, seen)]
        assert all(r == dense.shape[1] for r, m in zip(ranks, met) if m)


@pytest.mark.parametrize("width", [2, 5, 10_000])
def test_ties_go_to_the_smaller_item_index(scored: dict[str, Any], width: int) -> None:
    """Every candidate scores the same (items and biases zero): a target's rank is the candidates before it."""
    model = copy.deepcopy(scored["model"])
    with torch.no_grad():
        model.engagement.item_bias.weight.zero_()
    data, users, ends = scored["data"], scored["users"], scored["ends"]
    seen = seen_items(data, users, ends)
    n1 = scored["items"].shape[0]
    rng = np.random.default_rng(0)
    targets = np.array([rng.choice(np.setdiff1d(np.arange(1, n1), s)) for s in seen])
    items = torch.zeros_like(scored["items"])
    ranks, top = rank_catalogue(model, scored["task_e"], items, targets, seen, 10, width)
    expected = [int(np.sum(~np.isin(np.arange(1, t), s))) for t, s in zip(targets, seen)]
    assert list(ranks) == expected
    assert (top >= 0).all()
