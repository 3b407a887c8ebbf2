"""Golden values for core.model.metrics, written out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.errors import DataError
from core.model import metrics

# --- ranks at k ---------------------------------------------------------------


def test_ranking_metrics_golden() -> None:
    ranks = np.array([0, 3, 12])
    out = metrics.ranking_metrics(ranks, k=10)
    assert set(out) == {"HR@10", "NDCG@10", "MRR@10"}
    assert out["HR@10"] == pytest.approx(2 / 3)
    # rank 0 -> 1/log2(2) = 1; rank 3 -> 1/log2(5) = 0.4306765581; rank 12 -> 0
    assert out["NDCG@10"] == pytest.approx((1 + 0.4306765581) / 3)
    assert out["MRR@10"] == pytest.approx((1 + 1 / 4) / 3)


def test_ranking_metrics_keyed_with_actual_k() -> None:
    out = metrics.ranking_metrics([0, 3, 12], k=3)
    assert out == pytest.approx({"HR@3": 1 / 3, "NDCG@3": 1 / 3, "MRR@3": 1 / 3})


def test_k_boundary_is_exclusive() -> None:
    assert metrics.hit_rate_at_k([4], 5) == 1.0
    assert metrics.hit_rate_at_k([5], 5) == 0.0
    assert metrics.ndcg_at_k([1], 5) == pytest.approx(1 / math.log2(3))
    assert metrics.mrr_at_k([1], 5) == pytest.approx(0.5)


@pytest.mark.parametrize("ranks,k", [([], 10), ([-1, 2], 10), ([0.5], 10), ([1, 2], 0), ([[1]], 10)])
def test_bad_ranks_or_k_raise(ranks: list, k: int) -> None:
    with pytest.raises(DataError):
        metrics.hit_rate_at_k(np.array(ranks), k)


# --- full-ranking ranks ---------------------------------------------------------

SCORES = np.array([[0.5, 0.9, 0.5, 0.5, 0.1]])


@pytest.mark.parametrize("target,expected", [(0, 1), (1, 0), (2, 2), (3, 3), (4, 4)])
def test_ties_broken_by_lower_item_index(target: int, expected: int) -> None:
    # target 2: item 1 scores higher, item 0 ties with a smaller index -> rank 2
    assert metrics.rank_of_targets(SCORES, [target]).tolist() == [expected]


def test_rank_matches_a_brute_force_sort_with_many_ties() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(30, 17)).astype(np.float32)  # many ties
    targets = rng.integers(0, 17, size=30)
    got = metrics.rank_of_targets(scores, targets)
    for u in range(30):
        order = np.lexsort((np.arange(17), -scores[u]))  # score desc, then index asc
        assert got[u] == int(np.flatnonzero(order == targets[u])[0])
    assert np.array_equal(got, metrics.rank_of_targets(scores, targets))  # deterministic


def test_exclusion_mask_removes_candidates_and_an_excluded_target_is_a_miss() -> None:
    exclude = np.array([[True, True, False, False, False]])
    assert metrics.rank_of_targets(SCORES, [2], exclude).tolist() == [0]
    exclude_target = np.array([[False, False, True, False, False]])
    assert metrics.rank_of_targets(SCORES, [2], exclude_target).tolist() == [5]  # below every cut-off
    assert metrics.rank_of_targets(SCORES, [4], exclude_target).tolist() == [3]
    assert metrics.ranking_metrics(metrics.rank_of_targets(SCORES, [2], exclude_target), 5)["HR@5"] == 0.0


def test_chunked_result_equals_single_block(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(25, 11))
    targets = rng.integers(0, 11, size=25)
    exclude = rng.random((25, 11)) < 0.3
    whole = metrics.rank_of_targets(scores, targets, exclude)
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 30)  # 2 users per block
    assert np.array_equal(metrics.rank_of_targets(scores, targets, exclude), whole)


def test_torch_tensor_input() -> None:
    torch = pytest.importorskip("torch")
    assert metrics.rank_of_targets(torch.tensor(SCORES), torch.tensor([2])).tolist() == [2]


@pytest.mark.parametrize(
    "scores,targets,exclude",
    [
        (np.zeros(5), [0], None),  # not 2-D
        (SCORES, [5], None),  # target out of range
        (SCORES, [0.0], None),  # float target
        (SCORES, [0, 1], None),  # wrong number of targets
        (SCORES, [0], np.zeros((1, 5), dtype=int)),  # non-bool mask
        (np.array([[np.nan, 1.0]]), [0], None),  # NaN target score
    ],
)
def test_rank_bad_input_raises(scores: np.ndarray, targets: list, exclude: np.ndarray | None) -> None:
    with pytest.raises(DataError):
        metrics.rank_of_targets(scores, np.array(targets), exclude)


# --- sampled protocol ---------------------------------------------------------


def test_protocol_names() -> None:
    assert metrics.protocol_name(None) == "full"
    assert metrics.protocol_name(100) == "sampled-100"
    with pytest.raises(DataError):
        metrics.protocol_name(0)


def test_sample_negatives_are_distinct_valid_and_reproducible() -> None:
    targets = np.array([0, 3, 7, 7])
    exclude = np.zeros((4, 10), dtype=bool)
    exclude[:, 5] = True
    neg = metrics.sample_negatives(10, targets, 6, np.random.default_rng(3), exclude)
    assert neg.shape == (4, 6)
    for u in range(4):
        assert len(set(neg[u].tolist())) == 6
        assert targets[u] not in neg[u] and 5 not in neg[u]
    again = metrics.sample_negatives(10, targets, 6, np.random.default_rng(3), exclude)
    assert np.array_equal(neg, again)


def test_sample_negatives_too_few_candidates_raises() -> None:
    with pytest.raises(DataError, match="fewer than n=5"):
        metrics.sample_negatives(5, np.array([0]), 5, np.random.default_rng(0))


def test_rank_among_sampled_golden_and_full_equivalence() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.5, 0.3]])
    # target 3 vs negatives {0, 1, 2}: item 1 higher, item 2 ties with smaller index -> 2
    assert metrics.rank_among_sampled(scores, [3], np.array([[0, 1, 2]])).tolist() == [2]
    assert metrics.rank_among_sampled(scores, [3], np.array([[0, 4]])).tolist() == [0]
    rng = np.random.default_rng(4)
    big = rng.integers(0, 3, size=(8, 9)).astype(float)
    targets = rng.integers(0, 9, size=8)
    all_others = metrics.sample_negatives(9, targets, 8, rng)  # every other item
    assert np.array_equal(metrics.rank_among_sampled(big, targets, all_others), metrics.rank_of_targets(big, targets))


# --- AUC, RMSE, MAE, coverage ------------------------------------------------------


def test_auc_golden_with_ties() -> None:
    # positives {0.8, 0.4}, negatives {0.4, 0.2}: pairs 1 + 1 + 0.5 + 1 = 3.5 of 4
    assert metrics.auc([1, 0, 1, 0], [0.8, 0.4, 0.4, 0.2]) == pytest.approx(0.875)
    assert metrics.auc([1, 1, 0], [3.0, 2.0, 1.0]) == 1.0
    assert metrics.auc([0, 0, 1], [3.0, 2.0, 1.0]) == 0.0
    assert metrics.auc(np.array([True, False, True]), [1.0, 1.0, 1.0]) == 0.5


@pytest.mark.parametrize("labels,scores", [([1, 1], [0.1, 0.2]), ([0, 2], [0.1, 0.2]), ([0, 1], [0.1])])
def test_auc_bad_input_raises(labels: list, scores: list) -> None:
    with pytest.raises(DataError):
        metrics.auc(labels, scores)


def test_rmse_mae_golden_with_nan_targets() -> None:
    y = np.array([1.0, np.nan, 3.0, 5.0])
    yhat = np.array([2.0, 100.0, 3.0, 3.0])  # errors 1, (masked), 0, 2
    assert metrics.rmse(y, yhat) == pytest.approx(math.sqrt(5 / 3))
    assert metrics.mae(y, yhat) == pytest.approx(1.0)


def test_rmse_errors_name_shapes_and_empty_targets() -> None:
    with pytest.raises(DataError, match=r"\(3,\).*\(2,\)"):
        metrics.rmse(np.zeros(3), np.zeros(2))
    with pytest.raises(DataError, match="no non-NaN"):
        metrics.mae([np.nan], [1.0])
    with pytest.raises(DataError, match="yhat is NaN"):
        metrics.mae([1.0], [np.nan])


def test_catalogue_coverage_golden() -> None:
    topk = np.array([[0, 1], [1, 2], [-1, 2]])  # -1 is padding
    assert metrics.catalogue_coverage(topk, 10) == pytest.approx(0.3)
    with pytest.raises(DataError, match="outside"):
        metrics.catalogue_coverage(np.array([[10]]), 10)
