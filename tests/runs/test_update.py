"""Updates of a run (``train --from RUN``): a warm start from its weights on newer data, with new items and a
new behavior, recorded as the new run's parent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_support import TINY_MODEL  # tests/tiny_support.py

from core.errors import ArtifactError, DataError
from core.ingest.options import IngestOptions
from core.ingest.pipeline import ingest
from core.model.config import ModelConfig
from core.model.network import BehaviorModel
from core.model.protocol import RatingScale
from core.model.warm_start import Parent, check_architecture, warm_start
from core.runs.records import list_runs, run_record
from core.runs.run import open_run
from core.runs.train import train_run

SETTINGS = {"device": "cpu", "exclude_seen": False, "model": dict(TINY_MODEL), "train": {"epochs": 2, "batch_size": 16}}


@pytest.fixture()
def datasets(ws, tmp_path: Path, tiny_data) -> tuple[str, str]:
    """("old", "new"): the first 70% of a generated log, and all of it plus events on three new items and of
    a new behavior ("gift")."""
    tiny_data(tmp_path / "data", 7, n_users=40, n_items=30, target_events=1500)
    events = pd.read_csv(tmp_path / "data" / "events.csv", dtype=str)
    events = events.sort_values("timestamp", kind="stable")
    old = events.iloc[: int(len(events) * 0.7)]
    last = events.iloc[-1]
    extra = pd.DataFrame(
        [
            {**last.to_dict(), "item_id": f"NEW{k}", "behavior": b, "value": "", "text": ""}
            for k in range(3)
            for b in ("view", "gift")
        ]
    )
    items = pd.read_csv(tmp_path / "data" / "items.csv", dtype=str)
    new_items = pd.DataFrame([{"item_id": f"NEW{k}", "title": f"brand new red shoe {k}"} for k in range(3)])
    old.to_csv(tmp_path / "old.csv", index=False)
    pd.concat([events, extra]).to_csv(tmp_path / "new.csv", index=False)
    items.to_csv(tmp_path / "old_items.csv", index=False)
    pd.concat([items, new_items]).to_csv(tmp_path / "items.csv", index=False)
    ingest(ws, tmp_path / "old.csv", tmp_path / "old_items.csv", IngestOptions(name="old"))
    ingest(ws, tmp_path / "new.csv", tmp_path / "items.csv", IngestOptions(name="new"))
    return "old", "new"


def test_an_update_starts_from_its_parent_and_records_it(ws, datasets: tuple[str, str], cli) -> None:
    parent = train_run(ws, datasets[0], SETTINGS)
    out = cli("train", "--from", parent, "--dataset", datasets[1], "--epochs", "1", "--json", workspace=ws.root)
    child = out.json()["run"]
    record = run_record(ws, child)
    assert record["config"]["parent"] == parent and record["status"] == "done"
    assert record["config"]["settings"]["train"]["epochs"] == 1
    assert record["metrics"]["test"]["NDCG@10"] is not None
    runs = list_runs(ws).set_index("run_id")
    assert runs.loc[child, "parent"] == parent and pd.isna(runs.loc[parent, "parent"])
    old_run, new_run = open_run(ws, parent), open_run(ws, child)
    carried = new_run.config["warm_start"]
    users_new = carried.pop("users_new")
    assert carried == {"run": parent, "items_kept": 30, "items_new": 3, "behaviors_new": 1}
    old_log, new_log = (pd.read_csv(ws.root.parent / f, dtype=str) for f in ("old.csv", "new.csv"))
    later = new_log[pd.to_datetime(new_log["timestamp"]) > pd.to_datetime(old_log["timestamp"]).max()]
    assert 0 < users_new <= later["user_id"].nunique() < new_log["user_id"].nunique()  # held-out events: not trained
    assert new_run.config["rating_scale"] == old_run.config["rating_scale"]  # the weights' units, kept
    assert new_run.config["model_config"]["request_gap"] == old_run.config["model_config"]["request_gap"]
    user = str(pd.read_csv(ws.root.parent / "old.csv", dtype=str)["user_id"][0])
    top = cli("recommend", "--run", child, "--user", user, "--json", workspace=ws.root).json()
    assert len(top["items"]) == 10
    audit = cli("audit", "--json", workspace=ws.root).json()
    assert any(e["action"] == "train" and f"updated from run {parent}" in e["detail"] for e in audit)


def test_the_warm_start_copies_every_weight_and_maps_item_and_behavior_rows(ws, datasets: tuple[str, str]) -> None:
    parent_id = train_run(ws, datasets[0], SETTINGS)
    saved = open_run(ws, parent_id).recommender()
    parent_model, parent_data = saved.model_, saved.data_
    new = open_run(ws, train_run(ws, datasets[1], SETTINGS)).recommender()  # only for the new vocabularies
    behaviors = ["", *parent_data.behaviors[1:], "gift"]
    cfg = ModelConfig(**{**parent_model.cfg.to_dict(), "n_items": new.data_.n_items, "n_behaviors": len(behaviors)})
    torch.manual_seed(3)
    model = BehaviorModel(cfg, new.model_.items.text, new.model_.items.text_of)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    parent = Parent(
        "p",
        {k: v.clone() for k, v in parent_model.state_dict().items()},
        [str(i) for i in parent_data.item_ids[1:]],
        list(parent_data.behaviors[1:]),
        parent_model.cfg.to_dict(),
        saved.scale_,
    )
    counts = warm_start(model, parent, new.data_.item_ids, behaviors)
    assert counts == {"items_kept": 30, "items_new": 3, "behaviors_new": 1}
    state = model.state_dict()
    old_row = {str(i): r for r, i in enumerate(parent_data.item_ids)}
    for r, item in enumerate(new.data_.item_ids[1:], start=1):
        for table in ("items.id_emb.weight", "engagement.item_bias.weight", "rating.item_bias.weight"):
            expected = parent.state[table][old_row[item]] if item in old_row else fresh[table][r]
            assert torch.equal(state[table][r], expected), (table, item)
    b = len(behaviors) - 1  # the new behavior keeps its fresh row; the others are the parent's
    assert torch.equal(state["events.behavior.weight"][:b], parent.state["events.behavior.weight"])
    assert torch.equal(state["events.behavior.weight"][b], fresh["events.behavior.weight"][b])
    assert torch.equal(state["history.blocks.0.qkv.weight"], parent.state["history.blocks.0.qkv.weight"])
    assert torch.equal(state["items.text"], new.model_.items.text)  # the new catalogue's text, not the parent's
    assert torch.equal(state["items.text_of"], new.model_.items.text_of)
    # so a shared item is represented as the parent represented it
    shared = [i for i in new.data_.item_ids[1:] if i in old_row][:5]
    new_idx = torch.as_tensor([list(new.data_.item_ids).index(i) for i in shared])
    old_idx = torch.as_tensor([old_row[i] for i in shared])
    parent_model.eval(), model.eval()
    assert torch.allclose(model.items(new_idx), parent_model.items(old_idx), atol=1e-6)


def test_an_update_keeps_its_parents_architecture_and_encoder() -> None:
    cfg = ModelConfig(n_items=5, n_behaviors=3, text_dim=8, **TINY_MODEL)
    parent = Parent("p", {}, [], [], {**cfg.to_dict(), "d_model": 32}, None, encoder_fingerprint="abc")  # type: ignore[arg-type]
    with pytest.raises(ArtifactError, match="encoder's files differ"):
        check_architecture(parent, cfg, "def")
    with pytest.raises(ArtifactError, match=r"these settings differ: d_model: 32 -> 16"):
        check_architecture(parent, cfg, "abc")


def test_only_a_finished_run_is_updated_and_the_cli_says_how(ws, datasets: tuple[str, str], cli) -> None:
    from core.runs.records import RUNNING, set_run

    set_run(ws, "live", datasets[0], RUNNING, {"dataset": datasets[0], "settings": SETTINGS}, None)
    with pytest.raises(DataError, match="run live is"):
        train_run(ws, datasets[1], SETTINGS, parent="live")
    both = cli("train", "--resume", "live", "--from", "live", workspace=ws.root)
    assert both.code == 2 and "--from RUN [--dataset NAME]" in both.err
    config = cli("train", "--from", "live", "--config", "x.json", workspace=ws.root)
    assert config.code == 2 and "--config and --request-time do not apply" in config.err


def test_an_update_trains_the_users_with_new_events_and_a_replay_sample() -> None:
    from core.data.sequences import build_sequences
    from core.model.epochs import epoch_users
    from core.model.warm_start import Parent

    ts = pd.to_datetime([100, 200, 300, 150, 160, 170, 400, 500, 600], unit="s")
    events = pd.DataFrame(
        {"user_id": list("aaabbbccc"), "item_id": list("xyzxyzxyz"), "timestamp": ts, "behavior": "view"}
    )
    data = build_sequences(events)
    parent = Parent("p", {}, [], [], {}, RatingScale(), horizon=250)
    train_end = data.offsets[1:] - 1  # each user's last event held out
    assert list(parent.new_users(data, train_end)) == [False, False, True]  # a's 300 is held out; c trains on 400+
    assert Parent("p", {}, [], [], {}, RatingScale()).new_users(data, train_end) is None  # no horizon: everyone
    users = np.arange(10)
    focus = np.zeros(10, dtype=bool)
    focus[[2, 7]] = True
    rng = np.random.default_rng(0)
    picked = epoch_users(users, focus, 0.25, rng)
    assert {2, 7} <= set(picked) and len(picked) == 2 + 2  # a quarter of the 8 others, drawn anew
    assert list(epoch_users(users, focus, 1.0, rng)) == list(users) and epoch_users(users, None, 0.0, rng) is users
    assert list(epoch_users(users, np.zeros(10, dtype=bool), 0.0, rng)) == list(users)  # nothing new: a plain epoch


def test_an_update_after_an_append_needs_no_second_dataset(ws, tmp_path: Path, tiny_data, cli) -> None:
    """The log appended to the parent's dataset: ``train --from RUN`` trains on the dataset as it is now."""
    tiny_data(tmp_path / "data", 7, n_users=40, n_items=30, target_events=1500)
    events = pd.read_csv(tmp_path / "data" / "events.csv", dtype=str).sort_values("timestamp", kind="stable")
    cut = int(len(events) * 0.7)
    events.iloc[:cut].to_csv(tmp_path / "old.csv", index=False)
    events.iloc[cut:].to_csv(tmp_path / "week.csv", index=False)
    ingest(ws, tmp_path / "old.csv", tmp_path / "data" / "items.csv", IngestOptions(name="shop"))
    parent = train_run(ws, "shop", SETTINGS)
    assert cli("ingest", str(tmp_path / "week.csv"), "--append-to", "shop", workspace=ws.root).code == 0
    child = cli("train", "--from", parent, "--epochs", "1", "--json", workspace=ws.root).json()["run"]
    rec = open_run(ws, child).recommender()
    assert run_record(ws, child)["dataset"] == "shop" and len(rec.data_.users) == ws.dataset("shop").n_users
    assert 0 < open_run(ws, child).config["warm_start"]["users_new"] < ws.dataset("shop").n_users
    assert len(open_run(ws, parent).recommender().data_.item) == cut  # the parent still reads its own rows
