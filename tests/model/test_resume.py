"""An interrupted run resumes from its last saved epoch (training state in safetensors + JSON)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from tiny_support import TINY_MODEL  # tests/tiny_support.py

from core.errors import NotFoundError
from core.runs.records import list_runs, run_record
from core.runs.run import open_run
from core.runs.train import resume_run, train_run
from core.store.run_folder import STATE_JSON, STATE_TENSORS

TINY = {
    "model": dict(TINY_MODEL),
    "train": {"batch_size": 16, "epochs": 3, "patience": 10},
}


@pytest.fixture()
def dataset(ws, tmp_path: Path, tiny_dataset) -> str:
    """The name of a generated dataset (40 users, 30 items) ingested into ``ws``."""
    return tiny_dataset(tmp_path, 3, n_users=40, n_items=30, target_events=1500, workspace=ws).name


def test_cancelled_run_resumes_from_its_last_epoch(ws, dataset: str) -> None:
    seen: list[int] = []

    def cancel_in_epoch_two() -> bool:
        return bool(seen) and seen[-1] >= 1

    def progress(event: dict) -> None:
        if event["event"] == "epoch":
            seen.append(event["epoch"])

    run_id = train_run(ws, dataset, TINY, progress=progress, cancel=cancel_in_epoch_two)
    folder = ws.run_dir(run_id)
    assert run_record(ws, run_id)["status"] == "cancelled"
    assert (folder / STATE_JSON).is_file() and (folder / STATE_TENSORS).is_file()
    assert seen == [1]

    with safe_open(str(folder / STATE_TENSORS), "pt") as saved:  # the frozen text table is written once
        keys = set(saved.keys())
    assert "model.items.text" in keys and "best.items.text" not in keys and "best.items.id_emb.weight" in keys

    resumed: list[int] = []
    resume_run(open_run(ws, run_id), progress=lambda e: resumed.append(e["epoch"]) if e["event"] == "epoch" else None)
    assert resumed == [2, 3]  # continues after epoch 1, not from scratch
    record = run_record(ws, run_id)
    assert record["status"] == "done"
    assert record["metrics"]["test"]["NDCG@10"] is not None
    assert not (folder / STATE_JSON).exists()  # a finished run keeps only its model
    assert list(list_runs(ws)["run_id"]) == [run_id]


def test_a_finished_run_has_nothing_to_resume(ws, dataset: str) -> None:
    run_id = train_run(ws, dataset, {**TINY, "train": {**TINY["train"], "epochs": 1}})
    with pytest.raises(NotFoundError, match="no saved training state"):
        resume_run(open_run(ws, run_id))


def _tiny_parts() -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.nn.Module]:
    model, loss_fn = torch.nn.Linear(3, 2), torch.nn.Linear(1, 1)
    optimizer = torch.optim.AdamW(list(model.parameters()) + list(loss_fn.parameters()))
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()  # AdamW now holds moments to save
    return model, optimizer, loss_fn


@pytest.mark.parametrize("killed_at", ["before_json", "before_rename"])
def test_a_checkpoint_killed_mid_save_leaves_a_matching_pair(tmp_path: Path, monkeypatch, killed_at: str) -> None:
    """A kill between the tensors and the JSON (or between the JSON and the last rename) of a checkpoint
    leaves a pair that loads: the previous epoch's, or the new one's."""
    from core.model import train_state as T
    from core.model.training import FitState

    model, optimizer, loss_fn = _tiny_parts()
    T.save_train_state(tmp_path, model, optimizer, loss_fn, FitState(), epoch=1)
    with torch.no_grad():
        model.weight.add_(1.0)
    saved = model.weight.detach().clone()

    class Killed(Exception):
        pass

    def kill(*_args: object, **_kwargs: object) -> None:
        raise Killed

    if killed_at == "before_json":
        monkeypatch.setattr(T, "save_json", kill)
    else:  # train_state's own rename only (the file writes rename too)
        monkeypatch.setattr(T, "os", _Killer(kill))
    with pytest.raises(Killed):
        T.save_train_state(tmp_path, model, optimizer, loss_fn, FitState(), epoch=2)
    monkeypatch.undo()

    fresh, fresh_opt, fresh_loss = _tiny_parts()
    assert T.has_train_state(tmp_path)
    state = T.load_train_state(tmp_path, fresh, fresh_opt, fresh_loss)
    if killed_at == "before_json":
        assert state.epochs_done == 1 and not torch.equal(fresh.weight, saved)
    else:
        assert state.epochs_done == 2 and torch.equal(fresh.weight, saved)
    if killed_at == "before_rename":  # the load finished the interrupted save
        assert not (tmp_path / (STATE_TENSORS + T.PENDING_SUFFIX)).exists()


class _Killer:
    """Stands in for the ``os`` module inside train_state: ``replace`` is killed."""

    def __init__(self, kill) -> None:
        self.replace = kill


def test_the_best_state_shares_the_frozen_text_table_and_copies_the_rest() -> None:
    from core.model.config import ModelConfig
    from core.model.network import BehaviorModel
    from core.model.training import snapshot

    model = BehaviorModel(ModelConfig(n_items=5, n_behaviors=3, text_dim=4, d_model=8, n_heads=2), torch.randn(6, 4))
    frozen, tuned = snapshot(model, tuned=False), snapshot(model, tuned=True)
    assert frozen["items.text"].data_ptr() == model.items.text.data_ptr()  # the same memory, not a copy
    assert tuned["items.text"].data_ptr() != model.items.text.data_ptr()  # a fine-tuned encoder changes it
    weight = model.items.id_emb.weight
    assert frozen["items.id_emb.weight"].data_ptr() != weight.data_ptr()
    with torch.no_grad():
        weight.add_(1.0)  # training moves the weights; the snapshot keeps the epoch's
    assert not torch.equal(frozen["items.id_emb.weight"], weight)
