"""The catalogue-size-aware engagement losses (core.model.losses): the sampled softmax with log-Q correction,
gBCE, and the "auto" choice; the head's logits over a candidate set shared by every position."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from core import schema as S
from core.data.batches import leave_last_out, training_batch
from core.data.sequences import build_sequences
from core.model.config import AUTO_SAMPLED_ABOVE, ModelConfig, TrainConfig, resolve_loss
from core.model.losses import MultiTaskLoss, training_counts
from core.model.network import BehaviorModel
from core.model.recommender import Recommender

T0 = 1_700_000_000


@pytest.fixture(scope="module")
def data():
    """20 users over 12 items, with repeats (so the repeat path has evidence)."""
    rng = np.random.default_rng(4)
    rows = [
        (f"u{u:02d}", f"i{int(rng.integers(12)):02d}", T0 + 60 * k + u, "view" if k % 2 else "click")
        for u in range(20)
        for k in range(9)
    ]
    frame = pd.DataFrame(rows, columns=[S.USER_ID, S.ITEM_ID, "_s", S.BEHAVIOR])
    frame[S.TIMESTAMP] = pd.to_datetime(frame.pop("_s"), unit="s")
    return build_sequences(frame)


def _model(data, **kw) -> BehaviorModel:
    torch.manual_seed(0)
    cfg = ModelConfig(
        n_items=data.n_items, n_behaviors=len(data.behaviors), text_dim=4, d_model=16, n_heads=2, n_layers=1,
        max_len=12, dropout=0.0, n_experts=2, expert_dim=8, **kw,
    )  # fmt: skip
    text = torch.randn(data.n_items + 1, 4)
    text[0] = 0
    return BehaviorModel(cfg, text).eval()


def _batch(data):
    split = leave_last_out(data)
    users = np.arange(data.n_users)
    return split, training_batch(data, users, split.train_end, max_len=12)


@pytest.mark.parametrize("use_repeat", [True, False])
def test_logits_over_shared_candidates_are_the_full_logits_columns(data, use_repeat: bool) -> None:
    model = _model(data, use_repeat=use_repeat)
    _, batch = _batch(data)
    with torch.no_grad():
        task_e, _ = model(batch)
        h = task_e[batch.mask]
        full = model.engagement_logits(h)
        cands = torch.tensor([2, 3, 7, 11])
        shared = model.engagement_logits(h, cands, shared=True)
    assert shared.shape == (h.shape[0], 4)
    torch.testing.assert_close(shared, full[:, cands])
    assert set(cands.tolist()) & set(batch.item[batch.mask].tolist())  # candidates in the histories: repeat evidence


def test_the_sampled_softmax_is_the_full_softmax_when_every_item_is_drawn_uniformly(data) -> None:
    model = _model(data)
    split, batch = _batch(data)
    full = MultiTaskLoss(TrainConfig(loss="softmax"), data.n_items)
    sampled = MultiTaskLoss(TrainConfig(loss="sampled_softmax", n_negatives=4000), data.n_items)
    sampled.set_popularity(torch.zeros(data.n_items + 1))  # uniform: the log-Q correction is a constant
    torch.manual_seed(1)
    with torch.no_grad():
        a, b = full(model, batch, None).engagement, sampled(model, batch, None).engagement
    torch.testing.assert_close(a, b)  # 4000 uniform draws over 12 items: every item is a candidate


def test_the_sampled_softmax_draws_by_popularity_and_corrects_for_it(data) -> None:
    split, _ = _batch(data)
    counts = training_counts(data, split)
    own = sum(int(split.train_end[u] - data.offsets[u]) for u in range(data.n_users))
    assert int(counts.sum()) == own and counts[0] == 0
    loss = MultiTaskLoss(TrainConfig(loss="sampled_softmax"), data.n_items)
    blocked = torch.zeros(data.n_items + 1, dtype=torch.bool)
    blocked[5] = True
    held = MultiTaskLoss(TrainConfig(loss="sampled_softmax"), data.n_items, blocked=blocked)
    loss.set_popularity(counts)
    held.set_popularity(counts)
    assert loss.popularity is not None and held.popularity is not None
    torch.testing.assert_close(loss.popularity.sum(), torch.tensor(1.0))
    assert loss.popularity[0] == 0 and held.popularity[5] == 0  # never padding, never a held-out item
    assert torch.argmax(loss.popularity) == torch.argmax(counts)
    with pytest.raises(RuntimeError, match="set_popularity"):
        MultiTaskLoss(TrainConfig(loss="sampled_softmax"), data.n_items)(_model(data), _batch(data)[1], None)


def test_gbce_is_bce_at_t_0_and_weighs_the_target_less_at_t_1(data) -> None:
    model = _model(data)
    _, batch = _batch(data)
    values = {}
    for name, cfg in {
        "bce": TrainConfig(loss="bce", n_negatives=5),
        "gbce0": TrainConfig(loss="gbce", n_negatives=5, gbce_t=0.0),
        "gbce1": TrainConfig(loss="gbce", n_negatives=5, gbce_t=1.0),
    }.items():
        torch.manual_seed(2)  # the same negatives
        with torch.no_grad():
            values[name] = MultiTaskLoss(cfg, data.n_items)(model, batch, None).engagement
    torch.testing.assert_close(values["gbce0"], values["bce"])
    assert values["gbce1"] < values["bce"]  # beta = alpha = 5/11 < 1 on the target's term


def test_auto_picks_the_full_softmax_for_small_catalogues() -> None:
    assert resolve_loss("auto", 3706) == "softmax" and resolve_loss("auto", AUTO_SAMPLED_ABOVE) == "softmax"
    assert resolve_loss("auto", AUTO_SAMPLED_ABOVE + 1) == "sampled_softmax"
    assert resolve_loss("gbce", 10) == "gbce"


@pytest.mark.parametrize("loss", ["sampled_softmax", "gbce", "auto"])
def test_a_recommender_trains_and_ranks_with_each_loss(data, loss: str, tiny_bert_dir) -> None:
    frame = pd.DataFrame(
        {
            S.USER_ID: np.repeat(data.users, np.diff(data.offsets)),
            S.ITEM_ID: data.item_ids[data.item],
            S.TIMESTAMP: pd.to_datetime(data.ts, unit="s"),
            S.BEHAVIOR: np.asarray(data.behaviors, dtype=object)[data.behavior],
        }
    )
    model = {"d_model": 16, "n_heads": 2, "n_layers": 1, "max_len": 12, "n_experts": 2, "expert_dim": 8}
    rec = Recommender(encoder=str(tiny_bert_dir), device="cpu", model=model, train={"epochs": 2, "loss": loss})
    rec.fit(frame)
    assert len(rec.history_) == 2 and np.isfinite(rec.history_[-1]["loss"])
    top = rec.recommend(str(data.users[0]), k=5)
    probs = top["engagement"].to_numpy()
    assert len(top) == 5 and np.all((probs > 0) & (probs <= 1))
    if loss != "gbce":  # a softmax head: probabilities over the items sum to at most 1
        assert probs.sum() <= 1.0 + 1e-6
