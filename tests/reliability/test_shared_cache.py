"""The run handle's memo is shared by every browser session of the dashboard: hammered by threads, it stays whole."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.runs.records import DONE, set_run
from core.runs.run import MEMO_SIZES, Run, open_run
from core.store.workspace import Workspace

THREADS = 12
ROUNDS = 1500
KINDS = ("default", "explanation", "counterfactual", "tokens", "other")  # "other": the default size


@pytest.fixture()
def shared_run(tmp_path: Path) -> Run:
    ws = Workspace(tmp_path / "workspace")
    set_run(ws, "r1", "syn", DONE, {"dataset": "syn", "settings": {}}, None)
    return open_run(ws, "r1", "cpu")


@pytest.fixture()
def busy_switching() -> Iterator[None]:
    """Switch threads as often as the interpreter can, so that unguarded reads and writes interleave."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def test_threads_hammering_the_memo_get_no_error_and_consistent_results(shared_run: Run, busy_switching) -> None:
    errors: list[BaseException] = []
    wrong: list[tuple[str, int, object]] = []
    start = threading.Barrier(THREADS)

    def work(seed: int) -> None:
        start.wait()
        try:
            for i in range(ROUNDS):
                kind, key = KINDS[(seed + i) % len(KINDS)], (seed * 7 + i * 13) % 90  # more keys than fit: evictions
                got = shared_run.memo(kind, key, lambda k=kind, n=key: (k, n, [n] * 3))
                if got != (kind, key, [key] * 3):
                    wrong.append((kind, key, got))
                kept = shared_run.memo(kind, key, None)  # only what is kept: None or the same value
                if kept is not None and kept != got:
                    wrong.append((kind, key, kept))
        except BaseException as exc:  # every error counts, whatever its type
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    assert not wrong, wrong[:3]
    for kind in KINDS:
        assert len(shared_run._memo[kind]) <= MEMO_SIZES.get(kind, MEMO_SIZES["default"])


def test_one_computation_gives_every_thread_the_same_object(shared_run: Run) -> None:
    """A result is computed at least once and kept: what threads get afterwards is the kept object."""
    results: list[object] = []
    start = threading.Barrier(8)

    def ask() -> None:
        start.wait()
        results.append(shared_run.memo("default", ("key",), lambda: object()))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    kept = shared_run.memo("default", ("key",), None)
    assert kept is not None and len(results) == 8
    assert shared_run.memo("default", ("key",), lambda: object()) is kept
