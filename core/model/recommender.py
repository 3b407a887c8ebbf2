"""The front object, scikit-learn style: the constructor stores settings, ``fit`` validates and trains.

Fitted attributes end in ``_``: ``model_``, ``data_``, ``split_``, ``protocol_``, ``scale_``,
``device_`` (together: :meth:`Recommender.fitted`), ``history_``, ``best_epoch_``,
``cancelled_``, ``rating_refit_``, ``encoder_fingerprint_``, ``held_out_`` (the items held out of
training, :mod:`core.model.held_out`, or None; ``data_`` then lacks their events) and ``every_`` (all
events where items are held out, else None). The settings are checked against :mod:`core.model.config`;
``save``/``load`` (:mod:`core.model.checkpoint`) use safetensors + JSON only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from core.data.batches import default_exclude_seen, leave_last_out
from core.data.sequences import SequenceData
from core.errors import DataError, NotFittedError
from core.model.architecture import model_config
from core.model.baselines import baseline_metrics
from core.model.checkpoint import ConfigCheck, load_checkpoint, save_checkpoint, saved_sequences
from core.model.config import SIGMOID_LOSSES, TrainConfig, check_settings, check_settings_object
from core.model.encoder_spec import Adapter, encoder_folder, encoder_spec
from core.model.epochs import standardize, training_users
from core.model.evaluation import evaluate_split
from core.model.event_text import attach_event_text, share_texts
from core.model.finetune import finish_tuning, make_tuner
from core.model.fitted import Fitted, pick_device
from core.model.held_out import (
    HELD_OUT_KEY,
    blocked_items,
    choose_held_out,
    held_out_index,
    read_held_out,
    silence_rows,
    training_sequences,
)
from core.model.item_table import encode_items, item_texts
from core.model.losses import MultiTaskLoss
from core.model.network import BehaviorModel
from core.model.optimizer import make_optimizer
from core.model.protocol import STANDIN, Protocol, RatingScale, TargetChoice, resolve_target
from core.model.rating_refit import refit_rating
from core.model.recommendation import top_items
from core.model.train_state import has_train_state, load_train_state
from core.model.training import FitState, Hooks, fit, refits_rating
from core.model.warm_start import Parent, check_architecture, warm_start
from core.progress import CancelFn, ProgressFn


class Recommender:
    """Multi-task behavior-sequence recommender with a pretrained text encoder on the item side."""

    model_: BehaviorModel
    data_: SequenceData
    best_epoch_: int | None
    encoder_fingerprint_: str | None

    def __init__(
        self,
        *,
        encoder: str | None = None,
        heads: str = "both",
        exclude_seen: bool | None = None,
        target_behavior: str | None = None,
        request_time: str = STANDIN,
        cold_items: float = 0.0,
        device: str = "auto",
        model: dict[str, Any] | None = None,
        train: dict[str, Any] | None = None,
    ) -> None:
        self.encoder = encoder
        self.heads = heads
        self.exclude_seen = exclude_seen
        self.target_behavior = target_behavior
        self.request_time = request_time
        self.cold_items = cold_items
        self.device = device
        self.model = dict(model or {})
        self.train = dict(train or {})

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Recommender:
        """Build from a settings dict (a run config); unknown keys are a DataError naming them."""
        return cls(**check_settings_object(settings))

    def get_settings(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder,
            "heads": self.heads,
            "exclude_seen": self.exclude_seen,
            "target_behavior": self.target_behavior,
            "request_time": self.request_time,
            **({"cold_items": self.cold_items} if self.cold_items else {}),  # runs without it read as before
            "device": self.device,
            "model": self.model,
            "train": self.train,
        }

    # -- settings ----------------------------------------------------------------
    def _train_config(self) -> TrainConfig:
        check_settings(self.get_settings())
        cfg = TrainConfig(**self.train)
        if cfg.privacy is not None:
            cfg.rating_refit_epochs = 0  # a second pass over the users, outside the accounting
        if self.heads != "both":
            cfg.loss_weights = [1.0, 0.0] if self.heads == "engagement" else [0.0, 1.0]
        return cfg

    # -- fit ---------------------------------------------------------------------
    def fit(
        self,
        events: pd.DataFrame,
        items: pd.DataFrame | None = None,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        on_epoch: Callable[[Recommender, FitState, int], None] | None = None,
        resume_from: str | os.PathLike[str] | None = None,
        warm_from: Parent | None = None,
    ) -> Recommender:
        """Index the events, encode item text, train; sets ``model_``, ``data_``, ``split_``, ``history_``.
        ``resume_from``: a folder with a saved training state; training continues after its epoch.
        ``warm_from``: a saved model to start from (:mod:`core.model.warm_start`), its architecture and scale kept.
        """
        cfg = self._train_config()
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        self.held_out_ = choose_held_out(events, self.cold_items, cfg.seed)
        data, self.every_ = training_sequences(events, items, self.held_out_)  # the training view, all events
        data = share_texts(data, self.every_)  # one table of event text vectors for both
        self._prepare(data, item_texts(data, items), cache_dir, progress, warm_from)
        blocked = blocked_items(data, self.held_out_)
        self.loss_fn_ = MultiTaskLoss(cfg, data.n_items, self.scale_, blocked).to(self.device_)
        self.optimizer_ = make_optimizer(self.model_, self.loss_fn_, cfg, self.tuner_)
        state = FitState()
        if resume_from is not None and has_train_state(Path(resume_from)):
            state = load_train_state(Path(resume_from), self.model_, self.optimizer_, self.loss_fn_, self.tuner_)
        hooks = Hooks(progress, cancel, None if on_epoch is None else (lambda st, ep: on_epoch(self, st, ep)))
        self._silence()
        state = fit(
            self.fitted(),
            cfg,
            state=state,
            loss_fn=self.loss_fn_,
            optimizer=self.optimizer_,
            hooks=hooks,
            focus=self.focus_,
            tuner=self.tuner_,
        )
        if state.best_state is not None:
            self.model_.load_state_dict(state.best_state)
        self.tuned_state_ = finish_tuning(self, state.best_tuner, cache_dir)
        self._silence()
        self.rating_refit_ = None
        if refits_rating(cfg) and not state.cancelled and state.best_state is not None:
            self.rating_refit_ = refit_rating(
                self.fitted(),
                training_users(data, self.split_),
                cfg.rating_refit_epochs,
                cfg.lr,
                seed=cfg.seed,
                progress=progress,
            )
        self.history_, self.best_epoch_, self.cancelled_ = state.history, state.best_epoch, state.cancelled
        self.privacy_ = state.privacy
        return self

    def _prepare(
        self, data: SequenceData, texts: list[str], cache_dir: Any, progress: ProgressFn | None, warm: Parent | None
    ) -> None:
        self.device_ = pick_device(self.device)
        self.data_ = data
        self.split_ = leave_last_out(data, self.target_behavior)
        if len(self.split_.users) == 0:
            raise DataError("no user has enough events to hold out a validation and a test event (3+ needed)")
        exclude = default_exclude_seen(data) if self.exclude_seen is None else bool(self.exclude_seen)
        share = self.held_out_.share if self.held_out_ else 0.0
        self.protocol_ = Protocol(exclude, self.target_behavior, request_time=self.request_time, held_out_share=share)
        # an update keeps its parent's units; a private run's ratings are not standardized by the users' own mean
        # and spread (released with the model)
        private = self.train.get("privacy")
        self.scale_ = warm.scale if warm else RatingScale() if private else standardize(data, self.split_)
        spec, start = encoder_spec(self.encoder), None if warm is None else warm.adapter  # an update reads its parent's
        table, text_of, self.encoder_fingerprint_ = encode_items(
            spec.path, texts, cache_dir, self.device_.type, progress, start
        )
        private, dim = bool(self.train.get("privacy")), table.shape[1]
        cfg = model_config(self.model, data, dim, self.split_, self.protocol_, self.scale_, private, warm)
        self.model_ = BehaviorModel(cfg, table, text_of).to(self.device_)
        every = data if self.every_ is None else self.every_  # the texts of the held-out items' events too
        attach_event_text(self.model_, every, spec.path, cache_dir, self.device_.type, progress, adapter=start)
        self.tuner_ = make_tuner(spec, texts, self.model_, every, self.device_, start)  # None: the encoder is frozen
        self.warm_start_, self.focus_ = None, None  # an update's users with new events (core.model.training)
        if warm is not None:
            check_architecture(warm, cfg, self.encoder_fingerprint_)
            self.focus_ = None if self.train.get("privacy") else warm.new_users(data, self.split_.train_end)
            users_new = None if self.focus_ is None else int(self.focus_.sum())
            self.warm_start_ = {"run": warm.run, **warm_start(self.model_, warm, data.item_ids, data.behaviors)}
            self.warm_start_["users_new"] = users_new

    def _silence(self) -> None:
        """Held-out items' ID rows and item biases at zero (:func:`~core.model.held_out.silence_rows`)."""
        if self.held_out_ is not None:
            silence_rows(self.model_, held_out_index(self.data_, self.held_out_))

    # -- use ---------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("this Recommender is not fitted yet: call fit() or Recommender.load()")

    def fitted(self) -> Fitted:
        """The fitted model, data, split, protocol, rating scale and device as one bundle."""
        self._check_fitted()
        return Fitted(self.model_, self.data_, self.split_, self.protocol_, self.scale_, self.device_)

    def evaluate(
        self,
        which: str = "test",
        exclude_seen: bool | None = None,
        target_behavior: TargetChoice = ...,
        negatives: int | None = None,
        request_time: str | None = None,
    ) -> dict[str, Any]:
        """Metrics of the held-out events; defaults follow the fitted protocol."""
        self._check_fitted()
        if which not in ("valid", "test"):
            raise DataError(f"which={which!r}: expected valid or test")
        target = resolve_target(target_behavior, self.protocol_.target_behavior)
        protocol = self.protocol_.varied(exclude_seen, target, negatives, request_time)
        split = self.split_ if target == self.protocol_.target_behavior else leave_last_out(self.data_, target)
        out = evaluate_split(replace(self.fitted(), split=split, protocol=protocol), which)
        return {**protocol.header(), **out, "baselines": baseline_metrics(self.data_, split, protocol, which)}

    def recommend(self, user_id: str, k: int = 10, exclude_seen: bool | None = None) -> pd.DataFrame:
        """Top-``k`` items for a stored user ID, with both head outputs (see ``core.model.recommendation``)."""
        self._check_fitted()
        exclude = self.protocol_.exclude_seen if exclude_seen is None else exclude_seen
        return top_items(self.fitted(), user_id, k, exclude, sigmoid=self.train.get("loss") in SIGMOID_LOSSES)

    # -- persistence ---------------------------------------------------------------
    def save(self, folder: str | os.PathLike[str], key: bytes | None = None) -> Path:
        """Write ``model.safetensors`` and ``config.json`` (with the weights' checksum) atomically; the config
        is sealed with ``key`` (the workspace key, :mod:`core.store.seals`) when given."""
        extras = {
            "encoder_fingerprint": getattr(self, "encoder_fingerprint_", None),
            "best_epoch": getattr(self, "best_epoch_", None),
            "history": getattr(self, "history_", []),
            "rating_refit": getattr(self, "rating_refit_", None),
            "privacy": getattr(self, "privacy_", None),
            "warm_start": getattr(self, "warm_start_", None),
            HELD_OUT_KEY: held.record() if (held := getattr(self, "held_out_", None)) else None,
        }
        if (tuner := getattr(self, "tuner_", None)) is not None:  # the adapter file, the adapted encoder's fingerprint
            self.adapter_ = tuner.save(Path(folder), getattr(self, "tuned_state_", None) or tuner.state())
            extras.update(encoder_fingerprint=self.adapter_.fingerprint, encoder_adapter=self.adapter_.record())
        return save_checkpoint(Path(folder), self.fitted(), self.get_settings(), extras, key)

    @classmethod
    def load(
        cls,
        folder: str | os.PathLike[str],
        events: pd.DataFrame,
        device: str = "auto",
        check: ConfigCheck | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> Recommender:
        """Rebuild a fitted recommender from its folder and the events of its dataset; ``check(config, path)``
        checks the config's seal (default: its plain checksum; a workspace checks its keyed seal). The events'
        own texts are embedded again (through the embedding cache ``cache_dir``): the model file never holds them."""
        config, fitted = load_checkpoint(Path(folder), events, device, check)
        rec = cls(**{**config["settings"], "device": device})
        rec.model_, rec.data_, rec.split_ = fitted.model, fitted.data, fitted.split
        rec.protocol_, rec.scale_, rec.device_ = fitted.protocol, fitted.scale, fitted.device
        rec.history_, rec.best_epoch_ = config.get("history", []), config.get("best_epoch")
        rec.rating_refit_, rec.privacy_ = config.get("rating_refit"), config.get("privacy")
        rec.warm_start_ = config.get("warm_start")
        rec.encoder_fingerprint_ = config.get("encoder_fingerprint")
        rec.adapter_ = Adapter.read(config.get("encoder_adapter"), Path(folder))  # None: the encoder is not tuned
        rec.held_out_ = read_held_out(config)  # None: trained without held-out items (or saved before them)
        rec.every_ = saved_sequences(events, config) if rec.held_out_ else None
        rec.data_ = share_texts(rec.data_, rec.every_)
        fingerprint, kind = rec.encoder_fingerprint_, rec.device_.type
        every = rec.data_ if rec.every_ is None else rec.every_
        path = encoder_folder(rec.encoder)
        attach_event_text(rec.model_, every, path, cache_dir, kind, fingerprint=fingerprint, adapter=rec.adapter_)
        return rec
