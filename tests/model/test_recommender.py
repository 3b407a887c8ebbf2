"""Tests of core.model.recommender.Recommender: settings, fit, evaluate, recommend, save/load and refused artifacts."""

from __future__ import annotations

import json
import math
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_support import TINY_MODEL  # tests/tiny_support.py

from core import schema as S
from core.data import synth
from core.errors import ArtifactError, DataError, NotFittedError, NotFoundError
from core.model.evaluation import user_scores
from core.model.recommender import Recommender
from core.store.run_folder import seal_config


@pytest.fixture(scope="module")
def dataset() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(events, items with text) of a generated dataset (30 users, 24 items)."""
    data = synth.generate(synth.SynthConfig.small(11, n_users=30, n_items=24, target_events=900))
    items = data.items.assign(**{S.ITEM_TEXT: data.items[S.ITEM_TITLE] + ". " + data.items["description"]})
    return data.events, items


def _rec(encoder: str | Path, **kw) -> Recommender:
    settings = {
        "encoder": str(encoder),
        "device": "cpu",
        "model": dict(TINY_MODEL),
        "train": {"epochs": 2, "batch_size": 16, "seed": 3},
    }
    for key, value in kw.items():
        if key in ("model", "train"):
            settings[key] = {**settings[key], **value}
        else:
            settings[key] = value
    return Recommender(**settings)


@pytest.fixture(scope="module")
def fitted(tiny_bert_dir, dataset) -> Recommender:
    """A Recommender fitted once on the module dataset with the standard tiny BERT."""
    events, items = dataset
    return _rec(tiny_bert_dir).fit(events, items)


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fitted Recommender saved once into a run folder."""
    return fitted.save(tmp_path_factory.mktemp("runs") / "run")


@pytest.fixture()
def copy(saved: Path, tmp_path: Path) -> Path:
    """A copy of the saved run folder that the test may alter."""
    dst = tmp_path / "run"
    shutil.copytree(saved, dst)
    return dst


# --- before fit / settings ------------------------------------------------------------------


def test_constructor_stores_settings_only() -> None:
    rec = Recommender(heads="nonsense", device="gpu", model={"whatever": 1})  # validated by fit, not here
    assert rec.heads == "nonsense" and rec.model == {"whatever": 1}
    assert not hasattr(rec, "model_")


def test_not_fitted_errors(tmp_path: Path) -> None:
    rec = Recommender()
    with pytest.raises(NotFittedError):
        rec.evaluate()
    with pytest.raises(NotFittedError):
        rec.recommend("u", 5)
    with pytest.raises(NotFittedError):
        rec.save(tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "settings, name",
    [
        ({"heads": "everything"}, "heads"),
        ({"device": "gpu"}, "device"),
        ({"train": {"loss": "hinge"}}, "loss"),
        ({"train": {"epochz": 3}}, "epochz"),
        ({"model": {"width": 3}}, "width"),
        ({"model": {"d_model": 10, "n_heads": 3}}, "n_heads"),
        ({"target_behavior": "teleport"}, "teleport"),
    ],
)
def test_bad_settings_raise_data_error_naming_the_setting(tiny_bert_dir, dataset, settings, name) -> None:
    events, items = dataset
    with pytest.raises(DataError, match=name):
        _rec(tiny_bert_dir, **settings).fit(events, items)


@pytest.mark.parametrize(
    "settings, name",
    [
        ({"train": {"batch_size": 0}}, "batch_size"),
        ({"train": {"epochs": "2"}}, "epochs"),
        ({"train": {"lr": -1.0}}, "lr"),
        ({"train": {"loss_weights": "learned"}}, "loss_weights"),
        ({"train": {"loss_weights": [1.0]}}, "loss_weights"),
        ({"train": {"event_dropout": 2.0}}, "event_dropout"),
        ({"model": {"n_heads": 0}}, "n_heads"),
        ({"model": {"dropout": 1.5}}, "dropout"),
        ({"model": {"max_len": 0}}, "max_len"),
        ({"exclude_seen": "no"}, "exclude_seen"),
        ({"model": {"use_memory": "yes"}}, "use_memory"),
    ],
)
def test_invalid_setting_values_raise_data_error_naming_the_setting(tiny_bert_dir, dataset, settings, name) -> None:
    events, items = dataset
    with pytest.raises(DataError, match=name):
        _rec(tiny_bert_dir, **settings).fit(events.head(200), items)


def test_too_short_histories_raise(tiny_bert_dir) -> None:
    events = pd.DataFrame(
        {
            S.USER_ID: ["a", "a", "b"],
            S.ITEM_ID: ["x", "y", "x"],
            S.BEHAVIOR: "view",
            S.TIMESTAMP: pd.to_datetime([1, 2, 3], unit="D"),
        }
    )
    with pytest.raises(DataError, match="enough events"):
        _rec(tiny_bert_dir).fit(events)


# --- fit / evaluate / recommend ----------------------------------------------------------


def test_fitted_attributes(fitted, dataset) -> None:
    events, items = dataset
    assert fitted.data_.n_items == items[S.ITEM_ID].nunique()
    assert fitted.data_.n_users == events[S.USER_ID].nunique()
    assert 1 <= len(fitted.history_) <= 2 and fitted.best_epoch_ in (1, 2)
    assert fitted.cancelled_ is False
    assert fitted.model_.cfg.d_model == 16 and fitted.model_.cfg.text_dim == 8
    assert isinstance(fitted.protocol_.exclude_seen, bool)


def test_evaluate(fitted) -> None:
    out = fitted.evaluate("test")
    assert out["protocol"] == "full" and "leave-last-out" in out["label"]
    for key in ("HR@10", "NDCG@10", "MRR@10", "AUC", "RMSE", "MAE", "coverage@10"):
        assert key in out
    assert 0 <= out["HR@10"] <= 1 and 0 <= out["NDCG@10"] <= out["HR@10"] and 0 <= out["AUC"] <= 1
    assert out["users"] == len(fitted.split_.users)
    purchase = fitted.evaluate("valid", exclude_seen=True, target_behavior="purchase")
    assert "last purchase" in purchase["label"] and "earlier items of any behavior excluded" in purchase["label"]
    assert purchase["users"] < out["users"]
    assert out["request_time"] == "standin" and "stand-in time" in out["label"]
    actual = fitted.evaluate("test", request_time="actual")
    assert actual["request_time"] == "actual" and "time-aware: target time known" in actual["label"]
    assert set(out["baselines"]) == {"popularity", "recent_items"}
    assert 0 <= out["baselines"]["popularity"]["NDCG@10"] <= 1
    with pytest.raises(DataError, match="request time 'tomorrow'"):
        fitted.evaluate(request_time="tomorrow")
    with pytest.raises(DataError, match="which"):
        fitted.evaluate("train")
    with pytest.raises(DataError, match="teleport"):
        fitted.evaluate(target_behavior="teleport")


def test_recommend(fitted) -> None:
    user = str(fitted.data_.users[0])
    top = fitted.recommend(user, 5)
    assert list(top.columns)[:4] == [S.ITEM_ID, "engagement", "engagement_logit", "rating"]
    assert len(top) == 5 and top[S.ITEM_ID].is_unique
    assert set(top[S.ITEM_ID]) <= set(fitted.data_.item_ids[1:])
    assert ((top["engagement"] > 0) & (top["engagement"] < 1)).all()
    assert top["engagement_logit"].is_monotonic_decreasing
    assert np.isfinite(top["rating"]).all()
    seen = set(fitted.data_.item_ids[fitted.data_.item[fitted.data_.user_slice(0)]])
    excluded = fitted.recommend(user, 5, exclude_seen=True)
    assert not seen & set(excluded[S.ITEM_ID])
    everything = fitted.recommend(user, 1000, exclude_seen=False)
    assert len(everything) == fitted.data_.n_items
    assert everything["engagement"].sum() == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(NotFoundError, match="nobody"):
        fitted.recommend("nobody", 5)
    with pytest.raises(DataError, match="k"):
        fitted.recommend(user, 0)


def test_cancel_sets_cancelled(tiny_bert_dir, dataset) -> None:
    events, items = dataset
    rec = _rec(tiny_bert_dir).fit(events, items, cancel=lambda: True)
    assert rec.cancelled_ is True and rec.history_ == []
    rec.recommend(str(rec.data_.users[0]), 3)  # still usable


def test_heads_setting_zeroes_the_other_loss(tiny_bert_dir, dataset) -> None:
    events, items = dataset
    rec = _rec(tiny_bert_dir, heads="engagement", train={"epochs": 1}).fit(events, items)
    assert len(rec.history_) == 1
    assert rec.history_[0]["loss"] == pytest.approx(rec.history_[0]["loss_engagement"], rel=1e-5)


# --- save / load --------------------------------------------------------------------------


def test_save_writes_safetensors_and_json(saved: Path) -> None:
    assert sorted(p.name for p in saved.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((saved / "config.json").read_text())
    assert config["format"].startswith("behaviorlens-run/")
    assert len(config["weights_sha256"]) == 64
    assert config["model_config"]["d_model"] == 16


def _without_model_setting(folder: Path, key: str) -> Path:
    """The run folder as a release before ``key`` existed wrote it: its config lacks the setting (resealed)."""
    config = json.loads((folder / "config.json").read_text())
    del config["model_config"][key]
    (folder / "config.json").write_text(
        json.dumps(seal_config({k: v for k, v in config.items() if k != "config_sha256"}))
    )
    return folder


def test_a_run_saved_before_the_behavior_memory_loads_without_it(tiny_bert_dir, dataset, tmp_path: Path) -> None:
    """Runs from before ``use_memory`` existed have no such key and no memory weights."""
    events, items = dataset
    plain = _rec(tiny_bert_dir, model={"use_memory": False}).fit(events, items)
    folder = _without_model_setting(plain.save(tmp_path / "old"), "use_memory")
    loaded = Recommender.load(folder, events, device="cpu")
    assert loaded.model_.memory is None
    user = str(plain.data_.users[0])
    np.testing.assert_allclose(
        loaded.recommend(user, 5)["engagement"].to_numpy(), plain.recommend(user, 5)["engagement"].to_numpy(), rtol=1e-6
    )
    assert _rec(tiny_bert_dir).fit(events.head(300), items).model_.memory is not None  # on by default


def test_a_run_saved_with_the_added_repeat_term_loads_with_it(tiny_bert_dir, dataset, tmp_path: Path) -> None:
    """Runs from before ``repeat_mix`` existed have no such key and no gate: their repeat path is an added term."""
    events, items = dataset
    added = _rec(tiny_bert_dir, model={"use_repeat": True, "repeat_mix": False}).fit(events, items)
    assert added.model_.repeat is not None and added.model_.repeat.gate is None
    folder = _without_model_setting(added.save(tmp_path / "old"), "repeat_mix")
    loaded = Recommender.load(folder, events, device="cpu")
    assert loaded.model_.cfg.repeat_mix is False and loaded.model_.repeat.gate is None
    user = str(added.data_.users[0])
    np.testing.assert_allclose(
        loaded.recommend(user, 5)["engagement"].to_numpy(), added.recommend(user, 5)["engagement"].to_numpy(), rtol=1e-6
    )
    mixed = _rec(tiny_bert_dir, model={"use_repeat": True}).fit(events.head(300), items).model_
    assert mixed.cfg.repeat_mix is True and mixed.repeat.gate is not None  # the mixture by default
    assert mixed.cfg.repeat_evidence == "compound" and mixed.repeat.compound


def test_a_run_saved_with_summed_repeat_evidence_loads_with_it(tiny_bert_dir, dataset, tmp_path: Path) -> None:
    """Runs from before ``repeat_evidence`` existed summed their evidence: they load and score as they did."""
    events, items = dataset
    summed = _rec(tiny_bert_dir, model={"use_repeat": True, "repeat_evidence": "sum"}).fit(events, items)
    assert not summed.model_.repeat.compound
    folder = _without_model_setting(summed.save(tmp_path / "old"), "repeat_evidence")
    loaded = Recommender.load(folder, events, device="cpu")
    assert loaded.model_.cfg.repeat_evidence == "sum" and not loaded.model_.repeat.compound
    user = str(summed.data_.users[0])
    np.testing.assert_allclose(
        loaded.recommend(user, 5)["engagement"].to_numpy(),
        summed.recommend(user, 5)["engagement"].to_numpy(),
        rtol=1e-6,
    )


def test_round_trip_gives_identical_outputs(fitted, saved: Path, dataset) -> None:
    events, _ = dataset
    loaded = Recommender.load(saved, events, device="cpu")
    for u in (0, 7, len(fitted.data_.users) - 1):
        user = str(fitted.data_.users[u])
        for exclude in (True, False):
            a = fitted.recommend(user, 5, exclude_seen=exclude)
            b = loaded.recommend(user, 5, exclude_seen=exclude)
            assert list(a[S.ITEM_ID]) == list(b[S.ITEM_ID])
            for col in ("engagement", "engagement_logit", "rating"):
                np.testing.assert_allclose(a[col].to_numpy(), b[col].to_numpy(), rtol=1e-6, atol=1e-6)
    for which in ("valid", "test"):
        a, b = fitted.evaluate(which), loaded.evaluate(which)
        assert a.keys() == b.keys()
        for k in a:
            if isinstance(a[k], float) and math.isnan(a[k]):
                assert math.isnan(b[k])
            elif isinstance(a[k], (str, dict)):
                assert a[k] == b[k]
            else:
                assert a[k] == pytest.approx(b[k], rel=1e-6), k
    assert loaded.protocol_ == fitted.protocol_
    assert loaded.scale_ == fitted.scale_
    assert loaded.history_ == json.loads(json.dumps(fitted.history_))
    assert loaded.get_settings() == {**fitted.get_settings(), "device": "cpu"}
    sd_a, sd_b = fitted.model_.state_dict(), loaded.model_.state_dict()
    assert sd_a.keys() == sd_b.keys() and all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_pickled_weights_are_refused(fitted, copy: Path, dataset, writer: str) -> None:
    events, _ = dataset
    target = copy / "model.safetensors"
    if writer == "torch.save":
        torch.save(fitted.model_.state_dict(), target)
    else:
        target.write_bytes(pickle.dumps(fitted.model_.state_dict()))
    with pytest.raises(ArtifactError, match="pickle"):
        Recommender.load(copy, events, device="cpu")


@pytest.mark.parametrize("where", [0.02, 0.5, 0.98])
def test_flipped_byte_in_weights_is_refused(copy: Path, dataset, where: float) -> None:
    events, _ = dataset
    target = copy / "model.safetensors"
    data = bytearray(target.read_bytes())
    data[int(len(data) * where)] ^= 0x10
    target.write_bytes(bytes(data))
    with pytest.raises(ArtifactError):
        Recommender.load(copy, events, device="cpu")


def _edit_config(folder: Path, edit) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


@pytest.mark.parametrize(
    "edit",
    [
        lambda c: c["model_config"].update(d_model=32, n_heads=2),
        lambda c: c["model_config"].update(n_layers=2),
        lambda c: c["model_config"].update(max_len=10),
        lambda c: c["model_config"].update(n_items=c["model_config"]["n_items"] + 1),
        lambda c: c["model_config"].update(unknown_setting=1),
        lambda c: c.update(format="behaviorlens-run/999"),
    ],
    ids=["d_model", "n_layers", "max_len", "n_items", "unknown-key", "format"],
)
def test_config_that_does_not_match_the_architecture_is_refused(copy: Path, dataset, edit) -> None:
    events, _ = dataset
    _edit_config(copy, edit)
    with pytest.raises(ArtifactError):
        Recommender.load(copy, events, device="cpu")


@pytest.mark.parametrize(
    "edit",
    [
        lambda c: c["rating_scale"].update(mean=c["rating_scale"]["mean"] + 1.0),
        lambda c: c["vocab"].update(items=c["vocab"]["items"][:-1]),
        lambda c: c.pop("weights_sha256"),
        lambda c: c.pop("vocab"),
    ],
    ids=["rating-scale", "vocab", "no-checksum", "no-vocab"],
)
def test_tampered_config_is_refused(copy: Path, dataset, edit) -> None:
    events, _ = dataset
    _edit_config(copy, edit)
    with pytest.raises(ArtifactError):
        Recommender.load(copy, events, device="cpu")


def test_missing_files_are_refused(copy: Path, dataset) -> None:
    events, _ = dataset
    (copy / "model.safetensors").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        Recommender.load(copy, events, device="cpu")
    with pytest.raises(ArtifactError, match="missing"):
        Recommender.load(copy / "nowhere", events, device="cpu")


def test_saved_config_is_strict_json_without_ratings(tiny_bert_dir, dataset, tmp_path: Path) -> None:
    events, items = dataset
    rec = _rec(tiny_bert_dir, train={"epochs": 1}).fit(events.drop(columns=[S.VALUE]), items)
    folder = rec.save(tmp_path / "run")

    def refuse(token: str):
        raise ValueError(f"invalid JSON constant {token}")

    json.loads((folder / "config.json").read_text(), parse_constant=refuse)


# -- the rating head's own checkpoint selection ---------------------------------------------------------------------


def test_rating_refit_never_worsens_valid_rmse_and_leaves_engagement_alone(tiny_bert_dir, dataset, tmp_path) -> None:
    from core.model.epochs import training_users
    from core.model.rating_refit import rating_parameters, refit_rating

    events, items = dataset
    rec = _rec(tiny_bert_dir, train={"rating_refit_epochs": 0, "epochs": 3}).fit(events, items)
    assert rec.rating_refit_ is None
    before_valid = rec.evaluate("valid")
    before_top = rec.recommend(rec.data_.users[0], k=5)
    frozen = {n: p.detach().clone() for n, p in rec.model_.named_parameters()}
    calls = []
    summary = refit_rating(
        rec.fitted(), training_users(rec.data_, rec.split_), epochs=4, lr=5e-3, patience=4, progress=calls.append
    )
    after_valid = rec.evaluate("valid")
    assert summary["valid_RMSE_before"] == pytest.approx(before_valid["RMSE"])
    assert after_valid["RMSE"] == pytest.approx(summary["valid_RMSE"]) and after_valid["RMSE"] <= before_valid["RMSE"]
    assert 1 <= len(calls) <= 4 and all(c["event"] == "rating_refit" for c in calls)
    # engagement is untouched: same metrics, same ranking, same engagement probabilities
    for key in ("HR@10", "NDCG@10", "MRR@10"):
        assert after_valid[key] == before_valid[key]
    after_top = rec.recommend(rec.data_.users[0], k=5)
    assert list(after_top[S.ITEM_ID]) == list(before_top[S.ITEM_ID])
    np.testing.assert_allclose(after_top["engagement"], before_top["engagement"], rtol=1e-6)
    trained = {id(p) for p in rating_parameters(rec.model_)}
    for name, p in rec.model_.named_parameters():
        if id(p) not in trained:
            torch.testing.assert_close(p, frozen[name], msg=name)
    if summary["epoch"] > 0:  # a refit epoch was kept: the ratings changed
        assert not np.allclose(after_top["rating"], before_top["rating"])


def test_default_fit_runs_the_rating_refit_and_saves_its_summary(fitted, saved, dataset) -> None:
    summary = fitted.rating_refit_
    assert summary is not None and summary["valid_RMSE"] <= summary["valid_RMSE_before"]
    assert Recommender.load(saved, dataset[0], device="cpu").rating_refit_ == pytest.approx(summary)


def test_the_opt_in_request_time_takes_the_data_s_return_gap(tiny_bert_dir, dataset) -> None:
    from core.data.batches import return_gap

    events, items = dataset
    rec = _rec(tiny_bert_dir, model={"use_request_time": True}, train={"epochs": 1, "rating_refit_epochs": 0})
    rec.fit(events, items)
    assert rec.model_.cfg.use_request_time and rec.model_.request.gap is not None
    assert rec.model_.cfg.request_gap == return_gap(rec.data_, rec.split_.train_end) > 0
    assert rec.recommend(rec.data_.users[0], k=3).shape[0] == 3


def test_moving_every_held_out_event_30_days_later_changes_no_default_metric(saved: Path, dataset) -> None:
    """The default protocol asks at the stand-in time: nothing of the held-out event, not even its
    timestamp, reaches the prediction. Asked at the event's own time, the same shift is visible."""
    events, _ = dataset
    order = events.sort_values([S.TIMESTAMP, S.ITEM_ID], kind="stable")
    last = order.groupby(S.USER_ID, sort=False).tail(1).index  # each user's test event
    shifted = events.copy()
    shifted.loc[last, S.TIMESTAMP] = shifted.loc[last, S.TIMESTAMP] + pd.Timedelta(days=30)
    moved = Recommender.load(saved, shifted, device="cpu")
    same = Recommender.load(saved, events, device="cpu")
    np.testing.assert_array_equal(moved.split_.test_pos, same.split_.test_pos)  # still the held-out events
    assert not np.array_equal(moved.data_.ts, same.data_.ts)
    for which in ("test", "valid"):
        assert moved.evaluate(which) == same.evaluate(which)
    known = [
        user_scores(rec.model_, rec.data_, rec.split_.users, rec.split_.test_pos, rec.device_, actual_time=True)[0]
        for rec in (moved, same)
    ]
    assert not np.allclose(known[0], known[1])  # asked at the event's own time, the shift reaches the scores
