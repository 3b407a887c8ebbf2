"""Evaluation scores users in chunks (core.model.evaluation.SCORE_CELLS): the [users, items] matrix is never held
whole, and the metrics are those of scoring every user at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.model import evaluation
from core.runs.run import open_run


@pytest.mark.parametrize("exclude_seen", [True, False])
def test_chunked_evaluation_equals_one_pass(
    tmp_path: Path, tiny_run: Any, monkeypatch: pytest.MonkeyPatch, exclude_seen: bool
) -> None:
    run = tiny_run(tmp_path, n_users=40)
    rec = open_run(run.ws, run.run_id, device="cpu").recommender()
    whole = rec.evaluate("test", exclude_seen=exclude_seen)
    monkeypatch.setattr(evaluation, "SCORE_BATCH", 4)
    monkeypatch.setattr(evaluation, "SCORE_CELLS", 4 * (rec.data_.n_items + 1))  # chunks of 4 users
    chunked = rec.evaluate("test", exclude_seen=exclude_seen)
    assert chunked["users"] == whole["users"] == 40
    for key in ("HR@10", "NDCG@10", "MRR@10", "AUC", "coverage@10", "RMSE", "MAE"):
        assert chunked[key] == pytest.approx(whole[key], rel=1e-5, abs=1e-7), key


def test_users_scored_in_length_order_keep_their_own_results(tmp_path: Path, tiny_run: Any) -> None:
    """Evaluation scores users in order of history length (little padding) and hands each result back to its user:
    every user's NDCG@10 and rating error are what scoring that user alone gives."""
    run = tiny_run(tmp_path, n_users=40)
    fitted = open_run(run.ws, run.run_id, device="cpu").recommender().fitted()
    users, pos = fitted.split.users, fitted.split.test_pos
    lengths = pos - fitted.data.offsets[users]
    assert len(set(lengths.tolist())) > 3  # users of many lengths: the order is not the callers'
    together = evaluation.score_events(fitted, users, pos, pos, per_user=True)
    alone = [evaluation.score_events(fitted, users[i : i + 1], pos[i : i + 1], pos[i : i + 1], True) for i in range(40)]
    assert together[evaluation.PER_USER].tolist() == pytest.approx([a[evaluation.PER_USER][0] for a in alone])
    rated = [a["MAE"] for a in alone if a["MAE"] == a["MAE"]]  # one user's MAE: their own error
    assert rated and together["MAE"] == pytest.approx(sum(rated) / len(rated), rel=1e-5)
