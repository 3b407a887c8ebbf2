"""Which run configs a workspace vouches for: keyed seals, and runs saved before them.

A run saved in a workspace seals its ``config.json`` with HMAC-SHA256 under the workspace key
(``<root>/.key``, the pseudonym key): whoever can write the run folder but cannot read the
key cannot edit the config and re-seal it. The workspace records in its database which runs
it sealed with the key (:func:`mark_keyed`, when training starts), so a config of such a run
that carries only the plain checksum (the keyed seal stripped, the file re-sealed the old way)
is refused.

Runs saved before keyed seals (an earlier release, or a library ``Recommender.save`` without a
key) carry only the plain checksum. The first time a workspace opens one, it trusts it as it is
then and records that checksum; from then on the run loads only unchanged. The trade-off: an
unkeyed run edited *before* its first opening under this release is trusted; retrain such a run
if its folder may have been writable by others.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from core.errors import ArtifactError
from core.store.run_folder import check_config
from core.store.workspace import Workspace

_LOG = logging.getLogger(__name__)


def mark_keyed(ws: Workspace, run_id: str) -> None:
    """Record that ``run_id``'s configs are sealed with the workspace key from now on (before its first save)."""
    with ws.connect() as con:
        con.execute("INSERT OR REPLACE INTO run_seals VALUES (?, NULL)", [run_id])


def check_run_seal(ws: Workspace, run_id: str, config: dict[str, Any], path: Path) -> None:
    """:func:`~core.store.run_folder.check_config` with the workspace key, then the record of the run: a
    config without a keyed seal loads only if the run was never sealed with the key and its checksum is the
    one first seen. ArtifactError otherwise."""
    if check_config(config, path, ws.secret_key()):
        return
    digest = str(config["config_sha256"])
    with ws.connect() as con:  # under the workspace lock: one process records the first sighting
        row = con.execute("SELECT legacy_sha256 FROM run_seals WHERE run_id = ?", [run_id]).fetchone()
        if row is None:
            con.execute("INSERT INTO run_seals VALUES (?, ?)", [run_id, digest])
            _LOG.warning(
                "run %s has no keyed seal (saved before keyed seals, or without a workspace): trusted as it is "
                "now; any later change to its config.json is refused",
                run_id,
            )
            return
    recorded = row[0]
    if recorded == digest:
        return
    if recorded is None:
        raise ArtifactError(
            f"{path} carries no seal of this workspace's key, but this workspace sealed run {run_id} with it: "
            "the config was edited and re-sealed without the key; restore the original config.json or retrain "
            "the run"
        )
    raise ArtifactError(
        f"{path} changed since this workspace first opened run {run_id} (a run saved before keyed seals, "
        "trusted as it was then): it was edited and re-sealed; restore the original config.json or retrain the run"
    )
