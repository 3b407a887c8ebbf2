"""Training a dataset into a run folder, checkpointing every epoch, and resuming an interrupted run.

A run folder holds ``model.safetensors`` + ``config.json`` (the best model),
``metrics.json`` and, while training, ``train_state.safetensors`` +
``train_state.json`` so that an interrupted run resumes from its last epoch.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from core import schema as S
from core._checks import finite_or_none
from core.errors import DataError
from core.model import distributed
from core.model.config import check_settings
from core.model.recommender import Recommender
from core.model.train_state import save_train_state
from core.model.training import FitState, snapshot
from core.model.warm_start import Parent, read_parent
from core.progress import CancelFn, ProgressFn
from core.runs.lifecycle import resuming
from core.runs.owner import owning
from core.runs.records import (
    CANCELLED,
    DONE,
    FAILED,
    PICKABLE,
    RUNNING,
    new_run_id,
    pick_metrics,
    run_record,
    set_run,
)
from core.runs.run import Run, open_run
from core.runs.scores import new_items_figures, new_items_summary
from core.store.files import save_json
from core.store.lineage import BOUND_KEY
from core.store.run_folder import METRICS_FILE, PROGRESS_FILE, RUN_FILE, STATE_JSON, STATE_TENSORS
from core.store.seals import mark_keyed
from core.store.versions import DATA_KEY, check_stamp, data_stamp
from core.store.workspace import Workspace

UPDATE_EPOCHS = 5  # an update trains a few epochs from its parent's weights (early stopping still applies)


def train_run(
    ws: Workspace,
    dataset: str,
    settings: dict[str, Any],
    *,
    run_id: str | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    resume: bool = False,
    parent: str | None = None,
) -> str:
    """Train ``dataset`` with ``settings`` (Recommender keyword arguments) into a run; its id.

    With ``resume`` the run's saved training state (if any) is loaded and training continues. With ``parent``
    (a run ID) training starts from that run's weights (:mod:`core.model.warm_start`); the run records it.

    Started by an elastic launcher with several processes (:mod:`core.model.distributed`), every rank trains its
    share of each batch; rank 0 alone records and writes the run, the others read the rows rank 0 stamped.
    """
    ws.dataset(dataset)
    rec = Recommender.from_settings(settings)
    check_settings(rec.get_settings())  # a bad setting is refused before the run is recorded
    if resume and run_id is not None:
        parent = run_record(ws, run_id)["config"].get("parent")
    # every read of the workspace before the ranks meet: rank 0 then holds its lock until the others have the rows
    warm = None if parent is None else _parent(ws, parent)
    group = distributed.setup(str(settings.get("device", "auto")))
    run_id = distributed.broadcast(run_id or new_run_id(dataset), group)  # rank 0's
    folder = ws.run_dir(run_id)
    if group is not None and not group.leader:
        return _follow(ws, dataset, settings, run_id, resume, warm, group)
    config: dict[str, Any] = {
        "dataset": dataset,
        "settings": rec.get_settings(),
        **({"parent": parent} if parent else {}),
    }
    if group is not None:
        config["processes"] = group.world  # trained data-parallel (core.model.distributed)
    with owning(folder, run_id):  # owner.json before the row reads running, and a heartbeat until it has ended
        with ws.lock():  # the stamp, the running row and the rows trained on are one snapshot: an ingest waits
            config[DATA_KEY], bound = _stamp(ws, run_id, dataset, resume)
            events, items = ws.events(dataset, below_row=bound), ws.items(dataset)
            if group is not None:  # the other ranks read exactly these rows
                distributed.broadcast(_row_end(ws, dataset) if bound is None else bound, group)
            set_run(ws, run_id, dataset, RUNNING, config, None)
            mark_keyed(ws, run_id)  # its configs are sealed with the workspace key: an unkeyed one is refused
        try:
            save_json(folder / RUN_FILE, {"run": run_id, **config})
            rec.fit(
                events,
                items,
                progress=progress,
                cancel=cancel,
                cache_dir=ws.cache_dir / "embeddings",
                on_epoch=lambda r, st, ep: _checkpoint(r, folder, ws.secret_key(), st, ep),
                resume_from=folder if resume else None,
                warm_from=warm,
            )
            metrics = _finish(rec, folder, ws.secret_key())
        except BaseException:
            set_run(ws, run_id, dataset, FAILED, config, None)
            raise
        set_run(ws, run_id, dataset, CANCELLED if rec.cancelled_ else DONE, config, metrics)
    return run_id


def _follow(
    ws: Workspace,
    dataset: str,
    settings: dict[str, Any],
    run_id: str,
    resume: bool,
    warm: Parent | None,
    group: distributed.Group,
) -> str:
    """A rank other than 0: the same training on the rows rank 0 stamped, writing nothing (no rating refit: rank 0
    refits alone after training)."""
    bound = distributed.broadcast(None, group)
    rec = Recommender.from_settings({**settings, "train": {**(settings.get("train") or {}), "rating_refit_epochs": 0}})
    folder = ws.run_dir(run_id)
    rec.fit(
        ws.events(dataset, below_row=bound),
        ws.items(dataset),
        cache_dir=ws.cache_dir / "embeddings",
        resume_from=folder if resume else None,
        warm_from=warm,
    )
    return run_id


def _row_end(ws: Workspace, dataset: str) -> int:
    """One past the dataset's highest stored row number (0 when it has none)."""
    with ws.connect() as con:
        row = con.execute(f"SELECT max({S.ROW}) FROM events WHERE {S.DATASET} = ?", [dataset]).fetchone()
    return 0 if row is None or row[0] is None else int(row[0]) + 1


def resume_run(run: Run, progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> str:
    """Continue an interrupted, cancelled or failed run from its last saved epoch, or from scratch with its recorded
    settings (same run ID) when it was stopped before its first checkpoint.

    In a multi-process launch rank 0 takes the run over; the other ranks follow it (:func:`train_run`).

    Raises:
        RunBusyError: the run's owner is alive (it is training now).
        NotFoundError: the run is done: there is nothing to resume.
    """
    if distributed.follower():  # rank 0 checks and claims the run; this rank trains its share and writes nothing
        return train_run(run.workspace, run.dataset, run.settings, run_id=run.id, resume=True)
    with resuming(run.workspace, run.id):  # checked and claimed for this process under the workspace lock
        return train_run(
            run.workspace, run.dataset, run.settings, run_id=run.id, progress=progress, cancel=cancel, resume=True
        )


def update_settings(run: Run, epochs: int | None = None, device: str | None = None) -> dict[str, Any]:
    """The settings of an update of ``run`` (``train --from``): the run's own, with ``epochs`` (default
    :data:`UPDATE_EPOCHS`) and, when given, ``device``."""
    settings = copy.deepcopy(run.settings)
    settings["train"] = {**(settings.get("train") or {}), "epochs": UPDATE_EPOCHS if epochs is None else epochs}
    if device is not None:
        settings["device"] = device
    return settings


def _parent(ws: Workspace, run_id: str) -> Parent:
    """The saved model a run starts from: its checked config (seal, types) and its weights."""
    run = open_run(ws, run_id)
    if run.status not in PICKABLE:
        raise DataError(f"run {run_id} is {run.status}: only a done or cancelled run can be updated")
    return read_parent(run_id, run.folder, run.config, _horizon(ws, run))


def _horizon(ws: Workspace, run: Run) -> int | None:
    """The time of the last event run ``run`` trained on (seconds since the epoch): an update trains mostly on the
    users with later events. None when its rows are gone (a deleted dataset)."""
    bound = (run.data_stamp or {}).get(BOUND_KEY)
    where, params = (f" AND {S.ROW} < ?", [run.dataset, int(bound)]) if bound is not None else ("", [run.dataset])
    with ws.connect() as con:
        row = con.execute(
            f"SELECT floor(epoch(max({S.TIMESTAMP})))::BIGINT FROM events WHERE {S.DATASET} = ?{where}", params
        ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def _stamp(ws: Workspace, run_id: str, dataset: str, resume: bool) -> tuple[dict[str, Any], int | None]:
    """The dataset stamp the run records and the bound of the rows it reads; a resumed run keeps its own stamp,
    after checking the data still matches it, and reads no row appended since."""
    if resume:
        recorded = run_record(ws, run_id)["config"].get(DATA_KEY)
        bound = check_stamp(ws, dataset, recorded, run_id)  # runs saved before stamps have none: not checked
        if recorded:
            return dict(recorded), bound
    stamp = data_stamp(ws, dataset)
    return stamp, None  # every row: the stamp was just made


def _finish(rec: Recommender, folder: Path, key: bytes) -> dict[str, Any]:
    """Save the best model and its metrics (with items held out of training: their new-items figures too); a
    finished run drops its training state."""
    rec.save(folder, key)  # sealed with the workspace key
    if not rec.cancelled_:
        for name in (STATE_TENSORS, STATE_JSON):
            (folder / name).unlink(missing_ok=True)
    test, valid = rec.evaluate("test"), rec.evaluate("valid")
    metrics = {
        "valid": pick_metrics(valid),
        "test": pick_metrics(test),
        "baselines": {"test": test["baselines"], "valid": valid["baselines"]},
        "protocol": test["label"],
        "request_time": test["request_time"],
        # the rest of `evaluate`'s header, so that `train` reports these figures without evaluating them again
        "protocol_name": test["protocol"],
        "exclude_seen": rec.protocol_.exclude_seen,
        "target_behavior": rec.protocol_.target_behavior,
        "best_epoch": rec.best_epoch_,
        "privacy": getattr(rec, "privacy_", None),  # a private run's epsilon spent (core.model.privacy)
    }
    if rec.held_out_ is not None:  # each user's last event on a held-out item (core.model.new_items)
        metrics["new_items"] = new_items_summary(new_items_figures(rec))
    save_json(folder / METRICS_FILE, finite_or_none({**metrics, "history": rec.history_}))
    return metrics


def _checkpoint(rec: Recommender, folder: Path, key: bytes, state: FitState, epoch: int) -> None:
    """After every epoch: the training state and the best model so far (a crash loses one epoch)."""
    save_train_state(folder, rec.model_, rec.optimizer_, rec.loss_fn_, state, epoch, rec.tuner_)
    current = snapshot(rec.model_, rec.tuner_ is not None)  # the frozen text table is shared, not copied
    if state.best_state is not None:
        rec.model_.load_state_dict(state.best_state)
    rec.history_, rec.best_epoch_, rec.privacy_ = state.history, state.best_epoch, state.privacy
    rec.tuned_state_ = state.best_tuner  # a fine-tuned encoder's weights at the best epoch (its adapter file)
    rec.save(folder, key)  # sealed with the workspace key
    rec.model_.load_state_dict(current)
    save_json(
        folder / PROGRESS_FILE,
        finite_or_none({"epoch": epoch, "best_epoch": state.best_epoch, "history": state.history}),
    )
