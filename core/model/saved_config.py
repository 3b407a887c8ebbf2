"""The types of a saved run config, checked before anything is built from it.

A config can carry a valid checksum and still hold a value of the wrong type or range (written
by another tool, or edited and re-sealed where no key guards it): a string where a number is
expected, a list where an object is. Every field a loaded run reads is checked here against the
settings schema of :mod:`core.model.config`, so such a config is an
:class:`~core.errors.ArtifactError` that names the field, never a crash deep inside the model.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

from core._checks import check_number, check_whole
from core.errors import ArtifactError, DataError
from core.model.config import ModelConfig, check_settings, check_value
from core.model.held_out import HELD_OUT_KEY, check_held_out_record
from core.model.protocol import REQUEST_TIMES

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def check_saved_config(config: dict[str, Any], path: Path) -> None:
    """ArtifactError naming the field unless every field of a run config has its type and range."""
    try:
        _check_fields(config)
    except DataError as exc:
        raise ArtifactError(
            f"{path} holds a value of the wrong type or range ({exc}): it was not written by BehaviorLens "
            "as it is now; restore the original config.json or retrain the run"
        ) from exc


def _check_fields(config: dict[str, Any]) -> None:
    check_settings(_object(config.get("settings"), "settings"))
    _check_model_config(_object(config.get("model_config"), "model_config"))
    digest = config.get("weights_sha256")
    if not isinstance(digest, str) or not _SHA256.match(digest):
        raise DataError(f"weights_sha256={digest!r}: expected 64 lowercase hex digits")
    protocol = _object(config.get("protocol"), "protocol")
    check_value("protocol.exclude_seen", protocol.get("exclude_seen"), bool, {})
    check_value("protocol.target_behavior", protocol.get("target_behavior"), str | None, {})
    if "request_time" in protocol:
        check_value("protocol.request_time", protocol["request_time"], str, {"choices": REQUEST_TIMES})
    scale = _object(config.get("rating_scale"), "rating_scale")
    if set(scale) - {"mean", "std"}:
        raise DataError(f"rating_scale has unknown key(s) {sorted(set(scale) - {'mean', 'std'})}")
    check_number("rating_scale.mean", scale.get("mean"))
    if check_number("rating_scale.std", scale.get("std"), 0.0) == 0.0:
        raise DataError("rating_scale.std=0: expected a positive number")
    vocab = _object(config.get("vocab"), "vocab")
    for name in ("items", "behaviors"):
        ids = vocab.get(name)
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise DataError(f"vocab.{name}: expected a list of strings")
    check_value("encoder_fingerprint", config.get("encoder_fingerprint"), str | None, {})
    if config.get("best_epoch") is not None:
        check_whole("best_epoch", config["best_epoch"], 0)
    for name, kind in (("history", list), ("rating_refit", dict), ("privacy", dict), ("warm_start", dict)):
        if config.get(name) is not None and not isinstance(config[name], kind):
            raise DataError(f"{name}: expected a JSON {'list' if kind is list else 'object'} or null")
    check_held_out_record(config.get(HELD_OUT_KEY))


def _check_model_config(values: dict[str, Any]) -> None:
    fields = {f.name: f for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise DataError(f"model_config has unknown setting(s) {unknown}")
    required = [n for n, f in fields.items() if f.default is dataclasses.MISSING and n not in values]
    if required:
        raise DataError(f"model_config lacks {required}")
    hints = typing.get_type_hints(ModelConfig)
    for name, value in values.items():
        check_value(f"model_config.{name}", value, hints[name], fields[name].metadata)


def _object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataError(f"{name}: expected a JSON object, got {type(value).__name__}")
    return value
