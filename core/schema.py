"""Column names, canonical behaviors and their synonyms: constants, no logic."""

from __future__ import annotations

# --- canonical event columns (what every ingested dataset is stored as) -------
USER_ID = "user_id"
ITEM_ID = "item_id"
TIMESTAMP = "timestamp"
BEHAVIOR = "behavior"
VALUE = "value"
TEXT = "text"
DATASET = "dataset"
ROW = "row"  # 1-based record number in the source file, for stable ordering

EVENT_FIELDS: tuple[str, ...] = (USER_ID, ITEM_ID, TIMESTAMP, BEHAVIOR, VALUE, TEXT)
REQUIRED_FIELDS: tuple[str, ...] = (USER_ID, ITEM_ID)

# --- item catalogue columns ---------------------------------------------------
ITEM_TITLE = "title"
ITEM_CATEGORY = "category"
ITEM_TEXT = "item_text"
ITEM_ATTRS = "attrs"  # JSON object of numeric item columns

# --- behaviors ----------------------------------------------------------------
VIEW = "view"
CLICK = "click"
FAVORITE = "favorite"
CART = "cart"
PURCHASE = "purchase"
RATE = "rate"
REVIEW = "review"
SHARE = "share"

CANONICAL_BEHAVIORS: tuple[str, ...] = (
    VIEW,
    CLICK,
    FAVORITE,
    CART,
    PURCHASE,
    RATE,
    REVIEW,
    SHARE,
)

# Lower-cased, with spaces and hyphens turned into underscores before lookup.
BEHAVIOR_SYNONYMS: dict[str, str] = {
    "pv": VIEW,
    "page_view": VIEW,
    "pageview": VIEW,
    "views": VIEW,
    "viewed": VIEW,
    "impression": VIEW,
    "detail_view": VIEW,
    "product_view": VIEW,
    "watch": VIEW,
    "clicks": CLICK,
    "clicked": CLICK,
    "tap": CLICK,
    "fav": FAVORITE,
    "favourite": FAVORITE,
    "favorited": FAVORITE,
    "like": FAVORITE,
    "wishlist": FAVORITE,
    "add_to_wishlist": FAVORITE,
    "save": FAVORITE,
    "bookmark": FAVORITE,
    "add_to_favorite": FAVORITE,
    "add_to_favourite": FAVORITE,
    "addtocart": CART,
    "add_to_cart": CART,
    "add2cart": CART,
    "basket": CART,
    "add_to_basket": CART,
    "carted": CART,
    "buy": PURCHASE,
    "bought": PURCHASE,
    "transaction": PURCHASE,
    "order": PURCHASE,
    "checkout": PURCHASE,
    "purchased": PURCHASE,
    "conversion": PURCHASE,
    "rating": RATE,
    "rated": RATE,
    "score": RATE,
    "stars": RATE,
    "comment": REVIEW,
    "reviewed": REVIEW,
    "reviews": REVIEW,
    "shared": SHARE,
    "forward": SHARE,
    "retweet": SHARE,
    "repost": SHARE,
}

# Behaviors whose `value` is a rating and must lie in the rating range.
RATING_BEHAVIORS: frozenset[str] = frozenset({RATE, REVIEW})
DEFAULT_RATING_RANGE: tuple[float, float] = (0.0, 5.0)

# --- column-name guessing: normalized spelling (lowercase, alphanumerics only) --
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    USER_ID: (
        "userid",
        "user",
        "uid",
        "visitorid",
        "visitor",
        "reviewerid",
        "customerid",
        "customer",
        "memberid",
        "accountid",
        "clientid",
        "sessionuser",
        "buyerid",
    ),
    ITEM_ID: (
        "itemid",
        "item",
        "iid",
        "productid",
        "product",
        "asin",
        "movieid",
        "movie",
        "sku",
        "articleid",
        "article",
        "contentid",
        "videoid",
        "newsid",
        "docid",
        "goodsid",
        "skuid",
        "bookid",
        "isbn",
        "trackid",
        "songid",
    ),
    TIMESTAMP: (
        "timestamp",
        "ts",
        "time",
        "eventtime",
        "timestampms",
        "datetime",
        "date",
        "timestamp",
        "unixreviewtime",
        "unixtime",
        "createdat",
        "eventdate",
        "eventtimestamp",
        "clicktime",
        "actiontime",
        "logtime",
    ),
    BEHAVIOR: (
        "behavior",
        "behaviour",
        "behaviortype",
        "behaviourtype",
        "eventtype",
        "event",
        "actiontype",
        "action",
        "interaction",
        "interactiontype",
        "type",
        "btype",
    ),
    VALUE: (
        "value",
        "rating",
        "overall",
        "score",
        "stars",
        "quantity",
        "qty",
        "dwell",
        "dwelltime",
        "duration",
        "watchtime",
    ),
    TEXT: (
        "text",
        "reviewtext",
        "review",
        "comment",
        "body",
        "query",
        "searchquery",
        "content",
        "summary",
    ),
}

# ID columns are also recognized by their stem: an alias above (or the field name) with one of these
# suffixes taken off, with or without a suffix in the file ("user_idx", "item_index", "video", "sku_no").
ID_SUFFIXES: tuple[str, ...] = ("idx", "index", "id", "key", "no", "nr", "num", "number", "code")
# Read as the user (by stem too: "session_id") when no user column is found: session logs (YooChoose) have none.
USER_FALLBACK_ALIASES: tuple[str, ...] = ("session", "sessionid")

ITEM_ID_ALIASES = COLUMN_ALIASES[ITEM_ID]
ITEM_TITLE_ALIASES: tuple[str, ...] = ("title", "name", "productname", "itemname", "movietitle", "headline")
ITEM_CATEGORY_ALIASES: tuple[str, ...] = ("category", "categories", "cat", "genre", "genres", "section", "department")
# Preferred order of item text columns in the item-text template; others follow.
ITEM_TEXT_ORDER: tuple[str, ...] = (
    "title",
    "name",
    "productname",
    "itemname",
    "movietitle",
    "headline",
    "brand",
    "category",
    "categories",
    "genre",
    "genres",
    "tags",
    "keywords",
    "description",
    "desc",
    "abstract",
    "summary",
)

# --- rejection reasons (stable keys of IngestReport.rejected_by_reason) --------
R_MALFORMED = "malformed_row"
R_LINE_TOO_LONG = "line_too_long"  # a line over the reader's line limit (source.MAX_LINE_BYTES)
R_NUL_BYTES = "nul_bytes"  # a line holding NUL bytes (binary data, a zero-padded tail)
R_MISSING_USER = "missing_user_id"
R_MISSING_ITEM = "missing_item_id"
R_ID_TOO_LONG = "id_too_long"
R_MISSING_TIME = "missing_timestamp"
R_BAD_TIME = "bad_timestamp"
R_MISSING_BEHAVIOR = "missing_behavior"
R_BAD_VALUE = "non_numeric_value"
R_MISSING_RATING = "missing_rating"
R_RATING_RANGE = "rating_out_of_range"
R_DUPLICATE = "duplicate"
R_STORED = "already_stored"  # an appended row the dataset already holds (core.ingest.append)

# Values read as "missing" in ID columns (after trimming, case-insensitive).
NULL_TOKENS: tuple[str, ...] = ("", "nan", "null", "none", "na", "n/a", "nil", "undefined")
MAX_ID_LENGTH = 256
