"""Tests of the events' own text in the model (core.model.event_text, EventText in core.model.layers): indexed once
per distinct text, read by the item encoder through the cache, a "no text" vector where there is none, never saved
with the model and rebuilt at load, off where the data has no event text, and seen by the attributions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from tiny_support import TINY_MODEL  # tests/tiny_support.py

from core import schema as S
from core.data import synth
from core.data.batches import history_batch
from core.data.sequences import build_sequences
from core.errors import ArtifactError, DataError
from core.explain.loo import leave_one_out
from core.explain.scorer import HistoryScorer, engagement_target, user_history
from core.explain.subject import titles_of
from core.explain.tokens import token_attributions
from core.model.checkpoint import ADDED_LATER
from core.model.config import ModelConfig
from core.model.embedding_cache import EmbeddingCache, text_key
from core.model.encoder import TextEncoder
from core.model.network import BehaviorModel
from core.model.recommender import Recommender
from core.model.warm_start import read_parent
from core.store.run_folder import seal_config

SETTINGS = {"device": "cpu", "model": {**TINY_MODEL, "dropout": 0.0}, "train": {"epochs": 2, "batch_size": 16}}


@pytest.fixture(scope="module")
def dataset() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(events with review texts, items with text) of a generated dataset (30 users, 24 items)."""
    data = synth.generate(synth.SynthConfig.small(11, n_users=30, n_items=24, target_events=900))
    items = data.items.assign(**{S.ITEM_TEXT: data.items[S.ITEM_TITLE] + ". " + data.items["description"]})
    return _readable(data.events), items


def _readable(events: pd.DataFrame) -> pd.DataFrame:
    """The review texts in words the tiny BERT knows (its vocabulary has a few), so that they embed apart."""
    words = ["red shoe", "blue bag", "the coffee", "a red bag", "blue shoes", "the red coffee"]
    has = events[S.TEXT].notna()
    texts = [f"{words[i % len(words)]} {words[(i // 6) % len(words)]}" for i in range(int(has.sum()))]
    return events.assign(
        **{S.TEXT: events[S.TEXT].astype(object).where(~has, pd.Series(texts, index=events.index[has]))}
    )


def _rec(encoder: Path, **model) -> Recommender:
    return Recommender(encoder=str(encoder), **{**SETTINGS, "model": {**SETTINGS["model"], **model}})


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def fitted(tiny_bert_dir, dataset, cache: Path) -> Recommender:
    events, items = dataset
    return _rec(tiny_bert_dir).fit(events, items, cache_dir=cache)


def _scores(rec: Recommender) -> np.ndarray:
    """Every user's engagement logits over every item at the end of their history: [U, N+1]."""
    data, model = rec.data_, rec.model_.eval()
    users = np.arange(data.n_users)
    batch = history_batch(data, users, data.offsets[1:], model.cfg.max_len)
    with torch.no_grad():
        task_e, _ = model(batch, last=True)
        return model.engagement_logits(task_e).numpy()


def _review_users(rec: Recommender) -> np.ndarray:
    """Rows of the users with a text among the events their window reads."""
    data, n = rec.data_, rec.model_.cfg.max_len
    return np.array(
        [
            u
            for u in range(data.n_users)
            if data.text[max(data.offsets[u], data.offsets[u + 1] - n) : data.offsets[u + 1]].any()
        ]
    )


# -- indexing --------------------------------------------------------------------------------------------------


def test_each_distinct_event_text_is_one_row_and_blank_is_none() -> None:
    events = pd.DataFrame(
        {
            S.USER_ID: ["u1"] * 5 + ["u2"] * 2,
            S.ITEM_ID: ["a", "b", "c", "a", "b", "a", "c"],
            S.TIMESTAMP: pd.to_datetime(np.arange(7), unit="D"),
            S.BEHAVIOR: ["view", "review", "review", "view", "tag", "review", "view"],
            S.TEXT: [None, "good", "  ", "", "good", "bad", np.nan],
        }
    )
    data = build_sequences(events)
    assert data.texts == ["", "good", "bad"] and data.has_text
    np.testing.assert_array_equal(data.text, [0, 1, 0, 0, 1, 2, 0])
    batch = history_batch(data, np.array([0, 1]), data.offsets[1:], 10)
    np.testing.assert_array_equal(batch.text.numpy(), [[0, 1, 0, 0, 1], [0, 0, 0, 2, 0]])
    bare = build_sequences(events.drop(columns=S.TEXT))
    assert bare.texts == [""] and not bare.has_text and not bare.text.any()


# -- the token -------------------------------------------------------------------------------------------------


def test_an_event_without_text_gets_the_no_text_vector() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(n_items=3, n_behaviors=2, text_dim=4, **TINY_MODEL)
    model = BehaviorModel(cfg, torch.randn(4, 4)).eval()
    part = model.events.text
    assert part is not None
    part.set_table(torch.randn(3, 4))
    with torch.no_grad():
        part.no_text.copy_(torch.randn(cfg.d_model))
        out = part(torch.tensor([[0, 1, 2, 0]]))
        np.testing.assert_allclose(out[0, 0], part.no_text, rtol=0)
        np.testing.assert_allclose(out[0, 3], part.no_text, rtol=0)
        np.testing.assert_allclose(out[0, 1], part.proj(part.table[1]), rtol=1e-5, atol=1e-6)  # batched vs one row
        events = build_sequences(
            pd.DataFrame(
                {
                    S.USER_ID: ["u"] * 3,
                    S.ITEM_ID: ["1", "2", "3"],
                    S.TIMESTAMP: pd.to_datetime([0, 1, 2], unit="h"),
                    S.BEHAVIOR: ["view"] * 3,
                    S.TEXT: [None, "x", None],
                }
            )
        )
        batch = history_batch(events, np.array([0]), events.offsets[1:], 5)
        before = model.tokens(batch)
        part.no_text.add_(1.0)  # moves exactly the events without text, by the token's scale
        moved = model.tokens(batch) - before
    np.testing.assert_allclose(moved[0, [0, 2]], np.full((2, cfg.d_model), model.events.scale), rtol=1e-5)
    np.testing.assert_allclose(moved[0, 1], np.zeros(cfg.d_model), atol=1e-6)


def test_event_text_changes_the_scores(fitted: Recommender, dataset, tmp_path: Path, cache: Path) -> None:
    """Same events, other review texts: the users who wrote reviews score otherwise, the others as before."""
    events, _ = dataset
    folder = fitted.save(tmp_path / "run")
    has = events[S.TEXT].notna()
    other = events.assign(**{S.TEXT: events[S.TEXT].where(~has, "blue coffee")})
    swapped = Recommender.load(folder, other, device="cpu", cache_dir=cache)
    before, after = _scores(fitted), _scores(swapped)
    readers = _review_users(fitted)
    assert len(readers) > 0 and len(readers) < fitted.data_.n_users
    assert not np.allclose(before[readers], after[readers], atol=1e-4)
    others = np.setdiff1d(np.arange(fitted.data_.n_users), readers)
    np.testing.assert_allclose(before[others], after[others], rtol=1e-5, atol=1e-6)


# -- saving and loading ----------------------------------------------------------------------------------------


def test_a_saved_run_reloads_its_scores_and_holds_no_event_text(
    fitted: Recommender, dataset, tmp_path: Path, cache: Path
) -> None:
    events, _ = dataset
    folder = fitted.save(tmp_path / "run")
    state = load_file(folder / "model.safetensors")
    assert not any("table" in name for name in state) and "events.text.proj.weight" in state
    vectors = fitted.model_.events.text.table[1:]  # type: ignore[union-attr]
    assert len(vectors) == len(fitted.data_.texts) - 1 > 10
    for name, saved in state.items():  # no saved tensor holds a row that is one of the texts' vectors
        if saved.ndim == 2 and saved.shape[1] == vectors.shape[1]:
            assert not torch.cdist(saved.float(), vectors).lt(1e-6).any(), name
    for cache_dir in (cache, None):  # through the cache, and encoded again without one
        loaded = Recommender.load(folder, events, device="cpu", cache_dir=cache_dir)
        assert loaded.data_.texts == fitted.data_.texts
        np.testing.assert_allclose(_scores(loaded), _scores(fitted), rtol=1e-5, atol=1e-6)


def test_event_texts_are_cached_by_text_once(fitted: Recommender, dataset, cache: Path) -> None:
    events, _ = dataset
    distinct = events[S.TEXT].dropna().unique()
    assert len(distinct) < int(events[S.TEXT].notna().sum())  # many events share a text
    enc = TextEncoder(fitted.encoder)
    found = EmbeddingCache(cache / enc.fingerprint, enc.dim, "").lookup([text_key(t) for t in distinct])
    assert len(found) == len(distinct)
    row = fitted.data_.texts.index(str(distinct[0]))
    table = fitted.model_.events.text.table  # type: ignore[union-attr]
    np.testing.assert_allclose(table[row].numpy(), found[text_key(str(distinct[0]))], rtol=1e-6)


def test_a_run_whose_encoder_changed_is_refused_at_load(fitted: Recommender, dataset, tmp_path: Path) -> None:
    events, _ = dataset
    folder = fitted.save(tmp_path / "run")
    config = json.loads((folder / "config.json").read_text())
    config["encoder_fingerprint"] = "0" * 64
    (folder / "config.json").write_text(
        json.dumps(seal_config({k: v for k, v in config.items() if k != "config_sha256"}))
    )
    with pytest.raises(ArtifactError, match="reads event text with the encoder it trained with"):
        Recommender.load(folder, events, device="cpu")


def _as_old_release(folder: Path) -> Path:
    """The run folder as a release before ``use_event_text`` wrote it (resealed)."""
    config = json.loads((folder / "config.json").read_text())
    del config["model_config"]["use_event_text"]
    (folder / "config.json").write_text(
        json.dumps(seal_config({k: v for k, v in config.items() if k != "config_sha256"}))
    )
    return folder


def test_a_dataset_without_event_text_trains_and_scores_as_before(tiny_bert_dir, dataset, tmp_path: Path) -> None:
    """No event text: the default model is the one without event text (no parameter of it), score for score; a run
    saved before the setting existed loads and is updated unchanged."""
    events, items = dataset
    bare = events.drop(columns=S.TEXT)
    default = _rec(tiny_bert_dir).fit(bare, items)
    before = _rec(tiny_bert_dir, use_event_text=False).fit(events, items)  # the text column is there, unread
    assert default.model_.cfg.use_event_text is False and default.model_.events.text is None
    assert set(default.model_.state_dict()) == set(before.model_.state_dict())
    assert not any(".text." in name for name in default.model_.state_dict())
    np.testing.assert_array_equal(_scores(default), _scores(before))
    assert ADDED_LATER["use_event_text"] is False
    folder = _as_old_release(default.save(tmp_path / "old"))
    loaded = Recommender.load(folder, events, device="cpu")
    assert loaded.model_.cfg.use_event_text is False
    np.testing.assert_array_equal(_scores(loaded), _scores(default))
    config = json.loads((folder / "config.json").read_text())
    update = _rec(tiny_bert_dir).fit(events, items, warm_from=read_parent("old", folder, config))
    assert update.model_.cfg.use_event_text is False and update.warm_start_["run"] == "old"


def test_items_held_out_share_one_text_table(tiny_bert_dir, dataset) -> None:
    events, items = dataset
    rec = Recommender(
        encoder=str(tiny_bert_dir), cold_items=0.3, **{**SETTINGS, "train": {**SETTINGS["train"], "epochs": 1}}
    ).fit(events, items)
    assert rec.every_ is not None and rec.data_.texts == rec.every_.texts
    assert len(rec.model_.events.text.table) == len(rec.every_.texts)  # type: ignore[union-attr]
    kept = [rec.data_.texts[r] for r in rec.data_.text]
    assert set(kept) <= set(events[S.TEXT].dropna()) | {""}


# -- attributions ----------------------------------------------------------------------------------------------


def test_leaving_out_an_event_removes_its_text(fitted: Recommender) -> None:
    """With the event masked, its text no longer matters; present, it does; leave-one-out credits the text."""
    model, data = fitted.model_.eval(), fitted.data_
    user = int(_review_users(fitted)[0])
    batch = user_history(data, user, model.cfg.max_len)
    pos = int(torch.nonzero(batch.text[0])[-1])
    other = user_history(data, user, model.cfg.max_len)
    other.text = batch.text.clone()
    other.text[0, pos] = (int(batch.text[0, pos]) % (len(data.texts) - 1)) + 1  # another review text
    item = int(data.item[data.offsets[user + 1] - 1])
    target = engagement_target(model, item)
    a, b = HistoryScorer(model, batch, target), HistoryScorer(model, other, target)
    removed = torch.zeros(2, batch.item.shape[1], dtype=torch.bool)
    removed[1, pos] = True
    with_a, with_b = a.score_removed(removed), b.score_removed(removed)
    assert abs(float(with_a[0] - with_b[0])) > 1e-5  # present: its text counts
    assert float(with_a[1]) == pytest.approx(float(with_b[1]), abs=1e-6)  # removed: nothing of it is left
    loo_a, loo_b = leave_one_out(a), leave_one_out(b)
    assert loo_a[pos] - loo_b[pos] == pytest.approx(float(with_a[0] - with_b[0]), abs=1e-5)


def test_an_events_own_text_is_attributed_to_its_words(fitted: Recommender, dataset) -> None:
    """explain --tokens --event-text: LIG over the event's review text, complete, scored as the explanation is."""
    _, items = dataset
    model, data = fitted.model_, fitted.data_
    user = int(_review_users(fitted)[0])
    batch = user_history(data, user, model.cfg.max_len)
    pos = int(torch.nonzero(batch.text[0])[-1])
    item = str(data.item_ids[data.item[data.offsets[user + 1] - 1]])
    stored = str(data.users[user])
    found = token_attributions(
        fitted, stored, item, "engagement", titles=titles_of(items), event_text_positions=[pos], tolerance=0.05
    )
    assert [t.source for t in found] == ["candidate", "event_text"]
    own = found[1]
    assert own.position == pos and own.text == data.texts[int(batch.text[0, pos])]
    assert {w for w, _ in own.words} <= set(own.text.split()) and any(v != 0 for _, v in own.words)
    assert abs(own.completeness_delta) <= 0.05 * abs(own.score - own.baseline_score) + 1e-6
    assert own.score == pytest.approx(found[0].score, abs=1e-4)  # the same target, text in place
    plain = int(torch.nonzero(batch.text[0] == 0)[0])
    with pytest.raises(DataError, match=f"position {plain} has no text of its own"):
        token_attributions(fitted, stored, item, "engagement", titles=titles_of(items), event_text_positions=[plain])
