"""core.explain: exactness on analytic toy models, and completeness / faithfulness on a tiny trained model.

Toy scorers implement ``EventScorer`` with a closed form, so IG, leave-one-out and SHAP
are checked against hand-computed values. The trained model (d_model 16, max_len 20,
a random 1-layer BERT as text encoder) learns a planted signal: each user's "key"
purchases predict their "partner" item.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tiny_support  # tests/tiny_support.py
import torch
from scorer_support import ToyTokens  # tests/explain/scorer_support.py
from tiny_support import save_tiny_bert  # tests/tiny_support.py

from core import schema as S
from core.errors import DataError, NotFittedError, NotFoundError
from core.explain import METHODS, Explanation, explain, explain_subject
from core.explain.faithfulness import aopc, deletion_curves, faithfulness, removal_masks
from core.explain.ig import DEFAULT_STEPS, MAX_STEPS, integrated_gradients
from core.explain.loo import leave_one_out
from core.explain.shapley import shapley_values
from core.explain.subject import Labels, Subject, subject_for
from core.model.evaluation import predicted_ratings, user_scores
from core.model.recommender import Recommender

TINY_MODEL = {**tiny_support.TINY_MODEL, "dropout": 0.0}
WORDS = ["red", "blue", "green", "gold", "gray", "pink"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "key", "partner", "noise", "item", *WORDS]
N_KEYS = 6


# -- toy scorers ---------------------------------------------------------------------------------
class LinearScorer(ToyTokens):
    """f(tokens) = Σ_{i,d} w_id · t_id + c: IG must equal Σ_d w_id (x_id − b_id) exactly."""

    def __init__(self, n: int = 7, d: int = 5, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x, self.b = torch.randn(1, n, d, generator=g), torch.randn(1, n, d, generator=g)
        self.w, self.c = torch.randn(n, d, generator=g), 0.3

    def score_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        return (tokens * self.w).sum((1, 2)) + self.c


class SetScorer:
    """v(Z) = Σ a_i z_i + β z_0 z_1 + γ z_2 z_3 z_4 over present events Z (removed = absent)."""

    def __init__(self, n: int, beta: float = 1.5, gamma: float = -0.9, seed: int = 1) -> None:
        self.a = np.random.default_rng(seed).normal(size=n)
        self.beta, self.gamma = beta, gamma

    @property
    def n_events(self) -> int:
        return len(self.a)

    def value(self, z: np.ndarray) -> np.ndarray:
        return z @ self.a + self.beta * z[:, 0] * z[:, 1] + self.gamma * z[:, 2] * z[:, 3] * z[:, 4]

    def score_removed(self, removed: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.value((~removed.numpy()).astype(np.float64)))

    def shapley(self) -> np.ndarray:
        out = self.a.copy()
        out[:2] += self.beta / 2
        out[2:5] += self.gamma / 3
        return out


def _toy_subject(scorer) -> Subject:
    rows = [
        {
            "position": i,
            "behavior": "view",
            "item": f"I{i}",
            "title": None,
            "item_text": None,
            "time": "2026-01-01T00:00:00Z",
            "value": None,
        }
        for i in range(scorer.n_events)
    ]
    return Subject(scorer, "u", "i", "engagement", rows)


def test_ig_equals_w_times_x_minus_b_on_a_linear_model() -> None:
    toy = LinearScorer()
    expected = ((toy.x - toy.b)[0] * toy.w).sum(-1).double().numpy()
    res = integrated_gradients(toy, steps=4, tolerance=None)
    np.testing.assert_allclose(res.values, expected, rtol=1e-5, atol=1e-5)
    assert abs(res.delta) < 1e-4
    exp = explain_subject(_toy_subject(toy), "ig", steps=4)  # the full code path, Explanation included
    np.testing.assert_allclose(exp.attributions, expected, rtol=1e-5, atol=1e-5)
    assert exp.score == pytest.approx(float(toy.score_tokens(toy.x)), abs=1e-5)
    assert exp.baseline_score == pytest.approx(float(toy.score_tokens(toy.b)), abs=1e-5)


def test_leave_one_out_is_exact_on_a_toy_model() -> None:
    toy = SetScorer(8)
    full = toy.value(np.ones((1, 8)))[0]
    expected = [full - toy.value(1 - np.eye(8)[i : i + 1])[0] for i in range(8)]
    np.testing.assert_allclose(leave_one_out(toy), expected, rtol=1e-12, atol=1e-12)
    lin = LinearScorer()
    exp = explain_subject(_toy_subject(lin), "loo")
    np.testing.assert_allclose(exp.attributions, ((lin.x - lin.b)[0] * lin.w).sum(-1).numpy(), atol=1e-5)
    assert exp.completeness_delta is None


def test_exact_shap_matches_shapley_values_and_sums_to_all_minus_none() -> None:
    toy = SetScorer(7)
    res = shapley_values(toy)
    assert res.exact
    np.testing.assert_allclose(res.values, toy.shapley(), atol=1e-9)
    gap = toy.value(np.ones((1, 7)))[0] - toy.value(np.zeros((1, 7)))[0]
    assert res.values.sum() == pytest.approx(gap, abs=1e-9) and abs(res.delta) < 1e-9


def test_sampled_shap_sums_to_all_minus_none_and_is_close() -> None:
    toy = SetScorer(20)
    res = shapley_values(toy, exact_max=12, max_evals=41 * 30, seed=0)
    assert not res.exact and res.evals <= 41 * 30 + 2
    gap = toy.value(np.ones((1, 20)))[0] - toy.value(np.zeros((1, 20)))[0]
    assert res.values.sum() == pytest.approx(gap, abs=1e-8)
    np.testing.assert_allclose(res.values[5:], toy.a[5:], atol=1e-9)  # additive players are exact
    np.testing.assert_allclose(res.values[:5], toy.shapley()[:5], atol=0.5)
    with pytest.raises(DataError, match="41"):
        shapley_values(toy, max_evals=10)


def test_deletion_curve_and_aopc_by_hand() -> None:
    toy = SetScorer(5, beta=0.0, gamma=0.0)
    toy.a = np.array([3.0, -1.0, 2.0, 0.5, 0.0])
    order = np.array([0, 2, 3, 1, 4])
    masks = removal_masks(order[None, :])
    assert (
        masks.tolist()[:3] == [[False] * 5, [True, False, False, False, False], [True, False, True, False, False]]
        and masks[-1].all()
    )
    curve = deletion_curves(toy, order)[0]
    np.testing.assert_allclose(curve, [4.5, 1.5, -0.5, -1.0, 0.0, 0.0])
    assert aopc(curve) == pytest.approx(np.mean(4.5 - curve))
    faith = faithfulness(toy, toy.a, n_random=4)
    assert faith.aopc > faith.aopc_random  # the true contributions order beats random orders
    assert faith.random_curve[0] == pytest.approx(4.5) and faith.random_curve[-1] == pytest.approx(0.0)


def test_explanation_to_dict_is_strict_json() -> None:
    exp = explain_subject(_toy_subject(LinearScorer()), "loo")
    exp.aopc_random = float("nan")
    exp.details["bad"] = [np.float32(np.inf), np.int64(3)]
    text = json.dumps(exp.to_dict(), allow_nan=False)
    out = json.loads(text)
    assert out["aopc_random"] is None and out["details"]["bad"] == [None, 3]
    assert {"events", "score", "baseline_score", "completeness_delta", "runtime_ms", "aopc", "aopc_random"} <= set(out)
    assert {"behavior", "attribution", "item", "time", "value", "position"} <= set(out["events"][0])


# -- a tiny trained model with a planted signal ------------------------------------------------------
def build_tiny_bert(folder: Path) -> Path:
    """A random 1-layer BERT (hidden 8) with a WordPiece tokenizer, saved offline."""
    return save_tiny_bert(folder, VOCAB, max_positions=64)


def planted_events(n_users: int = 96, length: int = 16, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Noise views, and pairs "purchase K{k}, then P{k}" (k random); user u's history ends with a purchase of
    K{u mod N_KEYS}, so the model should expect P{u mod N_KEYS} next, because of that one event."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        seq: list[tuple[str, str, float]] = []
        while len(seq) < length - 1:
            if rng.random() < 0.3:
                k = int(rng.integers(N_KEYS))
                seq += [(f"K{k}", "purchase", np.nan), (f"P{k}", "rate" if rng.random() < 0.5 else "view", 5.0)]
            else:
                seq.append(
                    (f"N{rng.integers(20):02d}", "rate" if rng.random() < 0.3 else "view", float(rng.integers(1, 3)))
                )
        seq = seq[: length - 1] + [(f"K{u % N_KEYS}", "purchase", np.nan)]
        rows += [(f"U{u:03d}", *event) for event in seq]
    events = pd.DataFrame(rows, columns=[S.USER_ID, S.ITEM_ID, S.BEHAVIOR, S.VALUE])
    events.loc[~events[S.BEHAVIOR].eq("rate"), S.VALUE] = np.nan
    start = pd.Timestamp("2026-03-02", tz="UTC")
    events[S.TIMESTAMP] = start + pd.to_timedelta(events.groupby(S.USER_ID).cumcount() * 3600, unit="s")
    ids = sorted(events[S.ITEM_ID].unique())
    items = pd.DataFrame(
        {S.ITEM_ID: ids, S.ITEM_TITLE: [f"title {i}" for i in ids], S.ITEM_TEXT: [_text(i) for i in ids]}
    )
    return events, items


def _text(item: str) -> str:
    if item[0] == "N":
        return "noise item"
    return ("key " if item[0] == "K" else "partner ") + WORDS[int(item[1:])]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Recommender:
    """A tiny model trained on the planted key -> partner signal."""
    bert = build_tiny_bert(tmp_path_factory.mktemp("enc") / "bert")
    events, items = planted_events()
    rec = Recommender(
        encoder=str(bert),
        device="cpu",
        model=dict(TINY_MODEL),
        train={
            "epochs": 40,
            "batch_size": 16,
            "seed": 0,
            "lr": 1e-2,
            "patience": 40,
            "event_dropout": 0.2,
            "threads": 1,
        },
    )
    return rec.fit(events, items)


def _users(rec: Recommender, count: int = 6) -> list[tuple[str, str]]:
    """(stored user, partner item) pairs, one per key."""
    return [(str(rec.data_.users[u]), f"P{u % N_KEYS}") for u in range(count)]


def test_the_planted_signal_was_learned(fitted: Recommender) -> None:
    hits = [item in set(fitted.recommend(user, k=3)[S.ITEM_ID]) for user, item in _users(fitted, 12)]
    assert np.mean(hits) >= 0.75


def test_scorer_matches_the_model_on_padded_batches(fitted: Recommender) -> None:
    data, model = fitted.data_, fitted.model_
    for u in (0, 5):
        user, item = str(data.users[u]), f"P{u % N_KEYS}"
        idx = int(np.flatnonzero(data.item_ids == item)[0])
        scores, states = user_scores(model, data, np.array([u]), data.offsets[u + 1 : u + 2], fitted.device_)
        eng = subject_for(fitted, user, item, "engagement").scorer
        assert float(eng.score_tokens(eng.tokens()).detach()) == pytest.approx(scores[0, idx], abs=1e-4)
        rating = subject_for(fitted, user, item, "rating").scorer
        expected = predicted_ratings(model, states, np.array([idx]), fitted.scale_)[0]
        assert float(rating.score_removed(torch.zeros(1, rating.n_events, dtype=torch.bool))) == pytest.approx(
            expected, abs=1e-4
        )


def test_fused_target_matches_core_fusion(fitted: Recommender) -> None:
    """The torch fused score equals core.fusion.formula's formula on its own signal functions."""
    from core.fusion import formula as F

    data, model = fitted.data_, fitted.model_
    weights = {"engagement": 0.6, "rating": 0.25, "popularity": 0.1, "freshness": 0.05}
    counts = np.bincount(data.item, minlength=data.n_items + 1).astype(np.float64)
    counts[0] = 0
    last = np.full(data.n_items + 1, np.nan)
    for i in range(1, data.n_items + 1):
        last[i] = data.ts[data.item == i].max() if (data.item == i).any() else np.nan
    values = data.value[~np.isnan(data.value)]
    assert not fitted.protocol_.exclude_seen  # every item is a candidate
    for u in (1, 4):
        scores, states = user_scores(model, data, np.array([u]), data.offsets[u + 1 : u + 2], fitted.device_)
        eligible = np.ones_like(scores, bool)
        eligible[:, 0] = False
        for idx in [*np.argsort(-scores[0])[:2], int(np.flatnonzero(data.item_ids == "N03")[0])]:
            rating = predicted_ratings(model, states, np.array([idx]), fitted.scale_)
            signals = {
                F.ENGAGEMENT: F.minmax_probability(scores, eligible)[0, idx],
                F.RATING: F.rating_signal(rating, (float(values.min()), float(values.max())))[0],
                F.POPULARITY: F.popularity_signal(counts)[idx],
                F.FRESHNESS: F.freshness_signal(last)[idx],
            }
            expected = float(F.fuse(signals, weights))
            item = str(data.item_ids[idx])
            scorer = subject_for(fitted, str(data.users[u]), item, "fused", weights=weights).scorer
            assert float(scorer.score_tokens(scorer.tokens()).detach()) == pytest.approx(expected, abs=1e-4), item


@pytest.mark.parametrize("target", ["engagement", "rating"])
def test_ig_completeness_within_one_percent_at_the_default_steps(fitted: Recommender, target: str) -> None:
    """The default procedure (64 steps, doubled up to MAX_STEPS while the delta exceeds 1%) always
    ends within 1%, most pairs without doubling."""
    steps_used = []
    for user, item in _users(fitted, 4) + [(str(fitted.data_.users[7]), "N03")]:
        subject = subject_for(fitted, user, item, target)
        res = integrated_gradients(subject.scorer)
        steps_used.append(res.steps)
        assert res.steps <= MAX_STEPS and abs(res.delta) <= 0.01 * abs(res.gap), (user, item, res.delta, res.gap)
    assert min(steps_used) == DEFAULT_STEPS  # most need no doubling


def test_ig_on_the_fused_target_is_complete_within_one_percent(fitted: Recommender) -> None:
    """With the user's engagement scale held at the full history, the fused score is smooth
    (but for the rating clip): IG ends within 1% without running out of steps."""
    for user, item in _users(fitted, 3):
        exp = explain(fitted, user, item, "ig", "fused", weights={"engagement": 0.7, "rating": 0.3})
        total = sum(exp.attributions) - (exp.score - exp.baseline_score)
        assert exp.completeness_delta == pytest.approx(total, abs=1e-5)
        assert exp.details["steps"] < MAX_STEPS and exp.relative_delta <= 0.01, exp.details


def test_the_top_item_of_an_engagement_only_fused_target_still_gets_attributions(fitted: Recommender) -> None:
    """Re-normalizing per masked history would pin the top item at 1 (nothing to attribute)."""
    user = str(fitted.data_.users[3])
    top = fitted.recommend(user, k=1)["item_id"].iloc[0]
    exp = explain(fitted, user, str(top), "loo", "fused", weights={"engagement": 1.0})
    assert exp.score == pytest.approx(1.0, abs=1e-5)  # core.fusion.formula's value: the top item scales to 1
    assert max(abs(a) for a in exp.attributions) > 1e-4
    assert exp.baseline_score != pytest.approx(exp.score)


def test_every_method_explains_the_user_history(fitted: Recommender) -> None:
    user = str(fitted.data_.users[2])
    history = fitted.data_.user_slice(2)
    n = min(TINY_MODEL["max_len"], history.stop - history.start)
    titles = {"P2": ("title P2", "partner item")}
    for method in METHODS:
        exp = explain(fitted, user, "P2", method, "engagement", labels=Labels(titles, "raw-2"))
        assert isinstance(exp, Explanation) and exp.method == method and exp.user == "raw-2"
        assert len(exp.events) == n and [e.position for e in exp.events] == list(range(n))
        assert [e.item for e in exp.events] == list(fitted.data_.item_ids[fitted.data_.item[history][-n:]])
        assert exp.item_title == "title P2" and exp.runtime_ms > 0
        assert exp.heuristic == (method == "attention")
        assert (exp.completeness_delta is None) == (method in ("loo", "attention"))
        assert len(exp.deletion_curve) == n + 1 and exp.deletion_curve[-1] == pytest.approx(exp.baseline_score)
        json.dumps(exp.to_dict(), allow_nan=False)
    weights = explain(fitted, user, "P2", "attention").attributions
    assert min(weights) >= 0 and sum(weights) == pytest.approx(1.0, abs=1e-5)
    shap_exp = explain(fitted, user, "P2", "shap", "rating", max_evals=2 * n + 1)
    assert abs(shap_exp.completeness_delta) <= 1e-4 * max(1.0, abs(shap_exp.score - shap_exp.baseline_score))


def test_attention_weights_reproduce_the_models_attention(fitted: Recommender) -> None:
    """Σ_j w_j v_j with the recomputed weights equals the block's own (fused-kernel) attention output."""
    from core.explain.attention import last_attention

    subject = subject_for(fitted, str(fitted.data_.users[3]), "P3", "engagement")
    model, batch, tokens = fitted.model_, subject.scorer.batch, subject.scorer.tokens()
    weights = last_attention(model, tokens, batch)  # [n]; one head in the tiny model
    block = model.history.blocks[-1]
    x = tokens + model.events.positions(tokens.shape[1])
    b, n, d = x.shape
    q, k, v = block.qkv(block.norm1(x)).view(b, n, 3, 1, d).permute(2, 0, 3, 1, 4)
    bias = model.history.time_bias(batch.ts, batch.mask, model.request.times(batch))
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)[0, 0, -1]
    torch.testing.assert_close(weights @ v[0, 0], expected, atol=1e-5, rtol=1e-4)


def test_aopc_of_ig_and_loo_beats_random_on_the_planted_signal(fitted: Recommender) -> None:
    gains = {"ig": [], "loo": []}
    for user, item in _users(fitted, 6):
        subject = subject_for(fitted, user, item, "engagement")
        for method in gains:
            exp = explain_subject(subject, method)
            gains[method].append(exp.aopc - exp.aopc_random)
    for method, g in gains.items():
        assert np.mean(g) > 0 and np.mean(np.array(g) > 0) >= 0.8, (method, g)


def test_bad_inputs_name_the_value(fitted: Recommender) -> None:
    user = str(fitted.data_.users[0])
    with pytest.raises(NotFoundError, match="nobody"):
        explain(fitted, "nobody", "P0")
    with pytest.raises(NotFoundError, match="no-such-item"):
        explain(fitted, user, "no-such-item")
    with pytest.raises(DataError, match="telepathy"):
        explain(fitted, user, "P0", "telepathy")
    with pytest.raises(DataError, match="clicks"):
        explain(fitted, user, "P0", target="clicks")
    with pytest.raises(DataError, match="max_evals"):
        explain(fitted, user, "P0", "ig", max_evals=10)
    with pytest.raises(DataError, match="steps"):
        explain(fitted, user, "P0", "ig", steps=1)
    with pytest.raises(NotFittedError):
        explain(Recommender(), user, "P0")
    assert not math.isnan(explain(fitted, user, "P0", "loo").score)
