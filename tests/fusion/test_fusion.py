"""Ranking fusion: golden values, weights, bounds, monotonicity, pre-selection, and agreement with evaluate.

The array tests build candidates from random signals with ``core.fusion.candidates.select_block``.
The run tests train one tiny run (40 users, 30 items, one epoch) in a module workspace and
check the cache, the presets and the CLI on it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.errors import DataError
from core.fusion import cache as FCACHE
from core.fusion import candidates as FC
from core.fusion import formula as F
from core.fusion import ranking as R
from core.runs import fusion as FR
from core.runs.run import Run as RunHandle
from core.runs.run import open_run
from core.runs.scores import evaluate_run
from core.store.run_folder import FUSION_FOLDER, PRESETS_FILE

TRAIN = {"batch_size": 64, "epochs": 1}
RANKING = ("HR@10", "NDCG@10", "MRR@10", "AUC")


# -- helpers -----------------------------------------------------------------------------------
def random_candidates(
    seed: int, users: int = 30, items: int = 60, per_anchor: int | None = None, ties: bool = False
) -> R.Candidates:
    """Candidates from random signals; every user has one eligible target and some seen items."""
    rng = np.random.default_rng(seed)
    n1 = items + 1
    logits = rng.normal(0, 2, (users, n1))
    if ties:
        logits = np.round(logits)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    eligible = rng.random((users, n1)) > 0.2
    eligible[:, 0] = False
    targets = np.array([rng.choice(np.flatnonzero(row)) for row in eligible])
    rat = rng.random((users, n1)).astype(np.float32)
    pop, fresh = rng.random(n1).astype(np.float32), rng.random(n1).astype(np.float32)
    block = FC.select_block(F.minmax_probability(logp, eligible), rat, pop, fresh, eligible, targets, per_anchor)
    out = FC.stack_blocks([block])
    return R.Candidates(
        users=np.arange(users),
        items=out["items"],
        engagement=out["engagement"],
        rating=out["rating"],
        popularity=pop,
        freshness=fresh,
        popularity_count=np.round(pop * 100).astype(np.float32),
        outside=out["outside"],
        targets=targets,
        target_col=FC.target_columns(out["items"], targets),
        target_rating=np.full(users, np.nan, np.float32),
        target_value=np.full(users, np.nan, np.float32),
    )


def rank_of(c: R.Candidates, weights: dict[str, float], row: int, item: int) -> int:
    return int(np.flatnonzero(R.user_ranking(c, row, weights)["item"] == item)[0])


# -- golden values -----------------------------------------------------------------------------
def test_fused_score_golden_values() -> None:
    signals = {
        "engagement": np.array([1.0, 0.5, 0.0]),
        "rating": np.array([0.0, 1.0, 0.5]),
        "popularity": np.array([0.2, 0.4, 1.0]),
        "freshness": np.array([1.0, 0.0, 0.0]),
    }
    # weights 3, 1 -> 0.75, 0.25
    np.testing.assert_allclose(F.fuse(signals, {"engagement": 3, "rating": 1}), [0.75, 0.625, 0.125])
    # 0.4 e + 0.2 r + 0.2 p + 0.2 f
    got = F.fuse(signals, {"engagement": 2, "rating": 1, "popularity": 1, "freshness": 1})
    np.testing.assert_allclose(got, [0.4 + 0.04 + 0.2, 0.2 + 0.2 + 0.08, 0.1 + 0.2])


def test_signal_normalization_golden_values() -> None:
    logp = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    eligible = np.array([[True, True, True, False]])
    np.testing.assert_allclose(F.minmax_probability(logp, eligible), [[1.0, (0.3 - 0.15) / 0.35, 0.0, 0.0]])
    np.testing.assert_allclose(
        F.rating_signal(np.array([1.0, 3.0, 5.0, 6.0, 0.0]), (1.0, 5.0)), [0.0, 0.5, 1.0, 1.0, 0.0]
    )
    assert not F.rating_signal(np.array([3.0, 4.0]), None).any()
    np.testing.assert_allclose(
        F.popularity_signal(np.array([0, 1, 3])), [0.0, math.log(2) / math.log(4), 1.0], rtol=1e-6
    )
    np.testing.assert_allclose(F.freshness_signal(np.array([np.nan, 100.0, 150.0, 200.0])), [0, 0, 0.5, 1])


def test_weights_are_normalized_to_sum_one() -> None:
    assert F.parse_weights("engagement=0.7,rating=0.3") == pytest.approx(
        {"engagement": 0.7, "rating": 0.3, "popularity": 0.0, "freshness": 0.0}
    )
    w = F.normalize_weights({"popularity": 2, "freshness": 6})
    assert w == {"engagement": 0.0, "rating": 0.0, "popularity": 0.25, "freshness": 0.75}
    assert list(w) == list(F.SIGNALS)


@pytest.mark.parametrize(
    "spec, needle",
    [
        ("engagement=-0.1,rating=1", "engagement=-0.1"),
        ("engagement=0,rating=0", "all zero"),
        ("novelty=1", "'novelty'"),
        ("rating=abc", "rating='abc'"),
        ("rating=nan", "rating=nan"),
        ("rating=inf,engagement=1", "rating=inf"),
        ("engagement=1,engagement=2", "'engagement' is given twice"),
        ("engagement", "NAME=VALUE"),
        ("", "NAME=VALUE"),
    ],
)
def test_bad_weights_name_the_weight(spec: str, needle: str) -> None:
    with pytest.raises(DataError, match=None) as err:
        F.parse_weights(spec)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    "weights, needle",
    [
        ({"rating": -1}, "rating=-1"),
        ({"rating": True}, "rating=True"),
        ({"rating": "1"}, "rating='1'"),
    ],
)
def test_bad_weight_values_in_a_mapping(weights: dict[str, Any], needle: str) -> None:
    with pytest.raises(DataError) as err:
        F.normalize_weights(weights)
    assert needle in str(err.value)


# -- bounds, monotonicity, ties ------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(3))
def test_fused_scores_lie_in_unit_interval(seed: int) -> None:
    c = random_candidates(seed)
    for name in ("engagement", "rating", "outside"):
        a = getattr(c, name)
        assert ((a >= 0) & (a <= 1) | (a == R.NO_OUTSIDE)).all()
    w = dict(zip(F.SIGNALS, np.random.default_rng(seed).random(4)))
    s = R.fused_scores(c, w)
    real = c.items > 0
    assert np.isneginf(s[~real]).all()
    assert (s[real] >= 0).all() and (s[real] <= 1 + 1e-12).all()


@pytest.mark.parametrize("seed", range(4))
def test_raising_a_weight_never_lowers_the_best_item_on_that_signal(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    c = random_candidates(seed, ties=seed % 2 == 1)
    for _ in range(5):
        base = dict(zip(F.SIGNALS, rng.random(4)))
        for signal in F.SIGNALS:
            raised = {**base, signal: base[signal] + rng.uniform(0.05, 2)}
            for row in range(len(c.users)):
                ranked = R.user_ranking(c, row, base)
                values = ranked[signal]
                best = ranked["item"][values == values.max()].min()  # best on the signal, smallest index
                assert rank_of(c, raised, row, best) <= rank_of(c, base, row, best)


def test_ties_rank_the_smaller_item_first() -> None:
    scores = np.array([[0.5, 0.9, 0.5, 0.5, -np.inf, 0.9]])
    assert R.top_columns(scores, 3).tolist() == [[1, 5, 0]]
    assert R.top_columns(scores, 10).tolist() == [[1, 5, 0, 2, 3, 4]]
    rng = np.random.default_rng(0)
    many = np.round(rng.random((50, 40)) * 4) / 4
    np.testing.assert_array_equal(R.top_columns(many, 10), np.argsort(-many, 1, kind="stable")[:, :10])


def test_user_ranking_agrees_with_rerank() -> None:
    c = random_candidates(5)
    w = {"engagement": 0.5, "rating": 0.2, "popularity": 0.2, "freshness": 0.1}
    top = R.rerank(c, w, 10)
    for row in range(len(c.users)):
        ranked = R.user_ranking(c, row, w)
        assert ranked["item"][:10].tolist() == top.items[row].tolist()
        np.testing.assert_array_equal(ranked["score"][:10], top.scores[row])


def test_weight_grid_covers_the_simplex() -> None:
    grid = F.weight_grid(0.25)
    assert len(grid) == 35  # C(4 + 3, 3)
    assert all(abs(sum(p.values()) - 1) < 1e-12 and min(p.values()) >= 0 for p in grid)
    with pytest.raises(DataError, match="0.3"):
        F.weight_grid(0.3)


# -- pre-selection ----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(3))
def test_preselection_is_exact_where_it_says_so(seed: int) -> None:
    full = random_candidates(seed, users=40, items=400)
    part = random_candidates(seed, users=40, items=400, per_anchor=25)
    assert full.full and not part.full
    assert part.items.shape[1] <= len(R.ANCHORS) * 25 + 1 and (part.target_col >= 0).all()
    for w in F.weight_grid(0.5) + [{"engagement": 0.6, "rating": 0.3, "popularity": 0.1}]:
        exact, approx = R.rerank(full, w, 10), R.rerank(part, w, 10)
        if max(w.values()) == 1:  # one signal: its top-25 are all candidates, the bound is tight
            assert approx.exact.all()
        np.testing.assert_array_equal(approx.items[approx.exact], exact.items[approx.exact])
        ranks_full = R.target_ranks(R.fused_scores(full, w), full)
        ranks_part = R.target_ranks(R.fused_scores(part, w), part)
        in_top = approx.exact & (ranks_part < 10)
        np.testing.assert_array_equal(ranks_part[in_top], ranks_full[in_top])
        assert ((ranks_full[approx.exact] < 10) == (ranks_part[approx.exact] < 10)).all()


def test_item_only_anchors_use_one_global_order() -> None:
    rng = np.random.default_rng(3)
    n1 = 200
    pop = (np.round(rng.random(n1) * 5) / 5).astype(np.float32)  # many ties
    fresh = rng.random(n1).astype(np.float32)
    eligible = rng.random((12, n1)) > 0.3
    eligible[:, 0] = False
    zeros = np.zeros((12, n1))
    for anchor in R.ANCHORS[[2, 3, 9]]:  # popularity, freshness, their midpoint
        cols, values = FC._global_listing(anchor, pop, fresh, eligible, 21)
        score = FC.anchor_scores(anchor, zeros, zeros.astype(np.float32), pop, fresh, eligible)
        expect = R.top_columns(score, 21)
        np.testing.assert_array_equal(cols, expect)
        np.testing.assert_array_equal(values, score[np.arange(12)[:, None], expect])


def test_anchor_mixtures_reproduce_the_weights() -> None:
    for w in F.weight_grid(0.25):
        vec = np.array([w[s] for s in F.SIGNALS])
        for lam in R.anchor_mixtures(w):
            assert (lam >= 0).all()
            np.testing.assert_allclose(lam @ R.ANCHORS, vec, atol=1e-12)


def test_outside_bound_holds() -> None:
    full = random_candidates(9, users=20, items=300)
    part = random_candidates(9, users=20, items=300, per_anchor=10)
    for row in range(20):
        outside = np.setdiff1d(full.items[row][full.items[row] > 0], part.items[row])
        cols = np.flatnonzero(np.isin(full.items[row], outside))
        assert full.engagement[row, cols].max() <= part.outside[row, 0]
        assert full.rating[row, cols].max() <= part.outside[row, 1]


# -- a tiny trained run -----------------------------------------------------------------------------
class Run:
    def __init__(self, root: Path, tiny_run, cli) -> None:
        run = tiny_run(root, n_users=40, n_items=30, target_events=1500, train=TRAIN, encoder=None)
        self.data, self.ws, self.run_id, self.run_cli = run.data, run.ws, run.run_id, cli

    def cli(self, *args: str) -> tuple[int, Any, str]:
        code, out, err = result = self.run_cli(*args, "--json", workspace=self.ws.root)
        return code, (result.json() if code == 0 else None), err


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, tiny_run, cli) -> Run:
    """The module's tiny run (40 users, 30 items, one epoch, the bundled MiniLM)."""
    return Run(tmp_path_factory.mktemp("fusion"), tiny_run, cli)


@pytest.mark.parametrize("exclude", [None, True, False])
def test_engagement_alone_reproduces_evaluate_exactly(run: Run, exclude: bool | None) -> None:
    plain = evaluate_run(open_run(run.ws, run.run_id), exclude)
    fused = FR.evaluate_fused(open_run(run.ws, run.run_id), {"engagement": 1}, exclude)
    assert fused["label"] == plain["label"] and fused["exclude_seen"] == plain["exclude_seen"]
    for split in ("test", "valid"):
        for key in RANKING:
            assert fused[split][key] == plain[split][key], (split, key)
        assert fused[split]["users"] == plain[split]["users"]
        assert fused[split]["RMSE"] == pytest.approx(plain[split]["RMSE"], rel=1e-5)
        assert fused[split]["coverage@10"] == pytest.approx(plain[split]["coverage@10"])
        assert fused[split]["exact_users"] == 1.0


def test_cache_is_stored_in_the_run_and_reused_without_the_model(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    FR.run_candidates(open_run(run.ws, run.run_id), "test")
    folder = run.ws.run_dir(run.run_id) / FUSION_FOLDER
    stored = sorted(folder.glob("test-*.safetensors"))
    assert stored and all(p.with_suffix(".json").is_file() for p in stored)
    assert not any(folder.glob("*.pkl")) and not any(folder.glob("*.npy"))

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("a weight change must not load or run the model")

    monkeypatch.setattr(RunHandle, "recommender", no_model)
    c, meta = FR.run_candidates(open_run(run.ws, run.run_id), "test")
    assert meta["cached"] is True and meta["format"] == FCACHE.CACHE_FORMAT
    a = R.fused_metrics(c, {"engagement": 1})
    b = R.fused_metrics(c, {"popularity": 1})
    assert a != b


def test_altered_cache_is_rebuilt(run: Run) -> None:
    c, _ = FR.run_candidates(open_run(run.ws, run.run_id), "valid")
    path = next((run.ws.run_dir(run.run_id) / FUSION_FOLDER).glob("valid-*.safetensors"))
    path.write_bytes(path.read_bytes()[:-8] + b"\0" * 8)
    again, meta = FR.run_candidates(open_run(run.ws, run.run_id), "valid")
    assert meta["cached"] is False
    np.testing.assert_array_equal(again.items, c.items)


def test_heads_alone_give_different_metrics_and_lists(run: Run) -> None:
    e = FR.evaluate_fused(open_run(run.ws, run.run_id), {"engagement": 1, "rating": 0})
    r = FR.evaluate_fused(open_run(run.ws, run.run_id), {"engagement": 0, "rating": 1})
    assert e["test"] != r["test"]
    user = str(run.data.events["user_id"].iloc[0])
    top_e = FR.recommend_fused(open_run(run.ws, run.run_id), user, 10, {"engagement": 1})
    top_r = FR.recommend_fused(open_run(run.ws, run.run_id), user, 10, {"rating": 1})
    assert top_e["item_id"].tolist() != top_r["item_id"].tolist()
    assert top_r["rating"].is_monotonic_decreasing and top_e["engagement"].is_monotonic_decreasing


def test_cli_evaluate_and_recommend_with_weights(run: Run) -> None:
    code, out, err = run.cli("evaluate", "--run", run.run_id, "--weights", "engagement=0.7,rating=0.3")
    assert code == 0, err
    assert out["weights"] == pytest.approx({"engagement": 0.7, "rating": 0.3, "popularity": 0, "freshness": 0})
    assert {"run", "protocol", "exclude_seen", "target_behavior", "test", "valid"} <= set(out)
    assert 0 <= out["test"]["HR@10"] <= 1 and "coverage@10" in out["test"]
    user = str(run.data.events["user_id"].iloc[0])
    code, out, err = run.cli(
        "recommend", "--run", run.run_id, "--user", user, "--k", "5", "--weights", "engagement=1,popularity=1"
    )
    assert code == 0, err
    assert len(out["items"]) == 5 and out["weights"]["popularity"] == 0.5
    for item in out["items"]:
        assert {"item_id", "title", "score", *F.SIGNALS} <= set(item)
        assert item["score"] == pytest.approx(0.5 * item["engagement"] + 0.5 * item["popularity"])
    scores = [i["score"] for i in out["items"]]
    assert scores == sorted(scores, reverse=True)


def test_cli_bad_weights_exit_2_naming_the_weight(run: Run) -> None:
    code, _, err = run.cli("evaluate", "--run", run.run_id, "--weights", "engagement=-1,rating=1")
    assert code == 2 and "engagement=-1" in err and "Traceback" not in err
    code, _, err = run.cli("recommend", "--run", run.run_id, "--user", "x", "--weights", "rating=0")
    assert code == 2 and "all zero" in err
    code, _, err = run.cli("weights", "--run", run.run_id, "--save", "p", "--weights", "clicks=1")
    assert code == 2 and "'clicks'" in err


def test_saved_preset_becomes_the_default(run: Run) -> None:
    code, out, err = run.cli(
        "weights", "--run", run.run_id, "--save", "pop-heavy", "--weights", "engagement=1,popularity=3"
    )
    assert code == 0, err
    assert out["default"] == "pop-heavy" and out["presets"]["pop-heavy"]["popularity"] == 0.75
    assert FR.default_weights(open_run(run.ws, run.run_id)) == ("pop-heavy", out["presets"]["pop-heavy"])
    code, out, _ = run.cli("evaluate", "--run", run.run_id)
    assert out["preset"] == "pop-heavy" and out["weights"]["popularity"] == 0.75
    code, by_name, _ = run.cli("evaluate", "--run", run.run_id, "--weights", "pop-heavy")
    assert by_name["test"] == out["test"]
    code, _, err = run.cli("evaluate", "--run", run.run_id, "--weights", "no-such-preset")
    assert code == 2 and "no-such-preset" in err
    (run.ws.run_dir(run.run_id) / PRESETS_FILE).unlink()
    code, out, _ = run.cli("evaluate", "--run", run.run_id)
    assert "weights" not in out  # no preset: the model's own ranking, as before


def test_cache_round_trip_and_staleness(tmp_path: Path) -> None:
    c = random_candidates(1, users=5, items=20)
    FCACHE.write_cache(tmp_path, "k", c, {"context": "test"})
    loaded, meta = FCACHE.read_cache(tmp_path, "k", {"context": "test"})
    np.testing.assert_array_equal(loaded.items, c.items)
    assert FCACHE.read_cache(tmp_path, "k", {"context": "valid"}) is None  # stale: another context


def test_the_fusion_cache_scores_users_in_evaluations_batches(
    tmp_path: Path, tiny_run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Evaluation scores users in batches by history length; a user's logits differ in their last bits with the batch
    (its padding), so the fusion cache takes the same batches: its engagement-only ranking is then evaluation's
    exactly. Batches of 4 users here, so there are many."""
    from core.model import evaluation

    made = tiny_run(tmp_path, n_users=40)
    rec = open_run(made.ws, made.run_id).recommender()
    monkeypatch.setattr(evaluation, "SCORE_BATCH", 4)
    monkeypatch.setattr(FC, "_BATCH", 4)
    seen: list[tuple[int, ...]] = []
    real = evaluation.history_batch

    def spy(data: Any, users: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        seen.append(tuple(int(u) for u in users))
        return real(data, users, *args, **kwargs)

    monkeypatch.setattr(evaluation, "history_batch", spy)
    split = rec.fitted().split
    evaluation.score_events(rec.fitted(), split.users, split.valid_pos, split.valid_pos)
    scored, seen[:] = list(seen), []
    cands = FC.build_candidates(rec, "valid", True, rec.protocol_.target_behavior)
    assert seen == scored and len(seen) == 10  # the same 10 batches, in the same order
    assert sorted(len(b) for b in seen) == [4] * 10 and [u for b in seen for u in b] != sorted(split.users.tolist())
    assert cands.users.tolist() == split.users.tolist()  # the rows back in the users' order
    plain = evaluate_run(open_run(made.ws, made.run_id), True)
    fused = FR.evaluate_fused(open_run(made.ws, made.run_id), {"engagement": 1}, True)
    for which in ("test", "valid"):
        for key in RANKING:
            assert fused[which][key] == plain[which][key], (which, key)
