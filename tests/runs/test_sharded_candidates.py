"""`behaviorlens candidates --nproc-per-node 2` (gloo, 2 CPU processes, tiny model): the fusion candidates sharded
over two processes are the arrays one process computes. A module of its own, so that the test runner can place it
beside test_distributed.py's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from tiny_support import TINY_MODEL

TRAIN = {"batch_size": 16, "epochs": 1, "threads": 1}


def test_fusion_candidates_sharded_over_two_processes_equal_one(
    tmp_path: Path, tiny_dataset: Any, tiny_bert_dir: Path, cli: Any
) -> None:
    """`candidates --nproc-per-node 2`: each process scores its blocks of users (256 per block: 300 users make two),
    rank 0 stores the arrays one process stores, to the last bit."""
    from safetensors.numpy import load_file

    ds = tiny_dataset(tmp_path, 6, n_users=300, n_items=30, target_events=3000)
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"encoder": str(tiny_bert_dir), "model": TINY_MODEL, "train": TRAIN}))
    trained = cli.subprocess(
        "train",
        "--dataset",
        ds.name,
        "--config",
        str(config),
        "--device",
        "cpu",
        "--json",
        workspace=ds.ws.root,
        timeout=300,
    )
    assert trained.code == 0, trained.err
    run_id = trained.json()["run"]
    folder = ds.ws.run_dir(run_id) / "fusion"
    args = ("candidates", "--run", run_id, "--json")

    two = cli.subprocess(*args, "--nproc-per-node", "2", workspace=ds.ws.root, timeout=300)
    assert two.code == 0, two.err
    report = two.json()  # rank 0 alone prints
    assert report["processes"] == 2 and set(report["contexts"]) == {"test", "valid", "all"}
    assert not any(c["cached"] for c in report["contexts"].values())
    assert report["contexts"]["all"]["users"] == 300
    sharded = {p.name: load_file(p) for p in sorted(folder.glob("*.safetensors"))}
    assert len(sharded) == 3

    one = cli.subprocess(*args, "--rebuild", workspace=ds.ws.root, env={"OMP_NUM_THREADS": "1"}, timeout=300)
    assert one.code == 0, one.err
    assert one.json()["processes"] == 1
    for name, arrays in sharded.items():
        single = load_file(folder / name)
        assert set(single) == set(arrays)
        for key, value in arrays.items():
            assert np.array_equal(single[key], value, equal_nan=True), (name, key)

    again = cli.subprocess(*args, "--context", "all,test", workspace=ds.ws.root, timeout=300).json()
    assert list(again["contexts"]) == ["all", "test"] and all(c["cached"] for c in again["contexts"].values())
    wrong = cli.subprocess("candidates", "--run", run_id, "--context", "tset", workspace=ds.ws.root)
    assert wrong.code == 2 and "'tset'" in wrong.err and "test, valid, all" in wrong.err


def test_the_command_offers_the_contexts_the_core_builds() -> None:
    from core.cli.fusion import CONTEXTS as OFFERED
    from core.fusion.candidates import CONTEXTS

    assert OFFERED == CONTEXTS  # the CLI keeps its own copy so that parsing does not import torch
