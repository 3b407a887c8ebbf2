"""Ragged training batches (core.model.ragged): rows in groups of similar length give the batch's own loss and
gradients; the groups are the cheapest cut of the sorted rows; a group's rows are what the batch builder gives for
those users alone."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from core import schema as S
from core.data.batches import leave_last_out, training_batch
from core.data.sequences import build_sequences
from core.model.config import ModelConfig, TrainConfig
from core.model.losses import MultiTaskLoss, training_counts
from core.model.network import BehaviorModel
from core.model.ragged import length_groups, rows

T0 = 1_700_000_000


@pytest.fixture(scope="module")
def data():
    """24 users of 4 to 40 events over 15 items, with repeats and ratings (every part of the model has input)."""
    rng = np.random.default_rng(7)
    out = []
    for u in range(24):
        for k in range(int(rng.integers(4, 41))):
            item = f"i{int(rng.integers(15)):02d}"
            out.append((f"u{u:02d}", item, T0 + 600 * k + 7 * u, ["view", "click", "rate"][k % 3], float(k % 5 + 1)))
    frame = pd.DataFrame(out, columns=[S.USER_ID, S.ITEM_ID, "_s", S.BEHAVIOR, S.VALUE])
    frame[S.TIMESTAMP] = pd.to_datetime(frame.pop("_s"), unit="s")
    return build_sequences(frame)


def _model(data) -> BehaviorModel:
    torch.manual_seed(0)
    cfg = ModelConfig(
        n_items=data.n_items, n_behaviors=len(data.behaviors), text_dim=4, d_model=16, n_heads=2, n_layers=2,
        max_len=30, dropout=0.0, n_experts=2, expert_dim=8, use_repeat=True, use_memory=True,
    )  # fmt: skip
    text = torch.randn(data.n_items + 1, 4)
    text[0] = 0
    return BehaviorModel(cfg, text).eval()  # no dropout: the two ways see the same model


@pytest.mark.parametrize("loss", ["softmax", "sampled_softmax"])
def test_the_groups_give_the_batchs_loss_and_gradients(data, loss: str) -> None:
    split = leave_last_out(data)
    users = np.arange(data.n_users)
    batch = training_batch(data, users, split.train_end, max_len=30)
    lengths = batch.mask.sum(1).numpy()
    assert lengths.min() < 10 and lengths.max() == 30  # a ragged batch
    removed = (torch.rand(batch.mask.shape, generator=torch.Generator().manual_seed(3)) < 0.2) & batch.mask
    model = _model(data)
    fn = MultiTaskLoss(TrainConfig(loss=loss, n_negatives=5), data.n_items)
    fn.set_popularity(training_counts(data, split))
    results = []
    for cells in (10**9, 0):  # one group (the padded batch), then as many groups as lengths
        fn.group_cells = cells
        assert len(length_groups(lengths, cells)) == (1 if cells else len(set(lengths.tolist())))
        model.zero_grad()
        torch.manual_seed(11)  # the same drawn negatives
        parts = fn(model, batch, removed)
        parts.total.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((parts, grads))
    (one, g1), (many, g2) = results
    torch.testing.assert_close(many.engagement, one.engagement, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(many.rating, one.rating, rtol=1e-5, atol=1e-6)
    assert g1.keys() == g2.keys()
    assert any(n.startswith("repeat.") for n in g1) and any(n.startswith("memory.") for n in g1)  # every path trains
    for name in g1:
        torch.testing.assert_close(g2[name], g1[name], rtol=1e-4, atol=1e-6, msg=name)


def test_the_groups_are_the_cheapest_cut_of_the_sorted_rows() -> None:
    rng = np.random.default_rng(0)
    for _ in range(30):
        lengths = rng.integers(1, 50, size=int(rng.integers(1, 9)))
        cost = 20
        groups = length_groups(lengths, cost)
        assert sorted(np.concatenate(groups).tolist()) == list(range(len(lengths)))  # every row once
        tops = [int(lengths[g].max()) for g in groups]
        assert tops == sorted(tops)  # in order of length
        found = sum(len(g) * int(lengths[g].max()) + cost for g in groups)
        size = np.sort(lengths)
        best = min(  # every way to cut the sorted rows
            sum((b - a) * int(size[b - 1]) + cost for a, b in zip((0, *cuts), (*cuts, len(size))))
            for r in range(len(size))
            for cuts in itertools.combinations(range(1, len(size)), r)
        )
        assert found == best


def test_a_groups_rows_are_the_batch_of_those_users_alone(data) -> None:
    split = leave_last_out(data)
    users = np.arange(data.n_users)
    batch = training_batch(data, users, split.train_end, max_len=30)
    removed = torch.rand(batch.mask.shape) < 0.3
    index = np.array([3, 5, 11])
    part, gone = rows(batch, index, removed)
    alone = training_batch(data, users[index], split.train_end[index], max_len=30)
    width = part.mask.shape[1]
    assert width == alone.mask.shape[1] < batch.mask.shape[1]
    for name in ("item", "behavior", "value", "ts", "mask", "target_item", "request_ts", "text"):
        torch.testing.assert_close(getattr(part, name), getattr(alone, name), msg=name)
    torch.testing.assert_close(part.target_value, alone.target_value, equal_nan=True)
    assert gone is not None and torch.equal(gone, removed[torch.as_tensor(index)][:, -width:])
