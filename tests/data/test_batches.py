"""Tests of core.data.batches: the leave-last-out split by hand, left padding, next-event targets, repeats."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core import schema as S
from core.data.batches import (
    REPEAT_RATE_THRESHOLD,
    default_exclude_seen,
    history_batch,
    leave_last_out,
    repeat_rate,
    seen_items,
    training_batch,
)
from core.data.sequences import build_sequences, value_bucket
from core.errors import DataError

T0 = 1_700_000_000


def _data(rows: list[tuple]) -> object:
    frame = pd.DataFrame(rows, columns=[S.USER_ID, S.ITEM_ID, "_s", S.BEHAVIOR, S.VALUE])
    frame[S.TIMESTAMP] = pd.to_datetime(frame.pop("_s"), unit="s")
    return build_sequences(frame)


@pytest.fixture()
def golden():
    """Three users; absolute CSR positions in the comments (users sorted a, b, c)."""
    return _data(
        [
            # user a: positions 0..5
            ("a", "i1", T0 + 1, "view", np.nan),  # 0
            ("a", "i2", T0 + 2, "click", np.nan),  # 1
            ("a", "i1", T0 + 3, "purchase", 5.0),  # 2
            ("a", "i3", T0 + 4, "view", np.nan),  # 3
            ("a", "i2", T0 + 5, "purchase", 3.0),  # 4
            ("a", "i4", T0 + 6, "view", np.nan),  # 5
            # user b: positions 6..7 (too short for any protocol)
            ("b", "i3", T0 + 1, "view", np.nan),  # 6
            ("b", "i4", T0 + 9, "purchase", 1.0),  # 7
            # user c: positions 8..10 (two purchases, but the first one has no history before it)
            ("c", "i1", T0 + 1, "purchase", 2.0),  # 8
            ("c", "i2", T0 + 2, "view", np.nan),  # 9
            ("c", "i3", T0 + 3, "purchase", 4.0),  # 10
        ]
    )


def test_golden_data_layout(golden) -> None:
    assert list(golden.users) == ["a", "b", "c"]
    np.testing.assert_array_equal(golden.offsets, [0, 6, 8, 11])
    assert list(golden.item_ids) == ["", "i1", "i2", "i3", "i4"]


def test_leave_last_out_any_behavior(golden) -> None:
    split = leave_last_out(golden)
    assert split.target_behavior is None
    np.testing.assert_array_equal(split.users, [0, 2])  # b has 2 events: not evaluated
    np.testing.assert_array_equal(split.valid_pos, [4, 9])
    np.testing.assert_array_equal(split.test_pos, [5, 10])
    # evaluated users train on events before their validation event; b trains on everything
    np.testing.assert_array_equal(split.train_end, [4, 8, 9])


def test_leave_last_out_target_purchase(golden) -> None:
    split = leave_last_out(golden, "purchase")
    assert split.target_behavior == "purchase"
    np.testing.assert_array_equal(split.users, [0])  # b: one purchase; c: first purchase has no history
    np.testing.assert_array_equal(split.valid_pos, [2])
    np.testing.assert_array_equal(split.test_pos, [4])
    np.testing.assert_array_equal(split.train_end, [2, 8, 11])  # b and c train on all their events
    assert all(golden.behaviors[golden.behavior[p]] == "purchase" for p in (2, 4))


def test_unknown_target_behavior_raises(golden) -> None:
    with pytest.raises(DataError, match="'share'"):
        leave_last_out(golden, "share")


def test_history_batch_left_pads(golden) -> None:
    batch = history_batch(golden, np.array([1, 0]), np.array([8, 5]), max_len=4)
    # user b: 2 real events, left-padded
    np.testing.assert_array_equal(batch.item[0].numpy(), [0, 0, 3, 4])
    np.testing.assert_array_equal(batch.mask[0].numpy(), [False, False, True, True])
    np.testing.assert_array_equal(batch.behavior[0, :2].numpy(), [0, 0])
    np.testing.assert_array_equal(batch.value[0].numpy(), [0, 0, 0, 2])  # value 1.0 -> bucket 2
    np.testing.assert_array_equal(batch.ts[0].numpy(), [T0 + 1, T0 + 1, T0 + 1, T0 + 9])  # padding copies first time
    # user a, events before position 5: the last 4 of positions 0..4 -> 1..4, no padding
    np.testing.assert_array_equal(batch.item[1].numpy(), golden.item[1:5])
    assert batch.mask[1].all()
    np.testing.assert_array_equal(batch.value[1].numpy(), value_bucket(golden.value[1:5]))
    assert batch.item.shape == batch.behavior.shape == batch.value.shape == batch.ts.shape == (2, 4)
    # request times: the next event's time; the last position is -1 (the stand-in time: the
    # model's typical next-visit gap), for a whole history and for a cut one alike
    assert batch.request_ts[0, -1].item() == -1 and batch.request_ts[0, -2].item() == T0 + 9
    assert batch.request_ts[1, -1].item() == -1
    # asked at the held-out event's own time only when that time is declared known
    actual = history_batch(golden, np.array([1, 0]), np.array([8, 5]), max_len=4, actual_time=True)
    assert actual.request_ts[0, -1].item() == -1  # a whole history has no next event
    assert actual.request_ts[1, -1].item() == golden.ts[5]
    narrow = history_batch(golden, np.array([1]), np.array([8]), max_len=4)
    assert narrow.item.shape == (1, 2)  # padded to the longest window only


def test_history_batch_empty_window_is_all_padding(golden) -> None:
    batch = history_batch(golden, np.array([0]), np.array([0]), max_len=3)
    assert not batch.mask.any() and (batch.item == 0).all()


def test_history_windows_include_the_validation_event_at_test_time(golden) -> None:
    for target in (None, "purchase"):
        split = leave_last_out(golden, target)
        batch = history_batch(golden, split.users, split.test_pos, max_len=10)
        for r, (valid, test) in enumerate(zip(split.valid_pos, split.test_pos)):
            n = int(batch.mask[r].sum())
            start = golden.offsets[split.users[r]]
            assert n == test - start  # every event before the test target
            np.testing.assert_array_equal(batch.item[r, -n:].numpy(), golden.item[start:test])
            assert valid in range(start, test)
        valid_batch = history_batch(golden, split.users, split.valid_pos, max_len=10)
        for r, valid in enumerate(split.valid_pos):
            assert int(valid_batch.mask[r].sum()) == valid - golden.offsets[split.users[r]]


def test_training_batch_targets_are_the_next_events(golden) -> None:
    split = leave_last_out(golden)
    users = np.array([0, 1])
    batch = training_batch(golden, users, split.train_end[users], max_len=5)
    # padded to the longest window (3 inputs), not to max_len
    assert batch.item.shape == batch.target_item.shape == batch.request_ts.shape == (2, 3)
    # user a trains on positions 0..3: inputs 0,1,2 -> targets 1,2,3
    np.testing.assert_array_equal(batch.item[0].numpy(), [1, 2, 1])
    np.testing.assert_array_equal(batch.target_item[0].numpy(), [2, 1, 3])
    np.testing.assert_array_equal(batch.mask[0].numpy(), [True, True, True])
    tv = batch.target_value[0].numpy()
    assert np.isnan(tv[0]) and tv[1] == 5.0 and np.isnan(tv[2])
    # each position is asked at its target's time
    np.testing.assert_array_equal(batch.request_ts[0].numpy(), golden.ts[1:4])
    # user b (not evaluated) trains on both events: input i3 -> target i4 (value 1.0)
    np.testing.assert_array_equal(batch.item[1].numpy(), [0, 0, 3])
    np.testing.assert_array_equal(batch.target_item[1].numpy(), [0, 0, 4])
    assert batch.target_value[1, -1].item() == 1.0
    assert batch.request_ts[1, -1].item() == golden.ts[golden.offsets[1] + 1]


def test_training_batch_never_sees_held_out_events(golden) -> None:
    for target in (None, "purchase"):
        split = leave_last_out(golden, target)
        users = np.arange(golden.n_users)
        batch = training_batch(golden, users, split.train_end, max_len=10)
        for r, u in enumerate(users):
            start, end = golden.offsets[u], split.train_end[u]
            seen = np.concatenate(
                [batch.item[r][batch.mask[r]].numpy(), batch.target_item[r][batch.target_item[r] > 0].numpy()]
            )
            assert len(seen) == 0 or set(seen) <= set(golden.item[start:end])
            n_targets = int((batch.target_item[r] > 0).sum())
            assert n_targets == max(0, end - start - 1)
            # the last target is the last training event
            if n_targets:
                assert batch.target_item[r, -1].item() == golden.item[end - 1]


def test_training_batch_truncates_to_the_latest_events(golden) -> None:
    batch = training_batch(golden, np.array([0]), np.array([6]), max_len=2)
    # window of 3 events (positions 3, 4, 5): inputs 3, 4 -> targets 4, 5
    np.testing.assert_array_equal(batch.item[0].numpy(), golden.item[3:5])
    np.testing.assert_array_equal(batch.target_item[0].numpy(), golden.item[4:6])


def test_seen_items(golden) -> None:
    out = seen_items(golden, np.array([0, 2]), np.array([5, 9]))
    np.testing.assert_array_equal(out[0], [1, 2, 3])
    np.testing.assert_array_equal(out[1], [1])


def test_repeat_rate_and_default_exclude_seen(golden) -> None:
    # user a: i1, i2, i1, i3, i2, i4 -> 2 repeats; b and c none; 11 events
    assert repeat_rate(golden) == pytest.approx(2 / 11)
    assert default_exclude_seen(golden) is False  # re-engagement data keeps earlier items
    # a repeat shared across users is not a repeat
    ratings = _data([(u, f"i{k}", T0 + k, "rate", 4.0) for u in ("x", "y") for k in range(5)])
    assert repeat_rate(ratings) == 0.0
    assert default_exclude_seen(ratings) is True


def test_default_exclude_seen_threshold() -> None:
    n = 40  # one repeat in 40 events = 0.025 < threshold; 3 in 40 = 0.075 > threshold
    assert 1 / n < REPEAT_RATE_THRESHOLD < 3 / n
    few = _data([("u", f"i{k % 39}", T0 + k, "view", np.nan) for k in range(n)])
    many = _data([("u", f"i{k % 37}", T0 + k, "view", np.nan) for k in range(n)])
    assert repeat_rate(few) == pytest.approx(1 / n) and default_exclude_seen(few) is True
    assert repeat_rate(many) == pytest.approx(3 / n) and default_exclude_seen(many) is False
