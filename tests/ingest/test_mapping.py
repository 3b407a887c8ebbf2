"""Column guessing, overrides and behavior labels (pure functions)."""

from __future__ import annotations

import pytest

from core import schema as S
from core.errors import DataError
from core.ingest.mapping import (
    canonical_behavior,
    guess_mapping,
    looks_like_header,
    map_behavior_labels,
    parse_behavior_codes,
    parse_pairs,
    resolve_mapping,
)


@pytest.mark.parametrize(
    ("column", "field"),
    [
        ("user_id", S.USER_ID),
        ("userid", S.USER_ID),
        ("visitorid", S.USER_ID),
        ("reviewerID", S.USER_ID),
        ("User-Id", S.USER_ID),
        ("item_id", S.ITEM_ID),
        ("itemid", S.ITEM_ID),
        ("product_id", S.ITEM_ID),
        ("asin", S.ITEM_ID),
        ("movie_id", S.ITEM_ID),
        ("movieId", S.ITEM_ID),
        ("event_type", S.BEHAVIOR),
        ("action_type", S.BEHAVIOR),
        ("behavior_type", S.BEHAVIOR),
        ("event", S.BEHAVIOR),
        ("timestamp", S.TIMESTAMP),
        ("event_time", S.TIMESTAMP),
        ("time_stamp", S.TIMESTAMP),
        ("unixReviewTime", S.TIMESTAMP),
        ("rating", S.VALUE),
        ("overall", S.VALUE),
        ("value", S.VALUE),
        ("text", S.TEXT),
        ("reviewText", S.TEXT),
    ],
)
def test_common_spellings_are_guessed(column: str, field: str) -> None:
    assert guess_mapping(["something_else", column]) == {field: column}


def test_amazon_review_columns_map_to_every_field() -> None:
    cols = [
        "reviewerID",
        "asin",
        "reviewerName",
        "helpful",
        "reviewText",
        "overall",
        "summary",
        "unixReviewTime",
        "reviewTime",
    ]
    assert guess_mapping(cols) == {
        S.USER_ID: "reviewerID",
        S.ITEM_ID: "asin",
        S.TIMESTAMP: "unixReviewTime",
        S.VALUE: "overall",
        S.TEXT: "reviewText",
    }


def test_retailrocket_columns() -> None:
    cols = ["timestamp", "visitorid", "event", "itemid", "transactionid"]
    assert guess_mapping(cols) == {
        S.USER_ID: "visitorid",
        S.ITEM_ID: "itemid",
        S.TIMESTAMP: "timestamp",
        S.BEHAVIOR: "event",
    }


@pytest.mark.parametrize(
    ("column", "field"),
    [
        ("user_idx", S.USER_ID),
        ("user_index", S.USER_ID),
        ("visitor_idx", S.USER_ID),
        ("customer_key", S.USER_ID),
        ("member_no", S.USER_ID),
        ("item_idx", S.ITEM_ID),
        ("item_index", S.ITEM_ID),
        ("product_idx", S.ITEM_ID),
        ("sku_no", S.ITEM_ID),
        ("article_nr", S.ITEM_ID),
        ("video", S.ITEM_ID),
        ("movie_index", S.ITEM_ID),
    ],
)
def test_id_spellings_with_suffixes_are_guessed(column: str, field: str) -> None:
    assert guess_mapping(["something_else", column]) == {field: column}


def test_numeric_id_log_with_idx_columns() -> None:
    cols = ["user_idx", "item_idx", "behavior", "timestamp"]
    assert guess_mapping(cols) == {
        S.USER_ID: "user_idx",
        S.ITEM_ID: "item_idx",
        S.BEHAVIOR: "behavior",
        S.TIMESTAMP: "timestamp",
    }


def test_a_session_is_the_user_only_without_a_user_column() -> None:
    assert guess_mapping(["session_id", "item_id", "ts"])[S.USER_ID] == "session_id"
    assert guess_mapping(["session", "user_idx", "item_idx"])[S.USER_ID] == "user_idx"
    assert guess_mapping(["sessionId", "userId", "itemId"]) == {S.USER_ID: "userId", S.ITEM_ID: "itemId"}


def test_exact_spellings_win_over_stems() -> None:
    assert guess_mapping(["product_idx", "item_id", "uid"]) == {S.USER_ID: "uid", S.ITEM_ID: "item_id"}
    assert guess_mapping(["event_id", "user_idx", "item_idx"]) == {S.USER_ID: "user_idx", S.ITEM_ID: "item_idx"}


def test_each_column_is_used_once() -> None:
    mapping = guess_mapping(["user", "item", "rating"])
    assert list(mapping.values()).count("rating") == 1


def test_override_replaces_a_guess_and_moves_a_column() -> None:
    cols = ["user_id", "item_id", "ts", "kind"]
    mapping = resolve_mapping(cols, {S.BEHAVIOR: "kind", S.USER_ID: "item_id", S.ITEM_ID: "user_id"})
    assert mapping[S.BEHAVIOR] == "kind"
    assert mapping[S.USER_ID] == "item_id" and mapping[S.ITEM_ID] == "user_id"


def test_override_can_unmap_a_field() -> None:
    assert S.VALUE not in resolve_mapping(["user_id", "item_id", "rating"], {S.VALUE: None})


def test_override_names_a_missing_column_and_lists_the_real_ones() -> None:
    with pytest.raises(DataError, match=r"no column 'nope'.*\['user_id', 'item_id'\]"):
        resolve_mapping(["user_id", "item_id"], {S.USER_ID: "nope"})


def test_override_rejects_an_unknown_field() -> None:
    with pytest.raises(DataError, match="unknown field 'colour'"):
        resolve_mapping(["user_id", "item_id"], {"colour": "user_id"})


def test_one_column_cannot_serve_two_overridden_fields() -> None:
    with pytest.raises(DataError, match="mapped to more than one field"):
        resolve_mapping(["a", "b"], {S.USER_ID: "a", S.ITEM_ID: "a"})


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("pv", S.VIEW),
        ("PV", S.VIEW),
        ("fav", S.FAVORITE),
        ("buy", S.PURCHASE),
        ("transaction", S.PURCHASE),
        ("addtocart", S.CART),
        ("Add To Cart", S.CART),
        ("add-to-cart", S.CART),
        (" view ", S.VIEW),
        ("purchase", S.PURCHASE),
        ("rating", S.RATE),
        ("teleport", "teleport"),
        ("Super Like", "super_like"),
    ],
)
def test_behavior_labels_are_normalized(label: str, expected: str) -> None:
    assert canonical_behavior(label) == expected


def test_numeric_codes_map_through_behavior_codes() -> None:
    codes = parse_behavior_codes("0=click,1=cart,2=buy,3=fav")
    assert codes == {"0": S.CLICK, "1": S.CART, "2": S.PURCHASE, "3": S.FAVORITE}
    mapped = map_behavior_labels(["0", "2", "7", None, " "], codes)
    assert mapped == {"0": S.CLICK, "2": S.PURCHASE, "7": "7", None: None, " ": None}


@pytest.mark.parametrize("text", ["0click", "=click", "0=", "0=click,junk"])
def test_malformed_behavior_codes_are_refused(text: str) -> None:
    with pytest.raises(DataError, match="^behavior codes: "):  # the page's field; the CLI names its flag itself
        parse_behavior_codes(text)


def test_parse_pairs_trims_parts() -> None:
    assert parse_pairs(" a = b , c=d ", "x") == {"a": "b", "c": "d"}


def test_header_detection() -> None:
    assert looks_like_header(["user_id", "item_id"], [["1", "2"]])
    assert looks_like_header(["who", "what"], [["1", "2"], ["3", "4"]])  # names over numbers
    assert not looks_like_header(["196", "242", "3"], [["186", "302", "3"]])
    assert not looks_like_header(["u1", "i1"], [["u2", "i2"]], strict=True)
