"""core.explain.influence (report, swap, ablation) and core.explain.counterfactual.

Exact values on hand-built tables, toy scorers and toy score functions; consistency
checks on a tiny trained model. The planted truth is in ``test_planted_order.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scorer_support import ToyTokens  # tests/explain/scorer_support.py
from tiny_support import TINY_MODEL  # tests/tiny_support.py

from core import schema as S
from core.data import synth
from core.data.batches import leave_last_out
from core.data.sequences import build_sequences
from core.errors import DataError, NotFoundError
from core.explain.counterfactual import counterfactual_set, search
from core.explain.explanation import EventAttribution, Explanation
from core.explain.influence.ablation import ablate, behavior_ablation
from core.explain.influence.estimands import behavior_totals, summarize
from core.explain.influence.report import InfluenceSettings, global_influence
from core.explain.influence.swap import score_rows, swap_rows, typical_value_buckets
from core.explain.influence.table import AttributionTable, ig_matrix, loo_matrix, top_items
from core.explain.scorer import user_history
from core.model.recommender import Recommender

DAY = 86400


# -- aggregation ---------------------------------------------------------------------------------------------------
def _explanation(behaviors: list[str], values: list[float]) -> Explanation:
    events = [
        EventAttribution(i, b, f"I{i}", None, None, "2026-01-01T00:00:00Z", None, v)
        for i, (b, v) in enumerate(zip(behaviors, values))
    ]
    return Explanation("u", "i", "engagement", "loo", events, 1.0, 0.0, None, 1.0)


def test_behavior_totals_sum_one_explanation_by_behavior() -> None:
    exp = _explanation(["view", "purchase", "view", "cart"], [0.5, 2.0, -0.25, 1.0])
    assert behavior_totals(exp) == {"purchase": 2.0, "cart": 1.0, "view": 0.25}


def _toy_data() -> tuple:
    """User A: view I1 (10 d ago), purchase I2 (2 d), view I1 (2 h), cart I3 (newest); user B: view I2 (30 min),
    purchase I3 (newest). Behavior codes: view 1, cart 2, purchase 3."""
    t, s = pd.Timestamp("2026-03-20", tz="UTC"), pd.Timestamp("2026-03-10", tz="UTC")
    rows = [
        ("A", "I1", t - pd.Timedelta(days=10), "view"),
        ("A", "I2", t - pd.Timedelta(days=2), "purchase"),
        ("A", "I1", t - pd.Timedelta(hours=2), "view"),
        ("A", "I3", t, "cart"),
        ("B", "I2", s - pd.Timedelta(minutes=30), "view"),
        ("B", "I3", s, "purchase"),
    ]
    events = pd.DataFrame(rows, columns=[S.USER_ID, S.ITEM_ID, S.TIMESTAMP, S.BEHAVIOR])
    data = build_sequences(events, item_ids=["I1", "I2", "I3", "I4"])
    table = AttributionTable(
        user=np.array([0] * 8 + [1] * 2),
        item=np.array([4] * 4 + [1] * 4 + [1] * 2),
        event=np.array([0, 1, 2, 3] * 2 + [4, 5]),
        attribution=np.array([0.5, 2.0, -0.25, 1.0, -0.5, 1.0, 0.25, 0.0, -1.0, 3.0]),
    )
    return data, table


def test_summary_by_behavior_time_gap_and_category_by_hand() -> None:
    data, table = _toy_data()
    assert data.behaviors == ["", "view", "cart", "purchase"]
    out = summarize(table, data, {"I1": "shoes", "I2": "bags", "I3": None}, n_boot=50)
    assert out["per_behavior_share"] == pytest.approx({"view": 2.5 / 9.5, "cart": 1 / 9.5, "purchase": 6 / 9.5})
    assert sum(out["per_behavior_share"].values()) == pytest.approx(1.0)
    assert out["per_event"] == pytest.approx({"view": 0.5, "cart": 0.5, "purchase": 2.0})
    assert out["per_behavior_signed"] == pytest.approx({"view": -0.2, "cart": 0.5, "purchase": 2.0})
    assert out["events"] == {"view": 5, "cart": 2, "purchase": 3}
    gaps = out["by_time_gap"]
    assert list(gaps) == ["<1h", "1h-1d", "1-7d", ">7d"]
    assert {g: gaps[g]["rows"] for g in gaps} == {"<1h": 4, "1h-1d": 2, "1-7d": 2, ">7d": 2}
    assert [gaps[g]["share"] for g in gaps] == pytest.approx([5 / 9.5, 0.5 / 9.5, 3 / 9.5, 1 / 9.5])
    assert [gaps[g]["signed"] for g in gaps] == pytest.approx([0.75, 0.0, 1.5, 0.0])
    cats = out["by_category"]
    expected = {"shoes": (1.5 / 9.5, 1.5 / 4, 0.0), "bags": (4 / 9.5, 4 / 3, 2 / 3), "(none)": (4 / 9.5, 4 / 3, 4 / 3)}
    assert set(cats) == set(expected)
    for c, (share, per_event, signed) in expected.items():
        assert (cats[c]["share"], cats[c]["per_event"], cats[c]["signed"]) == pytest.approx((share, per_event, signed))
    for stat, per in out["intervals"].items():
        for b, (lo, hi) in per.items():
            assert lo <= hi, (stat, b)


def test_bootstrap_interval_of_a_single_user_is_the_point_value() -> None:
    data, table = _toy_data()
    mine = table.user == 0
    one = AttributionTable(table.user[mine], table.item[mine], table.event[mine], table.attribution[mine])
    out = summarize(one, data, n_boot=30, seed=3)
    for stat in ("per_behavior_share", "per_event", "per_behavior_signed"):
        for b, (lo, hi) in out["intervals"][stat].items():
            assert lo == pytest.approx(out[stat][b]) and hi == pytest.approx(out[stat][b])


# -- toy scorers: LOO and IG per recommended item ------------------------------------------------------------------
class MultiLinear(ToyTokens):
    """f_k(tokens) = Σ_{i,d} W_kid · t_id: IG and leave-one-out both equal Σ_d W_kid (x_id − b_id)."""

    def __init__(self, n: int = 6, d: int = 4, k: int = 3) -> None:
        g = torch.Generator().manual_seed(0)
        self.x, self.b, self.w = (
            torch.randn(1, n, d, generator=g),
            torch.randn(1, n, d, generator=g),
            torch.randn(k, n, d, generator=g),
        )

    def score_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.einsum("snd,knd->sk", tokens, self.w)


def test_loo_and_ig_matrices_are_exact_on_a_linear_toy() -> None:
    toy = MultiLinear()
    expected = ((toy.x - toy.b) * toy.w).sum(-1).double().numpy()  # [K, n]
    np.testing.assert_allclose(loo_matrix(toy), expected, atol=1e-5)
    values, delta = ig_matrix(toy, steps=4)
    np.testing.assert_allclose(values, expected, atol=1e-5)
    assert np.abs(delta).max() < 1e-4


# -- ablation on a hand-checkable case -----------------------------------------------------------------------------
def test_ablation_deltas_by_hand() -> None:
    """Toy model: score_j = number of kept history events on j (ties to the lower index), predicted value =
    number of kept history events. Top-1 hits, with the held-out targets U1 -> I1 and U2 -> I2:
    all events 0/2, without views 2/2, without purchases 0/2."""
    t0 = pd.Timestamp("2026-03-02", tz="UTC")
    seqs = {
        "U1": [("I1", "purchase"), ("I2", "view"), ("I2", "view"), ("I3", "view"), ("I1", "view")],
        "U2": [("I3", "view"), ("I2", "purchase"), ("I1", "view"), ("I2", "view")],
    }
    rows = [(u, i, t0 + pd.Timedelta(hours=h), b) for u, seq in seqs.items() for h, (i, b) in enumerate(seq)]
    data = build_sequences(pd.DataFrame(rows, columns=[S.USER_ID, S.ITEM_ID, S.TIMESTAMP, S.BEHAVIOR]))
    split = leave_last_out(data)
    truth = np.array([4.0, 3.0])

    def score_fn(code: int | None) -> tuple[np.ndarray, np.ndarray, int]:
        scores, predicted, removed = np.zeros((2, data.n_items + 1)), np.zeros(2), 0
        for r, (u, end) in enumerate(zip(split.users, split.test_pos)):
            sl = slice(int(data.offsets[u]), int(end))
            keep = data.behavior[sl] != code
            np.add.at(scores[r], data.item[sl][keep], 1.0)
            predicted[r], removed = keep.sum(), removed + int((~keep).sum())
        scores[:, 0] = -np.inf
        return scores, predicted, removed

    baseline, metrics, deltas = ablate(score_fn, data.behaviors[1:], data.item[split.test_pos], truth, None, k=1)
    assert baseline == pytest.approx({"HR@1": 0.0, "NDCG@1": 0.0, "RMSE": 0.0})
    assert deltas["view"] == pytest.approx({"HR@1": 1.0, "NDCG@1": 1.0, "RMSE": np.sqrt(6.5), "removed_events": 5})
    assert deltas["purchase"] == pytest.approx({"HR@1": 0.0, "NDCG@1": 0.0, "RMSE": 1.0, "removed_events": 2})
    assert metrics["view"]["HR@1"] == 1.0


# -- counterfactual search on a toy model --------------------------------------------------------------------------
def _toy_logits(removed: torch.Tensor) -> torch.Tensor:
    """Item 1 (the explained one): 5·[e0 or e1 kept] + 4·[e2 kept] + 0.5·[e3 kept]; item 2 constant 2; 0 = padding.
    Leave-one-out ranks e2 (4) > e3 (0.5) > e0 = e1 (0), so the greedy prefix is {e2, e3, e0, e1}; pruning drops
    e3, leaving {e0, e1, e2}: the smallest set (without e0, e1 and e2 item 1 scores ≥ 4.5 > 2)."""
    kept = (~removed).double()
    own = 5 * torch.maximum(kept[:, 0], kept[:, 1]) + 4 * kept[:, 2] + 0.5 * kept[:, 3]
    return torch.stack([torch.full_like(own, -1e9), own, torch.full_like(own, 2.0)], 1)


def test_counterfactual_search_is_pruned_to_the_minimal_set_and_verified() -> None:
    eligible = torch.tensor([False, True, True])
    res = search(_toy_logits, 4, 1, eligible, k=1, max_removals=4)
    assert res.found and res.positions == [0, 1, 2]
    assert (res.rank_before, res.rank_after) == (1, 2)
    np.testing.assert_allclose(res.attributions, [0.0, 0.0, 4.0, 0.5])
    removed = torch.zeros(1, 4, dtype=torch.bool)
    removed[0, res.positions] = True
    assert float(_toy_logits(removed)[0, 1]) < 2.0  # re-scored: out of the top 1
    for p in res.positions:  # putting back any single event returns the item to the top 1
        back = removed.clone()
        back[0, p] = False
        assert float(_toy_logits(back)[0, 1]) > 2.0


def test_counterfactual_search_says_when_nothing_is_found() -> None:
    eligible = torch.tensor([False, True, True])
    res = search(_toy_logits, 4, 1, eligible, k=1, max_removals=2)
    assert not res.found and res.positions == [] and res.rank_after == 1
    assert not search(_toy_logits, 4, 2, eligible, k=1).found  # item 2 is not in the top 1 at all


# -- a tiny trained model: consistency with the model and with core.explain ------------------------------------


@pytest.fixture(scope="module")
def fitted(tiny_bert_dir) -> Recommender:
    """A tiny model (four epochs) on generated data, with the item categories attached."""
    data = synth.generate(synth.SynthConfig.small(3, n_users=40, n_items=30, target_events=1500))
    rec = Recommender(
        encoder=str(tiny_bert_dir),
        device="cpu",
        model=dict(TINY_MODEL),
        train={"epochs": 4, "batch_size": 16, "seed": 0, "lr": 5e-3, "threads": 1},
    )
    rec.fit(data.events, data.items)
    rec.categories = dict(zip(data.items[S.ITEM_ID], data.items[S.ITEM_CATEGORY]))  # for the tests only
    return rec


def _logits(rec: Recommender, row: int, removed: torch.Tensor) -> torch.Tensor:
    """Independent re-scoring: engagement logits [S, N+1] of user row ``row`` with events ``removed`` [S, n]."""
    model = rec.model_
    batch = user_history(rec.data_, row, model.cfg.max_len)
    rows = type(batch)(
        **{k: v.expand(removed.shape[0], -1) for k, v in batch.__dict__.items() if isinstance(v, torch.Tensor)}
    )
    with torch.no_grad():
        task_e, _ = model(rows, removed)
        return model.engagement_logits(task_e[:, -1]).float()


def test_top_items_are_the_recommendations(fitted: Recommender) -> None:
    data = fitted.data_
    rows = np.array([0, 3, 7])
    for row, items in zip(rows, top_items(fitted.model_, data, rows, 5, fitted.protocol_.exclude_seen, fitted.device_)):
        expected = list(fitted.recommend(str(data.users[row]), 5)[S.ITEM_ID])
        assert list(data.item_ids[items]) == expected


def test_loo_and_ig_tables_match_single_item_explanations(fitted: Recommender) -> None:
    """Column j of the batched (user, top-K) tables equals core.explain's explanation of item j."""
    from core.explain import explain
    from core.explain.ig import integrated_gradients
    from core.explain.influence.table import items_target
    from core.explain.scorer import HistoryScorer
    from core.explain.subject import subject_for

    data, model, row = fitted.data_, fitted.model_, 2
    user = str(data.users[row])
    items = top_items(model, data, np.array([row]), 3, fitted.protocol_.exclude_seen, fitted.device_)[0]
    scorer = HistoryScorer(model, user_history(data, row, model.cfg.max_len), items_target(model, items))
    loo, (ig, delta) = loo_matrix(scorer), ig_matrix(scorer, steps=16)
    for k, idx in enumerate(items):
        item = str(data.item_ids[idx])
        np.testing.assert_allclose(loo[k], explain(fitted, user, item, "loo", "engagement").attributions, atol=2e-5)
        single = integrated_gradients(subject_for(fitted, user, item, "engagement").scorer, steps=16, tolerance=None)
        np.testing.assert_allclose(ig[k], single.values, atol=2e-5)
        assert delta[k] == pytest.approx(single.delta, abs=2e-5)


def test_global_influence_report(fitted: Recommender) -> None:
    import json

    for method in ("loo", "ig", "swap"):
        report = global_influence(
            fitted,
            InfluenceSettings(12, method, k=5, seed=1, n_boot=30, min_age=0),
            categories=fitted.categories,
            ablation=False,
        )
        assert report.method == method and report.users == 12 and report.k == 5 and report.ablation is None
        assert "leave-last-out" in report.protocol and report.target == "engagement"
        assert sum(report.per_behavior_share.values()) == pytest.approx(1.0)
        assert set(report.per_event) <= set(fitted.data_.behaviors[1:])
        assert sum(v["share"] for v in report.by_time_gap.values()) == pytest.approx(1.0)
        assert sum(v["share"] for v in report.by_category.values()) == pytest.approx(1.0)
        assert all(v >= 0 for v in report.per_event.values())
        for stat in ("per_behavior_share", "per_event", "per_behavior_signed"):
            for b, (lo, hi) in report.intervals[stat].items():
                assert lo <= hi + 1e-12, (method, stat, b)
        json.dumps(report.to_dict(), allow_nan=False)
    again = global_influence(fitted, InfluenceSettings(12, "loo", k=5, seed=1, n_boot=30, min_age=0), ablation=False)
    assert (
        again.per_event
        == global_influence(
            fitted, InfluenceSettings(12, "loo", k=5, seed=1, n_boot=30, min_age=0), ablation=False
        ).per_event
    )
    ig = global_influence(fitted, InfluenceSettings(6, "ig", k=3, n_boot=10), ablation=False)
    assert ig.details["mean_relative_delta"] < 0.05


def test_model_weights_read_the_behavior_memory(fitted: Recommender) -> None:
    """model_weights is the memory's own weight of one event (w = softplus(8 (W_b + W_v))) at each age."""
    from core.cli.influence import _influence_text
    from core.data.sequences import gap_bucket
    from core.explain.influence.report import MEMORY_AGES
    from core.model.memory import GATE_SCALE

    report = global_influence(fitted, InfluenceSettings(5, "loo", k=3, n_boot=10), ablation=False)
    memory, data = fitted.model_.memory, fitted.data_
    buckets = typical_value_buckets(data)
    assert list(report.model_weights) == list(data.behaviors[1:])
    for code, behavior in enumerate(data.behaviors[1:], start=1):
        assert list(report.model_weights[behavior]) == [label for label, _ in MEMORY_AGES]
        for label, seconds in MEMORY_AGES:
            g = int(gap_bucket(np.array([seconds]))[0])
            logit = GATE_SCALE * (memory.behavior.weight[code, g] + memory.value.weight[buckets[code], g]).detach()
            assert report.model_weights[behavior][label] == pytest.approx(float(torch.nn.functional.softplus(logit)))
    assert "model weight of one" in _influence_text(report.to_dict())


def test_per_event_leaves_out_the_ongoing_session(fitted: Recommender) -> None:
    everything = global_influence(fitted, InfluenceSettings(10, "loo", k=3, n_boot=10, min_age=0), ablation=False)
    settled = global_influence(fitted, InfluenceSettings(10, "loo", k=3, n_boot=10, min_age=3600), ablation=False)
    assert settled.per_behavior_share == everything.per_behavior_share  # the share counts every event
    assert sum(settled.events_settled.values()) < sum(everything.events_settled.values())
    assert settled.events == everything.events == everything.events_settled


def test_swap_rows_set_each_behavior_then_keep_then_mask() -> None:
    from core.data.batches import Batch

    batch = Batch(
        item=torch.tensor([[5, 6, 7]]),
        behavior=torch.tensor([[1, 2, 1]]),
        value=torch.tensor([[0, 4, 0]]),
        ts=torch.tensor([[10, 20, 30]]),
        mask=torch.ones(1, 3, dtype=torch.bool),
    )
    rows, removed = swap_rows(batch, np.array([1]), np.array([0, 0, 6]))  # behaviors 1, 2; bucket 6 for behavior 2
    assert rows.behavior.tolist() == [[1, 1, 1], [1, 2, 1], [1, 2, 1], [1, 2, 1]]
    assert rows.value.tolist() == [[0, 0, 0], [0, 6, 0], [0, 4, 0], [0, 4, 0]]
    assert removed.tolist() == [[False] * 3, [False] * 3, [False] * 3, [False, True, False]]
    assert rows.item.tolist() == [[5, 6, 7]] * 4 and rows.ts.tolist() == [[10, 20, 30]] * 4


def test_swap_scores_match_the_model(fitted: Recommender) -> None:
    """score_rows on swap rows equals the log-softmax of the model's own forward pass on each modified history."""
    data, model = fitted.data_, fitted.model_
    batch = user_history(data, 4, model.cfg.max_len)
    buckets = typical_value_buckets(data)
    rows, removed = swap_rows(batch, np.array([batch.item.shape[1] - 3]), buckets)
    got = score_rows(model, rows, removed, "softmax")
    with torch.no_grad():
        task_e, _ = model(rows, removed)
        logits = model.engagement_logits(task_e[:, -1]).float()
        logits[:, 0] = float("-inf")
        expected = torch.log_softmax(logits, -1).double()
    torch.testing.assert_close(got[:, 1:], expected[:, 1:], atol=1e-5, rtol=1e-5)
    plain = torch.log_softmax(_logits(fitted, 4, torch.zeros(1, batch.item.shape[1], dtype=torch.bool))[:, 1:], -1)
    torch.testing.assert_close(got[-2, 1:].float(), plain[0], atol=1e-5, rtol=1e-5)  # the unmodified row


def test_ablation_baseline_is_the_models_evaluation(fitted: Recommender) -> None:
    result = behavior_ablation(fitted)
    evaluated = fitted.evaluate("test")
    for metric in ("HR@10", "NDCG@10", "RMSE"):
        assert result.baseline[metric] == pytest.approx(evaluated[metric], abs=1e-6)
    assert result.protocol == evaluated["label"] and result.users == evaluated["users"]
    data, split = fitted.data_, fitted.split_
    windows = [
        data.behavior[max(int(data.offsets[u]), int(e) - TINY_MODEL["max_len"]) : int(e)]
        for u, e in zip(split.users, split.test_pos)
    ]
    for code, behavior in enumerate(data.behaviors[1:], start=1):
        deltas, metrics = result.deltas[behavior], result.metrics[behavior]
        assert deltas["removed_events"] == sum(int((w == code).sum()) for w in windows)
        for metric in ("HR@10", "NDCG@10", "RMSE"):
            assert deltas[metric] == pytest.approx(metrics[metric] - result.baseline[metric])


def test_counterfactual_sets_are_verified_and_minimal(fitted: Recommender) -> None:
    data, k, found = fitted.data_, 3, 0
    for row in range(8):
        user = str(data.users[row])
        for item in fitted.recommend(user, k)[S.ITEM_ID]:
            res = counterfactual_set(fitted, user, item, k, max_removals=10)
            assert res.rank_before <= k and (res.found == res.verified)
            if not res.found:
                # the limit named: 10 removals, or every event of a shorter history
                assert "no counterfactual set found" in res.message
                assert f"up to {min(10, res.n_events)} of" in res.message
                continue
            found += 1
            n, idx = res.n_events, int(np.flatnonzero(data.item_ids == item)[0])
            removed = torch.zeros(1 + res.size, n, dtype=torch.bool)
            removed[:, [e["position"] for e in res.events]] = True
            for r, e in enumerate(res.events, start=1):
                removed[r, e["position"]] = False  # row r puts event r back
            logits = _logits(fitted, row, removed)
            ranks = (
                (logits[:, 1:] > logits[:, idx : idx + 1]).sum(1)
                + ((logits[:, 1:idx] == logits[:, idx : idx + 1]).sum(1))
                + 1
            )
            assert int(ranks[0]) > k and int(ranks[0]) == res.rank_after  # verified by re-scoring
            assert (ranks[1:] <= k).all()  # minimal: any single event put back restores the item
    assert found >= 1


def test_counterfactual_messages_and_errors(fitted: Recommender) -> None:
    user = str(fitted.data_.users[0])
    ranked = fitted.recommend(user, 30)[S.ITEM_ID]
    res = counterfactual_set(fitted, user, ranked.iloc[-1], k=2)
    assert not res.found and "not in this user's top 2" in res.message and res.events == []
    with pytest.raises(NotFoundError, match="nobody"):
        counterfactual_set(fitted, "nobody", ranked.iloc[0])
    with pytest.raises(DataError, match="max_removals"):
        counterfactual_set(fitted, user, ranked.iloc[0], max_removals=0)
    with pytest.raises(DataError, match="telepathy"):
        global_influence(fitted, InfluenceSettings(5, "telepathy"))
    with pytest.raises(DataError, match="users"):
        global_influence(fitted, InfluenceSettings(0))


def test_swap_real_rows_are_leave_one_out_and_sums_add_up(fitted: Recommender) -> None:
    """The unmodified rows of a swap are the leave-one-out attributions of the sampled events."""
    from core.explain.influence.swap import SwapSettings, user_swaps
    from core.explain.influence.table import items_target
    from core.explain.scorer import HistoryScorer

    data, model, row = fitted.data_, fitted.model_, 5
    buckets = typical_value_buckets(data)
    settings = SwapSettings(events_per_user=3, recent=10, similar=4, min_age=0)
    abs_total, total, pairs, table = user_swaps(
        model, data, row, np.array([1, 2]), np.random.default_rng(0), buckets, settings, "softmax"
    )
    assert len(np.unique(table.event)) == 3 and pairs == len(table.user)
    assert abs_total.shape == total.shape == (len(data.behaviors) - 1,) and (abs_total >= np.abs(total) - 1e-9).all()
    batch = user_history(data, row, model.cfg.max_len)
    first = int(data.offsets[row + 1]) - batch.item.shape[1]
    for event in np.unique(table.event):
        mine = table.event == event
        scorer = HistoryScorer(model, batch, items_target(model, table.item[mine]))
        np.testing.assert_allclose(table.attribution[mine], loo_matrix(scorer)[:, event - first], atol=1e-5)
        assert {1, 2} <= set(table.item[mine].tolist())
