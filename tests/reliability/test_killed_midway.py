"""SIGKILL half-way through a fusion-cache build or an influence computation: the next run of the same command
succeeds, gives what an uninterrupted run gives, and reads no half-written file.

The killed command runs in a subprocess (``python -c KILLER STAGE ARGS``) that kills itself with SIGKILL at a
chosen point: half-way through writing the cache's tensors, half-way through writing its JSON sidecar (the
tensors already in place), or between the attributions and their summary. The next run is in-process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from reliability_support import RunCopy  # tests/reliability/reliability_support.py

from core.store.run_folder import FUSION_FOLDER

REPO = Path(__file__).resolve().parents[2]
FUSED = ("--weights", "engagement=0.7,rating=0.3")

KILLER = """
import os, signal, sys
stage, args = sys.argv[1], sys.argv[2:]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if stage in ("tensors", "sidecar"):
    import core.store.files as files
    suffix = ".safetensors" if stage == "tensors" else ".json"
    whole = files.atomic_write_bytes

    def half_then_die(path, data):
        if path.parent.name == "fusion" and path.suffix == suffix:
            def write(fh):
                fh.write(data[: len(data) // 2])
                fh.flush()
                os.fsync(fh.fileno())
                die()
            files.atomic_write(path, write)
        whole(path, data)

    files.atomic_write_bytes = half_then_die
elif stage == "summary":
    import core.explain.influence.report as report
    report.summarize = lambda *a, **k: die()

from core.cli import main
raise SystemExit(main(args))
"""


def killed(stage: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``behaviorlens *args`` in a subprocess that SIGKILLs itself at ``stage``."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-c", KILLER, stage, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=180
    )


def without_timings(obj: Any) -> Any:
    """A result with its run times (``*_ms``) left out: the rest must not depend on having been interrupted."""
    if isinstance(obj, dict):
        return {k: without_timings(v) for k, v in obj.items() if not str(k).endswith("_ms")}
    if isinstance(obj, list):
        return [without_timings(v) for v in obj]
    return obj


@pytest.mark.parametrize("stage", ["tensors", "sidecar"])
def test_a_fusion_cache_build_killed_half_way_is_rebuilt_on_the_next_run(
    run_copy: RunCopy, trained: RunCopy, tmp_path: Path, cli, stage: str
) -> None:
    args = ("recommend", "--run", run_copy.run_id, "--user", run_copy.user, "--k", "5", "--json", *FUSED)
    proc = killed(stage, *args, "--workspace", str(run_copy.root))
    assert proc.returncode == -signal.SIGKILL, proc.stderr  # it died where it was meant to, not before or after
    fusion = run_copy.folder / FUSION_FOLDER
    leftovers = sorted(p.name for p in fusion.iterdir())
    assert any(name.endswith(".tmp") for name in leftovers), leftovers  # the half-written temp file
    complete = {"tensors": [], "sidecar": [".safetensors"]}[stage]  # what was in place when it died
    assert sorted(Path(n).suffix for n in leftovers if not n.startswith(".")) == complete

    again = cli(*args, workspace=run_copy.root)  # the same command, next time
    assert again.code == 0, again.err
    reference_root = tmp_path / "reference"
    reference = cli(*args, workspace=_copy(trained.root, reference_root))  # never interrupted
    assert again.json() == reference.json()
    cached = cli(*args, workspace=run_copy.root)  # and now read from the rebuilt cache
    assert cached.json() == reference.json()
    sidecar = next(p for p in fusion.glob("*.json") if not p.name.startswith("."))
    assert isinstance(json.loads(sidecar.read_text(encoding="utf-8"))["user_ids"], list)


def test_an_influence_computation_killed_half_way_succeeds_the_next_time(
    run_copy: RunCopy, trained: RunCopy, tmp_path: Path, cli
) -> None:
    args = ("influence", "--run", run_copy.run_id, "--users", "6", "--k", "3", "--no-ablation", "--json")
    proc = killed("summary", *args, "--workspace", str(run_copy.root))
    assert proc.returncode == -signal.SIGKILL and proc.stdout == "", proc.stderr
    again = cli(*args, workspace=run_copy.root)
    assert again.code == 0, again.err
    reference = cli(*args, workspace=_copy(trained.root, tmp_path / "reference"))
    assert without_timings(again.json()) == without_timings(reference.json())
    assert not list(run_copy.root.rglob("*.tmp"))  # nothing half-written was left to be read


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target
