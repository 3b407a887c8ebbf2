"""Shared fixtures: every test gets its own workspace; nothing touches ./workspace or the network.

Also what many test folders share: the `behaviorlens` CLI runner (``cli``), the standard tiny
BERT (``tiny_bert_dir``), and factories for a tiny generated dataset (``tiny_data``,
``tiny_dataset``) and a tiny trained run (``tiny_run``). Heavy imports stay inside the
fixtures, so a test that needs none of them loads neither torch nor transformers.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest
from tiny_support import TINY_MODEL, tiny_bert  # tests/tiny_support.py

if TYPE_CHECKING:
    from core.data.synth import SyntheticData
    from core.store.workspace import Workspace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one worker per core (pytest-xdist): each worker, and what it starts, computes on one
    # thread, so the workers do not oversubscribe the cores. Set before anything imports torch.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

# The tiny model most trained runs of the tests use, and the training settings of tiny_run by default.
TINY_TRAIN = {"batch_size": 32, "epochs": 1, "threads": 1}


@pytest.fixture(autouse=True)
def _isolated_workspace_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point BEHAVIORLENS_WORKSPACE at a fresh folder for every test."""
    root = tmp_path / "workspace"
    monkeypatch.setenv("BEHAVIORLENS_WORKSPACE", str(root))
    return root


@pytest.fixture()
def ws(_isolated_workspace_env: Path):
    """A real, empty DuckDB workspace in a temporary folder."""
    from core.store.workspace import Workspace

    return Workspace(_isolated_workspace_env)


@pytest.fixture()
def write_file(tmp_path: Path):
    """Write bytes or text (UTF-8) to a file under tmp_path and return its path."""

    def write(name: str, content: bytes | str) -> Path:
        path = tmp_path / "files" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    return write


# -- the CLI -------------------------------------------------------------------------------------------------
def strict_json(text: str) -> Any:
    """json.loads that refuses NaN/Infinity tokens (not valid JSON)."""

    def refuse(token: str) -> Any:
        raise ValueError(f"invalid JSON constant {token}")

    return json.loads(text, parse_constant=refuse)


class CliResult(NamedTuple):
    """What one `behaviorlens` command did: its exit code, stdout and stderr."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout as strict JSON (NaN/Infinity refused), after asserting exit 0 (stderr is the message)."""
        assert self.code == 0, self.err
        return strict_json(self.out)


class Cli:
    """`behaviorlens`: ``cli(*args)`` runs core.cli.main in-process, ``cli.subprocess(*args)`` python -m core.cli."""

    def __call__(self, *args: str, workspace: str | Path | None = None) -> CliResult:
        """Run main(args [+ --workspace]); argparse's SystemExit becomes the exit code."""
        from core.cli import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([*args, *_workspace_flag(workspace)])
            except SystemExit as exc:  # argparse errors
                code = int(exc.code or 0)
        return CliResult(code, out.getvalue(), err.getvalue())

    def subprocess(
        self, *args: str, workspace: str | Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
    ) -> CliResult:
        """Run ``python -m core.cli`` for real (offline, the repository importable, ``env`` added)."""
        environ = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            **(env or {}),
        }
        proc = subprocess.run(
            [sys.executable, "-m", "core.cli", *args, *_workspace_flag(workspace)],
            cwd=REPO,
            env=environ,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)


def _workspace_flag(workspace: str | Path | None) -> list[str]:
    return [] if workspace is None else ["--workspace", str(workspace)]


@pytest.fixture(scope="session")
def cli() -> Cli:
    """The `behaviorlens` CLI runner: cli(*args, workspace=None) -> CliResult(code, out, err) with .json()."""
    return Cli()


# -- the tiny BERT, a tiny dataset, a tiny run -------------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The standard tiny BERT (tiny_support.TINY_VOCAB, hidden 8, one layer), built once; do not modify it."""
    return tiny_bert(tmp_path_factory.mktemp("tiny-bert") / "bert")


@pytest.fixture(scope="session")
def tiny_data() -> Callable[..., SyntheticData]:
    """Factory: tiny_data(folder, seed=5, n_users=30, ...) generates a small dataset and writes its CSVs there."""
    from core.data import synth

    def make(
        folder: Path, seed: int = 5, *, n_users: int = 30, n_items: int = 30, target_events: int = 900
    ) -> SyntheticData:
        data = synth.generate(
            synth.SynthConfig.small(seed, n_users=n_users, n_items=n_items, target_events=target_events)
        )
        synth.write(data, folder)
        return data

    return make


@dataclass
class TinyDataset:
    """A generated dataset (its CSVs under ``folder``) ingested into ``ws`` as ``name``."""

    ws: Workspace
    name: str
    data: SyntheticData
    folder: Path


@pytest.fixture(scope="session")
def tiny_dataset(tiny_data: Callable[..., SyntheticData]) -> Callable[..., TinyDataset]:
    """Factory: tiny_dataset(root, seed=5, ...) writes tiny_data to root/data and ingests it into root/ws."""
    from core.ingest.options import IngestOptions
    from core.ingest.pipeline import ingest
    from core.store.workspace import Workspace

    def make(
        root: Path,
        seed: int = 5,
        *,
        name: str = "syn",
        keep_ids: bool = False,
        workspace: Workspace | None = None,
        **sizes: int,
    ) -> TinyDataset:
        folder = root / "data"
        data = tiny_data(folder, seed, **sizes)
        ws = Workspace(root / "ws") if workspace is None else workspace
        ingest(ws, folder / "events.csv", folder / "items.csv", IngestOptions(name=name, keep_ids=keep_ids))
        return TinyDataset(ws, name, data, folder)

    return make


@dataclass
class TinyRun:
    """A workspace (folder ``root``) with the generated dataset ``dataset`` and one tiny trained run."""

    root: Path
    ws: Workspace
    dataset: str
    run_id: str
    data: SyntheticData
    settings: dict[str, Any]
    encoder: Path | None

    @property
    def user(self) -> str:
        """The original ID of the first user in the generated events."""
        return str(self.data.events["user_id"].iloc[0])


@pytest.fixture(scope="session")
def tiny_run(tiny_dataset: Callable[..., TinyDataset], tiny_bert_dir: Path) -> Callable[..., TinyRun]:
    """Factory: tiny_run(root, train=TINY_TRAIN, encoder=tiny_bert_dir, **dataset) trains a TINY_MODEL run on cpu."""
    from core.runs.train import train_run

    def make(
        root: Path,
        seed: int = 5,
        *,
        train: dict[str, Any] | None = None,
        encoder: str | Path | None = tiny_bert_dir,
        **dataset: Any,
    ) -> TinyRun:
        """``encoder=None``: the bundled default encoder (no ``encoder`` setting)."""
        ds = tiny_dataset(root, seed, **dataset)
        settings: dict[str, Any] = {
            "device": "cpu",
            "model": dict(TINY_MODEL),
            "train": dict(TINY_TRAIN if train is None else train),
        }
        if encoder is not None:
            settings["encoder"] = str(encoder)
        run_id = train_run(ds.ws, ds.name, settings)
        return TinyRun(
            ds.ws.root, ds.ws, ds.name, run_id, ds.data, settings, None if encoder is None else Path(encoder)
        )

    return make


@pytest.fixture(scope="session")
def demo_config(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A settings file for BEHAVIORLENS_DEMO_CONFIG: the tiny model and BERT, one epoch on cpu (a quick demo run)."""
    path = tmp_path_factory.mktemp("demo-config") / "demo.json"
    settings = {"encoder": str(tiny_bert_dir), "device": "cpu", "model": dict(TINY_MODEL), "train": dict(TINY_TRAIN)}
    path.write_text(json.dumps(settings), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def training_data_dir(tiny_data: Callable[..., SyntheticData], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """events.csv and items.csv (40 users, 30 items, seed 1) that the training-job tests ingest; read-only."""
    folder = tmp_path_factory.mktemp("training-data")
    tiny_data(folder, 1, n_users=40, n_items=30, target_events=1200)
    return folder
