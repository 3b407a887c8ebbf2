"""Tests of core.data.sequences: ordering, vocabularies, the CSR layout, buckets and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from core import schema as S
from core.data.sequences import GAP_BUCKETS, PAD, VALUE_BUCKETS, build_sequences, gap_bucket, value_bucket
from core.errors import DataError

T0 = 1_700_000_000  # seconds since the epoch


def _events(rows: list[tuple], with_row: bool = False) -> pd.DataFrame:
    """(user, item, seconds, behavior, value[, row]) tuples -> an events frame."""
    cols = [S.USER_ID, S.ITEM_ID, "_s", S.BEHAVIOR, S.VALUE] + ([S.ROW] if with_row else [])
    frame = pd.DataFrame(rows, columns=cols)
    frame[S.TIMESTAMP] = pd.to_datetime(frame.pop("_s"), unit="s")
    return frame


def test_events_sorted_by_time_then_item_then_row() -> None:
    # one user; rows given out of order; ties at T0+10 broken by item ID, then by source row
    frame = _events(
        [
            ("u", "c", T0 + 20, "view", 1.0, 1),
            ("u", "b", T0 + 10, "view", 2.0, 2),
            ("u", "a", T0 + 10, "click", 3.0, 5),
            ("u", "a", T0 + 10, "view", 4.0, 3),
            ("u", "d", T0 + 0, "view", 5.0, 4),
        ],
        with_row=True,
    )
    data = build_sequences(frame)
    assert list(data.item_ids[data.item]) == ["d", "a", "a", "b", "c"]
    # the two ("a", T0+10) events keep source-row order: row 3 (value 4) before row 5 (value 3)
    np.testing.assert_array_equal(data.value, [5.0, 4.0, 3.0, 2.0, 1.0])
    np.testing.assert_array_equal(data.ts, [T0, T0 + 10, T0 + 10, T0 + 10, T0 + 20])
    assert [data.behaviors[b] for b in data.behavior] == ["view", "view", "click", "view", "view"]


def test_ties_on_time_mean_lower_item_index_first() -> None:
    frame = _events([("u", "z", T0, "view", np.nan), ("u", "m", T0, "view", np.nan), ("u", "a", T0, "view", np.nan)])
    data = build_sequences(frame)
    assert list(data.item) == [1, 2, 3]  # sorted item IDs get increasing indices


def test_timezones_are_converted_to_utc_seconds() -> None:
    frame = pd.DataFrame(
        {
            S.USER_ID: ["u", "u"],
            S.ITEM_ID: ["a", "b"],
            S.BEHAVIOR: ["view", "view"],
            S.TIMESTAMP: pd.to_datetime(["2024-01-01T02:00:00+02:00", "2024-01-01T02:30:00+02:00"]),
        }
    )
    data = build_sequences(frame)
    midnight = int(pd.Timestamp("2024-01-01T00:00:00Z").timestamp())
    np.testing.assert_array_equal(data.ts, [midnight, midnight + 1800])
    assert list(data.item_ids[data.item]) == ["a", "b"]


def test_vocabularies() -> None:
    frame = _events(
        [
            ("u2", "i10", T0, "purchase", np.nan),
            ("u1", "i2", T0, "zoom", np.nan),  # a custom behavior goes after the canonical ones
            ("u1", "i1", T0 + 1, "view", 4.0),
            ("u2", "i2", T0 + 1, "click", np.nan),
            ("u1", "i10", T0 + 2, "alpha", np.nan),
        ]
    )
    data = build_sequences(frame)
    assert data.item_ids[0] == "" and PAD == 0
    assert list(data.item_ids) == ["", "i1", "i10", "i2"]  # sorted item IDs (as strings)
    assert data.n_items == 3
    assert data.behaviors == ["", "view", "click", "purchase", "alpha", "zoom"]
    assert data.item.min() >= 1 and data.behavior.min() >= 1


def test_fixed_vocabularies_keep_cold_items_and_given_behavior_order() -> None:
    frame = _events([("u", "b", T0, "view", np.nan), ("u", "a", T0 + 1, "purchase", np.nan)])
    data = build_sequences(frame, item_ids=["c", "a", "b", "cold"], behaviors=["purchase", "view", "cart"])
    assert list(data.item_ids) == ["", "a", "b", "c", "cold"]
    assert data.behaviors == ["", "purchase", "view", "cart"]
    np.testing.assert_array_equal(data.item, [2, 1])
    np.testing.assert_array_equal(data.behavior, [2, 1])


def test_csr_offsets_and_user_slices() -> None:
    frame = _events(
        [
            ("bob", "x", T0 + 5, "view", np.nan),
            ("amy", "y", T0 + 1, "view", np.nan),
            ("cat", "x", T0 + 9, "view", np.nan),
            ("bob", "y", T0 + 2, "view", np.nan),
            ("amy", "x", T0 + 3, "view", np.nan),
            ("bob", "z", T0 + 7, "view", np.nan),
        ]
    )
    data = build_sequences(frame)
    assert list(data.users) == ["amy", "bob", "cat"]
    np.testing.assert_array_equal(data.offsets, [0, 2, 5, 6])
    assert data.offsets.dtype == np.int64
    np.testing.assert_array_equal(data.lengths(), [2, 3, 1])
    assert data.n_users == 3
    assert data.user_slice(1) == slice(2, 5)
    np.testing.assert_array_equal(data.ts[data.user_slice(1)], [T0 + 2, T0 + 5, T0 + 7])
    assert list(data.item_ids[data.item[data.user_slice(0)]]) == ["y", "x"]
    for arr in (data.item, data.behavior, data.value, data.ts):
        assert len(arr) == 6


def test_values_nan_where_absent() -> None:
    frame = _events([("u", "a", T0, "rate", 4.0), ("u", "b", T0 + 1, "view", np.nan)])
    data = build_sequences(frame)
    assert data.value.dtype == np.float32
    assert data.value[0] == 4.0 and np.isnan(data.value[1])
    no_value = build_sequences(frame.drop(columns=[S.VALUE]))
    assert np.isnan(no_value.value).all() and len(no_value.value) == 2


def test_numeric_ids_give_a_valid_csr_layout() -> None:
    frame = pd.DataFrame(
        {
            S.USER_ID: [10, 2, 10, 2],
            S.ITEM_ID: [9, 10, 10, 9],
            S.BEHAVIOR: "view",
            S.TIMESTAMP: pd.to_datetime([T0, T0, T0 + 1, T0 + 1], unit="s"),
        }
    )
    data = build_sequences(frame)
    assert np.all(np.diff(data.offsets) >= 0), f"offsets {data.offsets} are not a CSR layout"
    for u in range(data.n_users):
        sl = data.user_slice(u)
        assert np.all(np.diff(data.ts[sl]) >= 0)
    # user "10": two events at T0 (item 9) and T0+1 (item 10)
    u10 = list(data.users).index("10")
    assert list(data.item_ids[data.item[data.user_slice(u10)]]) == ["9", "10"]


# --- buckets ---------------------------------------------------------------------

GAP_GOLDEN = [  # seconds -> 1 + floor(log2(seconds + 1)), clipped to GAP_BUCKETS - 1
    (0, 1),
    (1, 2),
    (2, 2),
    (3, 3),
    (6, 3),
    (7, 4),
    (60, 6),
    (3600, 12),
    (86_400, 17),
    (7 * 86_400, 20),
    (-5, 1),
    (2**40, GAP_BUCKETS - 1),
]


def test_gap_bucket_golden_values_numpy_and_torch() -> None:
    secs = np.array([s for s, _ in GAP_GOLDEN], dtype=np.int64)
    expected = np.array([b for _, b in GAP_GOLDEN])
    out = gap_bucket(secs)
    assert isinstance(out, np.ndarray) and out.dtype == np.int64
    np.testing.assert_array_equal(out, expected)
    out_t = gap_bucket(torch.from_numpy(secs))
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.long
    np.testing.assert_array_equal(out_t.numpy(), expected)
    assert out.max() <= GAP_BUCKETS - 1 and out.min() >= 1  # 0 is reserved for padding / first event


def test_value_bucket_golden_values() -> None:
    values = np.array([np.nan, 0.0, 0.4, 0.6, 2.5, 3.5, 4.6, 5.0, 10.0, 12.0, -1.0])
    # NaN -> 0; else 1 + rint(value) clipped to [0, 10] (rint rounds halves to even)
    expected = [0, 1, 1, 2, 3, 5, 6, 6, 11, 11, 1]
    out = value_bucket(values)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.int64 and out.max() == VALUE_BUCKETS - 1


# --- bad input -------------------------------------------------------------------


@pytest.mark.parametrize("column", [S.USER_ID, S.ITEM_ID, S.TIMESTAMP, S.BEHAVIOR])
def test_missing_column_is_named(column: str) -> None:
    frame = _events([("u", "a", T0, "view", 1.0)]).drop(columns=[column])
    with pytest.raises(DataError, match=column):
        build_sequences(frame)


def test_empty_events_raise() -> None:
    with pytest.raises(DataError, match="no events"):
        build_sequences(_events([]))


def test_events_outside_fixed_vocabularies_raise() -> None:
    frame = _events([("u", "a", T0, "view", 1.0), ("u", "zz", T0 + 1, "view", 1.0)])
    with pytest.raises(DataError, match="item 'zz'"):
        build_sequences(frame, item_ids=["a", "b"])
    with pytest.raises(DataError, match="behavior 'view'"):
        build_sequences(frame, behaviors=["click"])


@pytest.mark.parametrize(
    "column, bad",
    [
        (S.TIMESTAMP, "not a time"),
        (S.TIMESTAMP, None),
        (S.USER_ID, None),
        (S.ITEM_ID, None),
    ],
)
def test_bad_values_raise_data_error_naming_the_column(column: str, bad: object) -> None:
    frame = pd.DataFrame(
        {
            S.USER_ID: ["u", "u"],
            S.ITEM_ID: ["a", "b"],
            S.BEHAVIOR: ["view", "view"],
            S.TIMESTAMP: ["2024-01-01T00:00:00", "2024-01-02T00:00:00"],
        }
    )
    frame[column] = frame[column].astype(object)
    frame.loc[1, column] = bad
    with pytest.raises(DataError, match=column):
        build_sequences(frame)
