"""Items held out of training (core.model.held_out) and the new-items protocol (core.model.new_items).

A tiny generated dataset (30 users, 24 items) and the standard tiny BERT; one Recommender is fitted with a
quarter of the items held out, and the tests read what it trained on, what it saved and what it scores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_support import TINY_MODEL  # tests/tiny_support.py

from core import schema as S
from core.data import synth
from core.data.batches import training_batch
from core.data.sequences import build_sequences
from core.errors import DataError
from core.model.config import TrainConfig
from core.model.epochs import training_users
from core.model.held_out import HELD_OUT_KEY, choose_held_out, held_out_index
from core.model.losses import MultiTaskLoss
from core.model.new_items import new_item_targets, random_ranking
from core.model.recommender import Recommender
from core.store.files import load_json
from core.store.run_folder import CONFIG_FILE

SHARE = 0.25


@pytest.fixture(scope="module")
def dataset() -> tuple[pd.DataFrame, pd.DataFrame]:
    data = synth.generate(synth.SynthConfig.small(11, n_users=30, n_items=24, target_events=900))
    items = data.items.assign(**{S.ITEM_TEXT: data.items[S.ITEM_TITLE] + ". " + data.items["description"]})
    return data.events, items


def _rec(encoder: Path, cold_items: float = SHARE, **train: object) -> Recommender:
    return Recommender(
        encoder=str(encoder),
        device="cpu",
        cold_items=cold_items,
        model=dict(TINY_MODEL),
        train={"epochs": 2, "batch_size": 16, "seed": 3, **train},
    )


@pytest.fixture(scope="module")
def cold(tiny_bert_dir: Path, dataset) -> Recommender:
    events, items = dataset
    return _rec(tiny_bert_dir).fit(events, items)


def test_the_same_seed_holds_out_the_same_items(dataset) -> None:
    events, _ = dataset
    first, again = choose_held_out(events, SHARE, 3), choose_held_out(events, SHARE, 3)
    assert first is not None and again is not None
    assert first.items == again.items
    n_items = events[S.ITEM_ID].nunique()
    assert len(first.items) == round(SHARE * n_items) and set(first.items) <= set(events[S.ITEM_ID].astype(str))
    others = {choose_held_out(events, SHARE, seed).items for seed in range(4, 9)}  # type: ignore[union-attr]
    assert len(others | {first.items}) > 1  # another seed, another draw
    assert choose_held_out(events, 0.0, 3) is None  # the default: nothing held out


def test_held_out_items_are_in_no_training_history_or_target(cold: Recommender) -> None:
    assert cold.held_out_ is not None and cold.every_ is not None
    held = set(held_out_index(cold.data_, cold.held_out_).tolist())
    assert held and not held & set(cold.data_.item.tolist())  # no event of theirs in the training view
    assert held & set(cold.every_.item.tolist())  # ... while the dataset has some
    split, data = cold.split_, cold.data_
    users = training_users(data, split)
    batch = training_batch(data, users, split.train_end[users], cold.model_.cfg.max_len)
    seen = set(batch.item[batch.mask].tolist()) | set(batch.targets()[0][batch.targets()[0] > 0].tolist())
    assert seen and not held & seen  # inputs and targets of training
    assert not held & (set(data.item[split.valid_pos].tolist()) | set(data.item[split.test_pos].tolist()))


def test_held_out_rows_are_zero_and_the_others_trained(cold: Recommender) -> None:
    """The documented choice: a zero ID row and zero item biases, the text projection alone."""
    assert cold.held_out_ is not None
    idx = torch.as_tensor(held_out_index(cold.data_, cold.held_out_))
    model = cold.model_
    for weight in (model.items.id_emb.weight, model.engagement.item_bias.weight, model.rating.item_bias.weight):
        assert torch.count_nonzero(weight[idx]) == 0
    trained = torch.as_tensor(np.setdiff1d(np.unique(cold.data_.item), idx.numpy()))
    assert torch.count_nonzero(model.engagement.item_bias.weight[trained]) > 0  # zero at init, then trained
    text = model.items.proj(model.items.vectors(idx))  # the held-out items' representation: their text's projection
    assert torch.allclose(model.items(idx), text)


def test_the_training_loss_gives_held_out_items_no_gradient(cold: Recommender) -> None:
    blocked = torch.zeros(cold.data_.n_items + 1, dtype=torch.bool)
    blocked[torch.as_tensor(held_out_index(cold.data_, cold.held_out_))] = True  # type: ignore[arg-type]
    users = training_users(cold.data_, cold.split_)
    batch = training_batch(cold.data_, users, cold.split_.train_end[users], cold.model_.cfg.max_len)
    for loss in ("softmax", "bce"):
        loss_fn = MultiTaskLoss(TrainConfig(loss=loss, n_negatives=20), cold.data_.n_items, cold.scale_, blocked)
        cold.model_.zero_grad()
        cold.model_.train()
        loss_fn(cold.model_, batch, None).total.backward()
        grads = cold.model_.items.id_emb.weight.grad, cold.model_.engagement.item_bias.weight.grad
        for grad in grads:
            assert grad is not None and torch.count_nonzero(grad[blocked]) == 0, loss
            assert torch.count_nonzero(grad[~blocked]) > 0, loss
    cold.model_.zero_grad()
    cold.model_.eval()


def test_new_items_targets_are_held_out_events_with_only_earlier_history() -> None:
    events = pd.DataFrame(
        {
            S.USER_ID: ["u"] * 5 + ["v"] * 2 + ["w"] * 2,
            S.ITEM_ID: ["a", "h", "b", "c", "h2", "h", "a", "b", "c"],
            S.TIMESTAMP: pd.to_datetime([1, 2, 3, 5, 5, 1, 2, 1, 2], unit="s"),
            S.BEHAVIOR: "rate",
        }
    )
    data = build_sequences(events)
    held = np.array([list(data.item_ids).index(i) for i in ("h", "h2")])
    users, ends, pos = new_item_targets(data, held)
    assert [data.users[u] for u in users] == ["u"]  # v's held-out event is their first; w has none
    u, end, target = int(users[0]), int(ends[0]), int(pos[0])
    assert data.item_ids[data.item[target]] == "h2"  # the user's last event on a held-out item
    history = data.item_ids[data.item[int(data.offsets[u]) : end]].tolist()
    assert history == ["a", "h", "b"]  # strictly before its time: c, at the same second, is not known
    assert (data.ts[int(data.offsets[u]) : end] < data.ts[target]).all()


def test_random_ranking_is_k_over_the_candidates() -> None:
    out = random_ranking(40, np.array([1, 2]), None)
    assert out["HR@10"] == pytest.approx(10 / 40)
    exclude = np.zeros((2, 41), dtype=bool)
    exclude[:, 0] = True
    exclude[0, 1] = True  # the first user's target is an earlier item: a miss
    exclude[1, 30:] = True  # the second user has 29 candidates
    assert random_ranking(40, np.array([1, 2]), exclude)["HR@10"] == pytest.approx((0 + 10 / 29) / 2)


def test_the_new_items_protocol_scores_the_held_out_targets(cold: Recommender, tmp_path: Path, dataset) -> None:
    from core.runs.scores import new_items_figures

    out = new_items_figures(cold)
    assert out["protocol"] == "new-items" and out["held_out_items"] == len(cold.held_out_.items)  # type: ignore[union-attr]
    assert "new items: 25% of items held out of training" in out["label"] and "stand-in time" in out["label"]
    assert 0 < out["users"] <= cold.every_.n_users  # type: ignore[union-attr]
    for key in ("HR@10", "NDCG@10", "MRR@10", "AUC", "RMSE", "MAE", "coverage@10"):
        assert key in out
    bars = out["baselines"]
    assert bars["random"]["HR@10"] == pytest.approx(10 / cold.data_.n_items, rel=0.5)
    assert bars["popularity"]["HR@10"] == 0.0  # every held-out item counts 0: ranked below the others
    assert "held out of training (their events left out)" in cold.evaluate("test")["label"]
    # saved and loaded: the same held-out items, the same figures
    folder = cold.save(tmp_path / "run")
    assert load_json(folder / CONFIG_FILE)[HELD_OUT_KEY]["items"] == list(cold.held_out_.items)  # type: ignore[union-attr]
    events, _ = dataset
    loaded = Recommender.load(folder, events, device="cpu")
    assert loaded.held_out_ == cold.held_out_
    assert new_items_figures(loaded)["NDCG@10"] == pytest.approx(out["NDCG@10"])
    assert loaded.evaluate("test")["NDCG@10"] == pytest.approx(cold.evaluate("test")["NDCG@10"])


def test_a_model_without_held_out_items_is_unchanged(tiny_bert_dir: Path, dataset, tmp_path: Path) -> None:
    from core.runs.scores import new_items_figures

    events, items = dataset
    rec = _rec(tiny_bert_dir, cold_items=0.0, epochs=1).fit(events, items)
    assert "cold_items" not in rec.get_settings() and rec.held_out_ is None and rec.every_ is None
    assert len(rec.data_.item) == len(events)  # every event trained on
    folder = rec.save(tmp_path / "run")
    config = load_json(folder / CONFIG_FILE)
    assert HELD_OUT_KEY not in config and "cold_items" not in config["settings"]
    label = rec.evaluate("test")["label"]
    assert "held out" not in label and label.endswith("leave-last-out, asked at the stand-in time")
    with pytest.raises(DataError, match="trained without held-out items"):
        new_items_figures(Recommender.load(folder, events, device="cpu"))


@pytest.mark.parametrize("share", [-0.1, 1.0, 2, "0.1"])
def test_a_bad_share_is_refused_naming_the_setting(tiny_bert_dir: Path, dataset, share: object) -> None:
    events, items = dataset
    with pytest.raises(DataError, match="cold_items"):
        _rec(tiny_bert_dir, cold_items=share).fit(events, items)  # type: ignore[arg-type]


def test_item_id_dropout_trains_items_as_if_never_seen(cold: Recommender, tiny_bert_dir: Path, dataset) -> None:
    """Within ``dropping_ids`` a dropped item is its text projection with no bias, in the history and among the
    candidates; outside, nothing is dropped; and a fit with ``item_id_dropout`` trains and saves the setting."""
    model = cold.model_
    some = torch.as_tensor(np.unique(cold.data_.item)[:3])
    dropped = torch.zeros(cold.data_.n_items + 1, dtype=torch.bool)
    dropped[some] = True
    users = training_users(cold.data_, cold.split_)[:4]
    batch = training_batch(cold.data_, users, cold.split_.train_end[users], model.cfg.max_len)
    task_e, _ = model(batch)
    plain = model.engagement_logits(task_e[:, -1])
    with torch.no_grad(), model.dropping_ids(dropped):
        assert torch.allclose(model.items(some), model.items.proj(model.items.vectors(some)))
        assert torch.count_nonzero(model.engagement.item_bias.weight[some]) > 0  # the weights stay; they are masked
        task_d, _ = model(batch)
        logits = model.engagement_logits(task_d[:, -1])
    assert not torch.allclose(logits[:, some], plain[:, some])  # the dropped items score differently
    assert model.items.dropped is None and model.engagement.dropped is None  # nothing dropped outside
    assert torch.allclose(model.engagement_logits(model(batch)[0][:, -1]), plain)
    events, items = dataset
    rec = _rec(tiny_bert_dir, 0.0, item_id_dropout=0.5).fit(events, items)
    assert rec.get_settings()["train"]["item_id_dropout"] == 0.5 and len(rec.history_) == 2
    with pytest.raises(DataError, match="item_id_dropout"):
        _rec(tiny_bert_dir, 0.0, item_id_dropout=1.0).fit(events, items)
