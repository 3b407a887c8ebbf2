"""Tests of core.model.training (losses, the fit loop) and core.model.evaluation on hand-built cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from core import schema as S
from core.data.batches import leave_last_out, training_batch
from core.data.sequences import build_sequences
from core.model.config import ModelConfig, TrainConfig
from core.model.epochs import standardize
from core.model.evaluation import evaluate_split, exclusion_mask
from core.model.fitted import Fitted
from core.model.losses import MultiTaskLoss, training_counts
from core.model.metrics import rank_of_targets
from core.model.network import BehaviorModel
from core.model.protocol import Protocol, RatingScale
from core.model.training import Hooks, fit, make_optimizer

T0 = 1_700_000_000
CPU = torch.device("cpu")


def _frame(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=[S.USER_ID, S.ITEM_ID, "_s", S.BEHAVIOR, S.VALUE])
    frame[S.TIMESTAMP] = pd.to_datetime(frame.pop("_s"), unit="s")
    return frame


@pytest.fixture(scope="module")
def cyclic():
    """12 users walking a cycle of 8 items (next item = this item + 1), every third event rated."""
    rows = []
    for u in range(12):
        for k in range(7):
            rows.append(
                (
                    f"u{u:02d}",
                    f"i{(u + k) % 8}",
                    T0 + 600 * k + u,
                    "rate" if k % 3 == 2 else "view",
                    float(1 + (u + k) % 5) if k % 3 == 2 else np.nan,
                )
            )
    return build_sequences(_frame(rows), item_ids=[f"i{k}" for k in range(8)])


def _model(data, seed: int = 0, **kw) -> BehaviorModel:
    torch.manual_seed(seed)
    cfg = dict(
        n_items=data.n_items,
        n_behaviors=len(data.behaviors),
        text_dim=4,
        d_model=16,
        n_heads=2,
        n_layers=1,
        max_len=8,
        dropout=0.0,
        n_experts=2,
        expert_dim=8,
        use_repeat=False,  # these tests check the evaluation's arithmetic on plain logits
    )
    cfg.update(kw)
    text = torch.randn(data.n_items + 1, 4)
    text[0] = 0
    return BehaviorModel(ModelConfig(**cfg), text)


# --- losses ---------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["softmax", "bce", "gbce", "sampled_softmax"])
@pytest.mark.parametrize("weights", [[1.0, 0.5], "uncertainty"])
def test_a_few_steps_reduce_the_loss(cyclic, loss: str, weights) -> None:
    split = leave_last_out(cyclic)
    users = np.arange(cyclic.n_users)
    batch = training_batch(cyclic, users, split.train_end, max_len=8)
    scale = standardize(cyclic, split)
    model = _model(cyclic)
    cfg = TrainConfig(lr=0.02, loss=loss, n_negatives=6, loss_weights=weights)
    loss_fn = MultiTaskLoss(cfg, cyclic.n_items, scale)
    loss_fn.set_popularity(training_counts(cyclic, split))  # what the sampled softmax draws by
    opt = make_optimizer(model, loss_fn, cfg)
    if weights == "uncertainty":
        assert any(p is loss_fn.log_vars for g in opt.param_groups for p in g["params"])
    model.train()
    totals, engagement, rating = [], [], []
    torch.manual_seed(0)
    for _ in range(30):
        parts = loss_fn(model, batch, None)
        opt.zero_grad()
        parts.total.backward()
        opt.step()
        totals.append(parts.total.item())
        engagement.append(parts.engagement.item())
        rating.append(parts.rating.item())
    assert all(math.isfinite(x) for x in totals)
    assert np.mean(totals[-3:]) < np.mean(totals[:3]) - 0.1
    assert np.mean(engagement[-3:]) < 0.8 * np.mean(engagement[:3])
    assert np.mean(rating[-3:]) < np.mean(rating[:3])


def test_loss_combination_golden(cyclic) -> None:
    split = leave_last_out(cyclic)
    users = np.arange(cyclic.n_users)
    batch = training_batch(cyclic, users, split.train_end, max_len=8)
    model = _model(cyclic).eval()
    fixed = MultiTaskLoss(TrainConfig(loss_weights=[2.0, 0.25]), cyclic.n_items)(model, batch, None)
    assert fixed.total.item() == pytest.approx(2.0 * fixed.engagement.item() + 0.25 * fixed.rating.item(), rel=1e-5)
    learned_fn = MultiTaskLoss(TrainConfig(loss_weights="uncertainty"), cyclic.n_items)
    with torch.no_grad():
        learned_fn.log_vars.copy_(torch.tensor([0.5, -1.0]))
    learned = learned_fn(model, batch, None)
    expected = math.exp(-0.5) * learned.engagement.item() + math.exp(1.0) * learned.rating.item() - 0.5
    assert learned.total.item() == pytest.approx(expected, rel=1e-5)
    # the softmax engagement loss is the mean cross-entropy of the next item over items 1..N
    with torch.no_grad():
        task_e, _ = model(batch)
        has = batch.target_item > 0
        logits = model.engagement_logits(task_e[has])[:, 1:]
        ce = torch.nn.functional.cross_entropy(logits, batch.target_item[has] - 1)
    assert fixed.engagement.item() == pytest.approx(ce.item(), rel=1e-5)


def test_the_softmax_loss_in_chunks_equals_the_whole_and_so_do_its_gradients(cyclic, monkeypatch) -> None:
    import core.model.losses as losses

    split = leave_last_out(cyclic)
    batch = training_batch(cyclic, np.arange(cyclic.n_users), split.train_end, max_len=8)
    model = _model(cyclic).eval()
    runs = []
    for cells in (losses._LOGIT_CELLS, 3 * (cyclic.n_items + 1)):  # one chunk; chunks of 3 positions
        monkeypatch.setattr(losses, "_LOGIT_CELLS", cells)
        model.zero_grad()
        parts = MultiTaskLoss(TrainConfig(loss_weights=[1.0, 0.0]), cyclic.n_items)(model, batch, None)
        parts.total.backward()
        runs.append(
            (parts.engagement.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        )
    assert runs[0][0] == pytest.approx(runs[1][0], rel=1e-6)
    for name, grad in runs[0][1].items():
        torch.testing.assert_close(grad, runs[1][1][name], rtol=1e-4, atol=1e-6, msg=name)


def test_rating_loss_is_zero_without_values(cyclic) -> None:
    split = leave_last_out(cyclic)
    batch = training_batch(cyclic, np.arange(cyclic.n_users), split.train_end, max_len=8)
    batch.target_value = torch.full_like(batch.target_value, float("nan"))
    parts = MultiTaskLoss(TrainConfig(), cyclic.n_items)(_model(cyclic), batch, None)
    assert parts.rating.item() == 0.0 and math.isfinite(parts.total.item())


def test_standardize_uses_training_values_only(cyclic) -> None:
    split = leave_last_out(cyclic)
    keep = np.concatenate([np.arange(cyclic.offsets[u], split.train_end[u]) for u in range(cyclic.n_users)])
    vals = cyclic.value[keep]
    vals = vals[~np.isnan(vals)]
    scale = standardize(cyclic, split)
    assert scale.mean == pytest.approx(vals.mean(), rel=1e-6)
    assert scale.std == pytest.approx(vals.std(), rel=1e-6)
    assert scale.restore(np.array([0.0, 1.0]))[1] == pytest.approx(scale.mean + scale.std)


# --- the fit loop ------------------------------------------------------------------------


def _fit(data, cfg: TrainConfig, **kw):
    split = leave_last_out(data)
    model = _model(data)
    scale = standardize(data, split)
    state = fit(Fitted(model, data, split, Protocol(exclude_seen=False), scale, CPU), cfg, hooks=Hooks(**kw))
    return model, state


def test_fit_improves_on_a_learnable_cycle(cyclic) -> None:
    events: list[dict] = []
    _, state = _fit(
        cyclic, TrainConfig(epochs=3, lr=0.02, batch_size=5, patience=10, event_dropout=0.0), progress=events.append
    )
    assert [r["epoch"] for r in state.history] == [1, 2, 3]
    assert state.history[-1]["loss"] < state.history[0]["loss"]
    for record in state.history:
        assert {"loss", "loss_engagement", "loss_rating", "valid_NDCG@10", "valid_HR@10", "seconds"} <= set(record)
    steps = [e for e in events if e["event"] == "step"]
    assert len(steps) == 3 * 3 and steps[0]["steps"] == 3  # ceil(12 / 5) steps per epoch
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1, 2, 3]
    assert state.best_state is not None and not state.cancelled
    assert state.best_epoch == max(state.history, key=lambda r: r["valid_NDCG@10"])["epoch"]


@pytest.mark.parametrize("patience", [1, 3])
def test_early_stopping_when_validation_does_not_improve(cyclic, patience: int) -> None:
    # lr=0: the model never changes, so the validation score never improves after epoch 1
    model, state = _fit(cyclic, TrainConfig(epochs=20, lr=0.0, patience=patience))
    assert len(state.history) == patience + 1
    assert state.best_epoch == 1
    scores = {r["valid_NDCG@10"] for r in state.history}
    assert len(scores) == 1


def test_on_epoch_callback_sees_every_epoch(cyclic) -> None:
    seen: list[tuple[int, int]] = []
    _fit(cyclic, TrainConfig(epochs=2, patience=10), on_epoch=lambda st, ep: seen.append((ep, len(st.history))))
    assert seen == [(1, 1), (2, 2)]


def test_cancel_hook_stops_training(cyclic) -> None:
    calls = {"n": 0}

    def cancel_after_four() -> bool:
        calls["n"] += 1
        return calls["n"] > 4

    # batch_size 4 -> 3 steps per epoch: epoch 1 completes, epoch 2 is cancelled at its second step
    model, state = _fit(cyclic, TrainConfig(epochs=10, batch_size=4, patience=10), cancel=cancel_after_four)
    assert state.cancelled is True
    assert len(state.history) == 1 and calls["n"] == 5
    _, immediate = _fit(cyclic, TrainConfig(epochs=10), cancel=lambda: True)
    assert immediate.cancelled is True and immediate.history == [] and immediate.best_state is None


def test_training_inputs_use_the_same_value_buckets_as_evaluation(cyclic, monkeypatch) -> None:
    """Values fed to the model as inputs must not be standardized during training only."""
    seen: dict[bool, set[int]] = {True: set(), False: set()}
    original = BehaviorModel.tokens

    def spy(self, batch):
        seen[self.training].update(batch.value[batch.mask].unique().tolist())
        return original(self, batch)

    monkeypatch.setattr(BehaviorModel, "tokens", spy)
    _fit(cyclic, TrainConfig(epochs=1, event_dropout=0.0))
    assert seen[True] and seen[False]
    assert seen[True] <= seen[False] | {0}


# --- evaluation on a hand-built case ---------------------------------------------------------

N = 12  # items i01..i12; item index k has engagement bias 12 - k: item 1 ranks first, item 12 last


@pytest.fixture(scope="module")
def handbuilt():
    rows = [
        ("a", "i01", T0 + 1, "view", np.nan),
        ("a", "i02", T0 + 2, "view", 2.0),
        ("a", "i03", T0 + 3, "view", 4.0),
        ("b", "i05", T0 + 1, "view", np.nan),
        ("b", "i12", T0 + 2, "view", np.nan),
        ("b", "i11", T0 + 3, "view", np.nan),
        ("c", "i04", T0 + 1, "view", np.nan),
        ("c", "i04", T0 + 2, "view", 3.0),
        ("c", "i04", T0 + 3, "view", 2.0),
        ("d", "i06", T0 + 1, "view", np.nan),
        ("d", "i07", T0 + 2, "view", np.nan),  # too short: not evaluated
    ]
    data = build_sequences(_frame(rows), item_ids=[f"i{k:02d}" for k in range(1, N + 1)])
    model = _model(data, dropout=0.1).eval()
    with torch.no_grad():
        for p in model.engagement.parameters():
            p.zero_()  # task state contributes nothing: logits = item bias
        model.engagement.item_bias.weight[:, 0] = torch.tensor([0.0] + [float(N - k) for k in range(1, N + 1)])
        for p in model.rating.parameters():
            p.zero_()  # rating = item bias (standardized)
        model.rating.item_bias.weight[3, 0] = 0.5  # item 3 -> 3 + 2 * 0.5 = 4.0
        model.rating.item_bias.weight[4, 0] = -1.0  # item 4 -> 3 - 2 = 1.0
        model.rating.item_bias.weight[12, 0] = 1.0  # item 12 -> 5.0
    return data, model, RatingScale(mean=3.0, std=2.0)


def _ranking(ranks: list[int]) -> dict[str, float]:
    r = np.array(ranks)
    return {
        "HR@10": float(np.mean(r < 10)),
        "NDCG@10": float(np.mean(np.where(r < 10, 1 / np.log2(r + 2), 0))),
        "MRR@10": float(np.mean(np.where(r < 10, 1 / (r + 1), 0))),
    }


def test_evaluate_split_golden_earlier_items_kept(handbuilt) -> None:
    data, model, scale = handbuilt
    split = leave_last_out(data)
    np.testing.assert_array_equal(split.users, [0, 1, 2])
    out = evaluate_split(Fitted(model, data, split, Protocol(exclude_seen=False), scale, CPU), "test")
    # test targets: a -> item 3 (rank 2), b -> item 11 (rank 10: a miss), c -> item 4 (rank 3)
    for k, v in _ranking([2, 10, 3]).items():
        assert out[k] == pytest.approx(v), k
    assert out["AUC"] == pytest.approx(np.mean([1 - 2 / 11, 1 - 10 / 11, 1 - 3 / 11]))
    # rated targets: a (4.0, predicted 4.0) and c (2.0, predicted 1.0)
    assert out["RMSE"] == pytest.approx(math.sqrt(0.5), rel=1e-5)
    assert out["MAE"] == pytest.approx(0.5, rel=1e-5)
    assert out["users"] == 3
    # every user gets the same top 10 (items 1..10)
    assert out["coverage@10"] == pytest.approx(10 / N)


def test_evaluate_split_golden_earlier_items_excluded(handbuilt) -> None:
    data, model, scale = handbuilt
    split = leave_last_out(data)
    out = evaluate_split(Fitted(model, data, split, Protocol(exclude_seen=True), scale, CPU), "test")
    # a: items 1, 2 removed -> rank 0; b: items 5, 12 removed -> rank 9; c: the target item 4 was seen
    # earlier, so it is excluded like any earlier item: a miss
    for k, v in _ranking([0, 9, N + 1]).items():
        assert out[k] == pytest.approx(v), k
    assert out["AUC"] == pytest.approx(np.mean([1.0, 1 - 9 / 9, 0.0]))


def test_evaluate_split_golden_validation(handbuilt) -> None:
    data, model, scale = handbuilt
    split = leave_last_out(data)
    out = evaluate_split(Fitted(model, data, split, Protocol(exclude_seen=True), scale, CPU), "valid")
    # valid targets: a -> item 2 (item 1 removed: rank 0), b -> item 12 (item 5 removed: rank 10),
    # c -> item 4, seen before: a miss
    for k, v in _ranking([0, 10, N + 1]).items():
        assert out[k] == pytest.approx(v), k
    # rated valid targets: a (2.0, item 2 predicted 3.0), c (3.0, item 4 predicted 1.0)
    assert out["RMSE"] == pytest.approx(math.sqrt((1 + 4) / 2), rel=1e-5)
    assert out["MAE"] == pytest.approx(1.5, rel=1e-5)


def test_evaluate_split_without_rated_targets_gives_nan_rating_metrics(handbuilt) -> None:
    data, model, scale = handbuilt
    split = leave_last_out(data)
    only_b = type(split)(None, split.users[1:2], split.valid_pos[1:2], split.test_pos[1:2], split.train_end)
    out = evaluate_split(Fitted(model, data, only_b, Protocol(exclude_seen=False), scale, CPU), "test")
    assert math.isnan(out["RMSE"]) and math.isnan(out["MAE"])
    assert out["HR@10"] == 0.0 and out["users"] == 1


def test_exclusion_mask_excludes_an_earlier_seen_target_too(handbuilt) -> None:
    data, _, _ = handbuilt
    split = leave_last_out(data)
    mask = exclusion_mask(data, split.users, split.test_pos)
    assert mask.shape == (3, N + 1) and mask[:, 0].all()
    assert sorted(np.flatnonzero(mask[0])) == [0, 1, 2]
    assert sorted(np.flatnonzero(mask[1])) == [0, 5, 12]
    assert sorted(np.flatnonzero(mask[2])) == [0, 4]  # item 4 is the target, but it was seen: excluded


def test_candidates_never_depend_on_the_answer() -> None:
    """The same history with two different targets (one seen before, one new) gets the same candidate set,
    and the seen target is a miss while the new one is ranked."""
    history = [("u", "i01", T0 + 1, "view", np.nan), ("u", "i02", T0 + 2, "cart", np.nan)]
    items = [f"i{k:02d}" for k in range(1, 6)]
    masks, ranks = [], []
    for target in ("i02", "i04"):  # a purchase of the carted item; a purchase of a new one
        rows = [*history, ("u", target, T0 + 3, "purchase", np.nan)]
        data = build_sequences(_frame(rows), item_ids=items)
        end = np.array([data.offsets[1] - 1])
        mask = exclusion_mask(data, np.array([0]), end)
        masks.append(mask)
        scores = np.zeros((1, len(items) + 1))
        ranks.append(int(rank_of_targets(scores, data.item[end], mask)[0]))
    np.testing.assert_array_equal(masks[0], masks[1])
    assert ranks[0] == len(items) + 1 and ranks[1] < 10


def test_protocol_labels() -> None:
    assert Protocol(exclude_seen=True).name == "full"
    assert "earlier items of any behavior excluded" in Protocol(exclude_seen=True).label
    assert "stand-in time" in Protocol(exclude_seen=True).label
    label = Protocol(exclude_seen=False, target_behavior="purchase", request_time="actual").label
    assert "earlier items kept" in label and "last purchase" in label
    assert "time-aware: target time known" in label


def _bias_only_model(data) -> BehaviorModel:
    """Engagement logit of item k = N - k, whatever the history (item 1 first)."""
    model = _model(data).eval()
    n = data.n_items
    with torch.no_grad():
        for p in model.engagement.parameters():
            p.zero_()
        model.engagement.item_bias.weight[:, 0] = torch.tensor([0.0] + [float(n - k) for k in range(1, n + 1)])
    return model


def test_sampled_protocol_ranks_among_the_negatives(handbuilt) -> None:
    data, model, scale = handbuilt
    split = leave_last_out(data)
    out = evaluate_split(Fitted(model, data, split, Protocol(exclude_seen=False, negatives=3), scale, CPU), "test")
    assert out["HR@10"] == 1.0  # 4 candidates: every target is in the top 10
    assert 0.0 <= out["AUC"] <= 1.0 and out["users"] == 3


def test_coverage_counts_only_candidates() -> None:
    # 11 items; the user saw the four lowest-ranked ones... and item 1 (the validation target)
    rows = [("x", f"i{k:02d}", T0 + t, "view", np.nan) for t, k in enumerate([8, 9, 10, 11, 1, 2])]
    data = build_sequences(_frame(rows), item_ids=[f"i{k:02d}" for k in range(1, 12)])
    model = _bias_only_model(data)
    split = leave_last_out(data)
    out = evaluate_split(Fitted(model, data, split, Protocol(exclude_seen=True), RatingScale(), CPU), "test")
    # candidates: items 2..7 (8-11 and 1 were seen; 2 is the target) -> 6 of 11 items can be recommended
    assert out["HR@10"] == 1.0
    assert out["coverage@10"] == pytest.approx(6 / 11)


# -- early stopping that tells a gain from noise ------------------------------------------------------------------
def test_stall_margin_is_one_standard_error_of_the_paired_gains_by_hand() -> None:
    from core.model.epochs import Stall

    stall = Stall()
    first = np.array([1.0, 0.0, 0.5, 0.5])
    stall.see(1, 0.5, first, "auto")  # the first epoch always becomes the epoch to beat
    assert (stall.epoch, stall.score) == (1, 0.5)
    second = np.array([1.0, 0.5, 0.5, 0.5])  # differences 0, .5, 0, 0: mean .125, sd .25, SE .125
    assert stall.margin(second, "auto") == pytest.approx(0.25 / 2)
    stall.see(2, 0.625, second, "auto")  # a gain of exactly one standard error is not more than it
    assert stall.epoch == 1
    third = np.array([1.0, 0.5, 1.0, 1.0])  # differences 0, .5, .5, .5: mean .375, SE .125
    stall.see(3, 0.875, third, "auto")
    assert (stall.epoch, stall.score) == (3, 0.875)
    assert stall.margin(third, 0.0) == 0.0 and stall.margin(third, 0.02) == 0.02
    assert Stall(epoch=2, score=0.5).margin(third, "auto") == 0.0  # no gains kept (a resumed run): any rise


def test_patience_counts_from_the_last_real_gain_not_from_noise(cyclic, monkeypatch) -> None:
    """Validation wanders by less than its standard error after the first epoch: with min_improvement "auto"
    training stops ``patience`` epochs after it (the best epoch is still the highest); with the default, any
    rise, the wandering keeps it going."""
    import core.model.training as training

    wander = iter([0.50, 0.51, 0.50, 0.52, 0.51, 0.53, 0.52, 0.54, 0.53, 0.55] * 2)
    rng = np.random.default_rng(0)

    def noisy_validation(fitted, which, per_user=False):
        score = next(wander)
        gains = np.clip(score + rng.normal(0, 0.4, 200), 0, 1)  # 200 users: SE of paired gains ~0.04
        gains += score - gains.mean()
        return {"NDCG@10": score, "HR@10": score, "per_user_NDCG@10": gains}

    monkeypatch.setattr(training, "evaluate_split", noisy_validation)
    _, state = _fit(cyclic, TrainConfig(epochs=10, patience=3, min_improvement="auto"))
    assert [r["epoch"] for r in state.history] == [1, 2, 3, 4]
    assert state.best_epoch == 4 and state.stall.epoch == 1
    assert "per_user_NDCG@10" not in state.history[0]
    wander = iter([0.50, 0.51, 0.50, 0.52, 0.51, 0.53, 0.52, 0.54, 0.53, 0.55])
    _, state = _fit(cyclic, TrainConfig(epochs=10, patience=3))  # the default: any rise
    assert len(state.history) == 10 and state.best_epoch == 10


@pytest.mark.parametrize("bad", ["fast", -0.1, True, None, float("nan")])
def test_min_improvement_setting_is_checked(bad) -> None:
    from core.errors import DataError
    from core.model.config import check_settings

    with pytest.raises(DataError, match="min_improvement"):
        check_settings({"train": {"min_improvement": bad}})
