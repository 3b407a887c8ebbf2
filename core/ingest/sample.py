"""The bundled sample dataset: present in every fresh workspace without a click."""

from __future__ import annotations

from pathlib import Path

from core.errors import NotFoundError, WorkspaceError
from core.ingest.options import IngestOptions
from core.ingest.pipeline import ingest
from core.ingest.report import IngestReport
from core.store.workspace import Workspace

SAMPLE_DATASET = "sample"
SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_data"
SAMPLE_EVENTS = SAMPLE_DIR / "events.csv"
SAMPLE_ITEMS = SAMPLE_DIR / "items.csv"


def ensure_sample_dataset(workspace: Workspace, force: bool = False) -> IngestReport | None:
    """Ingest ``sample_data/`` as dataset ``sample`` unless it is there; the report if ingested."""
    if not force:
        try:
            workspace.dataset(SAMPLE_DATASET)
            return None
        except NotFoundError:
            pass
    if not SAMPLE_EVENTS.is_file():
        raise WorkspaceError(f"the bundled sample data is missing: expected {SAMPLE_EVENTS}")
    with workspace.lock():  # a second process waits, then finds the dataset there
        if not force and SAMPLE_DATASET in workspace.dataset_names():
            return None
        return ingest(
            workspace,
            SAMPLE_EVENTS,
            SAMPLE_ITEMS if SAMPLE_ITEMS.is_file() else None,
            IngestOptions(name=SAMPLE_DATASET),
        )
