"""The ``Run`` handle: one saved run of a workspace, what every run-level operation takes.

``open_run(workspace, run_id)`` reads the run's row (dataset, status, settings); the run
folder's ``config.json`` (protocol, vocabulary, weights digest) is read on first use and
the fitted :class:`~core.model.recommender.Recommender` is loaded on first use, once.

A handle may be shared between threads (the dashboard keeps one per run and weights
digest for every browser session): the recommender is only read after loading, and the
results derived from it (fusion candidates, explanations, influence reports) are kept in
a small memo behind a lock, bounded per kind, so that a second analyst asking the same
question gets the same object without recomputing it. Nothing of one analyst's state
lives here: what they picked or uploaded stays in their own session.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar, overload

import numpy as np
import pandas as pd

from core import schema as S
from core.errors import ArtifactError
from core.explain.subject import Titles, titles_of
from core.model.protocol import STANDIN, Protocol, TargetChoice, check_request_time, resolve_target
from core.model.recommender import Recommender
from core.model.saved_config import check_saved_config
from core.runs.records import run_record
from core.store.files import load_json
from core.store.run_folder import CONFIG_FILE
from core.store.seals import check_run_seal
from core.store.versions import DATA_KEY, check_stamp
from core.store.workspace import Workspace

T = TypeVar("T")
MEMO_SIZES: dict[str, int] = {"default": 16, "explanation": 64, "counterfactual": 64, "tokens": 32}
_UNSET = object()


def run_digest(workspace: Workspace, run_id: str) -> str | None:
    """The checksum of a run's saved weights (None before its first model is saved): a retrained run gets a new one."""
    path = workspace.run_dir(run_id) / CONFIG_FILE
    return load_json(path).get("weights_sha256") if path.is_file() else None


class Run:
    """A saved run: its dataset, settings, config and weights digest, and a lazily loaded recommender.

    Attributes:
        workspace: the workspace it belongs to.
        id: the run ID.
        dataset: the dataset it was trained on.
        status: running, done, cancelled or failed (when the handle was opened).
        mark: None, or such as "trained on data since deleted" (a user was forgotten since: retrain it).
        settings: the Recommender settings it was trained with.
        metrics: the stored valid/test metrics (None while running or after a failure).
        data_stamp: the dataset version, event count and digest it was trained on (None: a run saved before
            stamps, which is loaded unchecked); loading refuses once the dataset's events differ from it.
        folder: the run folder.
        device: where the recommender is loaded (auto, cpu or cuda).
    """

    def __init__(self, workspace: Workspace, run_id: str, device: str = "auto") -> None:
        record = run_record(workspace, run_id)
        self.device = device
        self.workspace = workspace
        self.id: str = run_id
        self.dataset: str = record["dataset"]
        self.status: str = record["status"]
        self.mark: str | None = record.get("mark")  # e.g. trained on data since deleted (core.runs.forget)
        self.settings: dict[str, Any] = dict(record["config"].get("settings") or {})
        self.data_stamp: dict[str, Any] | None = record["config"].get(DATA_KEY)  # None: saved before stamps
        self.metrics: dict[str, Any] | None = record["metrics"]
        self.folder: Path = workspace.run_dir(run_id)
        self._lock = threading.RLock()
        self._load_lock = threading.Lock()
        self._config: dict[str, Any] | None = None
        self._recommender: Recommender | None = None
        self._memo: dict[str, OrderedDict[Hashable, Any]] = {}

    def __repr__(self) -> str:
        return f"Run({self.id!r}, dataset={self.dataset!r}, status={self.status!r})"

    # -- the saved model ------------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        """The run folder's ``config.json`` (read once), its seal and types checked; ArtifactError when the run has
        no saved model or its config was altered."""
        with self._lock:
            if self._config is None:
                path = self.folder / CONFIG_FILE
                if not path.is_file():
                    raise ArtifactError(
                        f"run {self.id} has no saved model yet (status {self.status}): {path} is missing"
                    )
                config = load_json(path)
                self._check_seal(config, path)
                check_saved_config(config, path)
                self._config = config
            return self._config

    def _check_seal(self, config: dict[str, Any], path: Path) -> None:
        """The config's seal, under the workspace key (:func:`core.store.seals.check_run_seal`)."""
        check_run_seal(self.workspace, self.id, config, path)

    @property
    def weights_digest(self) -> str | None:
        """The checksum of the saved weights: what every cache of this run is keyed by."""
        return self.config.get("weights_sha256")

    @property
    def privacy(self) -> dict[str, Any] | None:
        """A private run's epsilon spent and mechanism (core.model.privacy); None for a run trained without DP."""
        found = self.config.get("privacy")
        return dict(found) if isinstance(found, dict) else None

    def recommender(self) -> Recommender:
        """The fitted recommender over the dataset's events, loaded on first use (once, even across threads)."""
        with self._load_lock:
            if self._recommender is None:
                self.config  # noqa: B018 - a clear error when the run has no saved model
                with self.workspace.lock():  # the check and the read see the same rows
                    bound = check_stamp(self.workspace, self.dataset, self.data_stamp, self.id)
                    events = self.workspace.events(self.dataset, below_row=bound)  # rows appended since: not its
                self._recommender = Recommender.load(
                    self.folder,
                    events,
                    device=self.device,
                    check=self._check_seal,
                    cache_dir=self.workspace.cache_dir / "embeddings",  # the events' own texts, as it trained
                )
            return self._recommender

    @property
    def loaded(self) -> bool:
        """Whether the recommender is in memory already."""
        return self._recommender is not None

    def protocol(
        self, exclude_seen: bool | None = None, target_behavior: TargetChoice = ..., request_time: str | None = None
    ) -> Protocol:
        """The run's evaluation protocol (from its config, no model loaded), with optional overrides.

        Runs saved before the request time was a protocol setting are read at the stand-in time."""
        saved = self.config["protocol"]
        return Protocol(
            bool(saved["exclude_seen"]) if exclude_seen is None else bool(exclude_seen),
            resolve_target(target_behavior, saved["target_behavior"]),
            request_time=check_request_time(request_time or saved.get("request_time", STANDIN)),
        )

    def item_ids(self) -> np.ndarray:
        """[N+1] item IDs of the model's vocabulary; index 0 = padding ("")."""
        return self.memo(
            "default", ("item_ids",), lambda: np.asarray(["", *self.config["vocab"]["items"]], dtype=object)
        )

    def items(self) -> pd.DataFrame:
        """The dataset's item catalogue (read once)."""
        return self.memo("default", ("items",), lambda: self.workspace.items(self.dataset))

    def titles(self) -> Titles:
        """{item ID: (title, item text)} of the dataset's catalogue."""
        return self.memo("default", ("titles",), lambda: titles_of(self.items()))

    def item_titles(self) -> pd.DataFrame:
        """``[item_id, title]`` of the dataset's catalogue (for tables of items)."""
        return self.items()[[S.ITEM_ID, S.ITEM_TITLE]]

    def stored_user(self, user_id: str) -> str:
        """The stored ID (pseudonym where the dataset has them) of an original user ID; NotFoundError if absent."""
        return self.workspace.resolve_user(self.dataset, user_id)

    # -- derived results --------------------------------------------------------------------
    @overload
    def memo(self, kind: str, key: Hashable, compute: Callable[[], T]) -> T: ...

    @overload
    def memo(self, kind: str, key: Hashable, compute: None) -> Any: ...

    def memo(self, kind: str, key: Hashable, compute: Callable[[], T] | None) -> T | None:
        """The result kept under (``kind``, ``key``); computed (outside the lock) and kept when missing.

        With ``compute=None`` only a kept result is returned (None when there is none). Each kind
        keeps its newest ``MEMO_SIZES[kind]`` results (``default``'s size for other kinds).
        """
        with self._lock:
            table = self._memo.setdefault(kind, OrderedDict())
            found = table.get(key, _UNSET)
            if found is not _UNSET:
                table.move_to_end(key)
                return found
        if compute is None:
            return None
        value = compute()
        with self._lock:
            table[key] = value
            while len(table) > MEMO_SIZES.get(kind, MEMO_SIZES["default"]):
                table.popitem(last=False)
        return value


def open_run(workspace: Workspace, run_id: str, device: str = "auto") -> Run:
    """A handle on a saved run (its recommender loads on ``device`` when first used); NotFoundError when the
    workspace has no such run."""
    return Run(workspace, run_id, device)
