"""Tests of core.data.synth: determinism, the committed sample, formats, validation and the
planted truth (model-free and by the oracle likelihood)."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import cli
from core.data import synth
from core.errors import DataError
from core.schema import (
    BEHAVIOR,
    CANONICAL_BEHAVIORS,
    CART,
    CLICK,
    FAVORITE,
    ITEM_CATEGORY,
    ITEM_ID,
    ITEM_TITLE,
    PURCHASE,
    RATE,
    REVIEW,
    SHARE,
    TEXT,
    TIMESTAMP,
    USER_ID,
    VALUE,
    VIEW,
)

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_data"
FILES = (synth.EVENTS_FILE, synth.ITEMS_FILE, synth.TRUTH_FILE)
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


@pytest.fixture(scope="module")
def default_data() -> synth.SyntheticData:
    return synth.generate(synth.SynthConfig())


def _weights(**changes: float) -> dict[str, float]:
    return {**synth.DEFAULT_BEHAVIOR_WEIGHTS, **changes}


def _swap(a: str, b: str) -> dict[str, float]:
    w = synth.DEFAULT_BEHAVIOR_WEIGHTS
    return _weights(**{a: w[b], b: w[a]})


def _read_bytes(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in FILES}


# --- determinism and the committed sample ------------------------------------------------


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    config = synth.SynthConfig.small(seed=3)
    synth.write(synth.generate(config), tmp_path / "a")
    synth.write(synth.generate(config), tmp_path / "b")
    assert _read_bytes(tmp_path / "a") == _read_bytes(tmp_path / "b")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(FILES)  # no temp files


def test_different_seeds_differ(tmp_path: Path) -> None:
    synth.write(synth.generate(synth.SynthConfig.small(seed=3)), tmp_path / "a")
    synth.write(synth.generate(synth.SynthConfig.small(seed=4)), tmp_path / "b")
    first, second = _read_bytes(tmp_path / "a"), _read_bytes(tmp_path / "b")
    assert all(first[name] != second[name] for name in FILES)


def test_committed_sample_matches_regeneration(tmp_path: Path, default_data: synth.SyntheticData) -> None:
    paths = synth.write(default_data, tmp_path)
    assert [p.name for p in paths] == list(FILES)
    for name in FILES:
        assert (SAMPLE_DIR / name).read_bytes() == (tmp_path / name).read_bytes(), (
            f"sample_data/{name} differs from `behaviorlens synth --out sample_data`"
        )


# --- figures and formats ------------------------------------------------------------------


def test_sample_counts_in_range(default_data: synth.SyntheticData) -> None:
    events, items = default_data.events, default_data.items
    assert 40_000 <= len(events) <= 80_000
    assert 500 <= events[USER_ID].nunique() <= 1_000
    assert 300 <= len(items) <= 500 and items[ITEM_ID].is_unique
    assert items[ITEM_CATEGORY].nunique() == 10
    assert set(events[ITEM_ID]) <= set(items[ITEM_ID])


def test_funnel_counts_decrease(default_data: synth.SyntheticData) -> None:
    counts = default_data.events[BEHAVIOR].value_counts()
    assert set(counts.index) == set(CANONICAL_BEHAVIORS)
    assert counts[VIEW] > counts[CLICK] > max(counts[CART], counts[PURCHASE])  # loose steps: some buy without a cart
    assert counts[PURCHASE] > counts[RATE] > counts[REVIEW] > 0
    assert 0 < counts[SHARE] < 0.05 * len(default_data.events)
    assert counts[FAVORITE] < counts[CLICK]


def test_events_file_format() -> None:
    raw = (SAMPLE_DIR / synth.EVENTS_FILE).read_bytes()
    assert b"\r" not in raw
    with open(SAMPLE_DIR / synth.EVENTS_FILE, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == synth.EVENT_COLUMNS
    frame = pd.DataFrame(rows[1:], columns=rows[0])
    assert frame[TIMESTAMP].map(ISO_UTC.match).all()
    keys = list(zip(frame[TIMESTAMP], frame[USER_ID]))
    assert keys == sorted(keys)
    assert frame[TIMESTAMP].min() >= "2026-03-02T00:00:00Z"
    assert frame[TIMESTAMP].max() < "2026-04-27T00:00:00Z"  # 8 weeks
    rated = frame[BEHAVIOR].isin([RATE, REVIEW])
    assert set(frame.loc[rated, VALUE]) <= {"1", "2", "3", "4", "5"}
    assert (frame.loc[~rated, VALUE] == "").all()
    reviewed = frame[BEHAVIOR] == REVIEW
    assert (frame.loc[reviewed, TEXT] != "").all() and (frame.loc[~reviewed, TEXT] == "").all()
    tricky = frame.loc[reviewed, TEXT]
    assert (tricky.str.contains(",") & tricky.str.contains('"')).any()


def test_ratings_follow_item_quality_not_preference(default_data: synth.SyntheticData) -> None:
    """Ratings come from the item's quality and the user's leniency, latent draws that never
    enter the choice score: a rating says nothing about which items the user picks next."""
    events, truth = default_data.events, default_data.truth
    latent = truth["latent"]
    rated = events[events[BEHAVIOR] == RATE]
    values = rated[VALUE].to_numpy()
    quality = rated[ITEM_ID].map(latent["item_quality"]).to_numpy()
    leniency = rated[USER_ID].map(latent["user_leniency"]).to_numpy()
    assert np.corrcoef(values, quality)[0, 1] > 0.4
    assert np.corrcoef(values, leniency)[0, 1] > 0.15
    prefs, cats = latent["user_category_preference"], truth["categories"]
    category = default_data.items.set_index(ITEM_ID)[ITEM_CATEGORY]
    top = np.array([cats[int(np.argmax(prefs[u]))] == category[i] for u, i in zip(rated[USER_ID], rated[ITEM_ID])])
    assert abs(values[top].mean() - values[~top].mean()) < 0.25


def test_ratings_can_still_follow_preference() -> None:
    data = synth.generate(synth.SynthConfig.small(rating_pref_gain=2.6, rating_quality_gain=0.0, rating_base=2.2))
    events, truth = data.events, data.truth
    prefs, cats = truth["latent"]["user_category_preference"], truth["categories"]
    category = data.items.set_index(ITEM_ID)[ITEM_CATEGORY]
    rated = events[events[BEHAVIOR] == RATE]
    top = np.array([cats[int(np.argmax(prefs[u]))] == category[i] for u, i in zip(rated[USER_ID], rated[ITEM_ID])])
    values = rated[VALUE].to_numpy()
    assert values[top].mean() > values[~top].mean() + 0.5


def test_loose_steps_break_the_funnel_nesting(default_data: synth.SyntheticData) -> None:
    """With p_loose > 0 no behavior implies another: purchases without a cart and ratings
    without a purchase occur; with p_loose = 0 the funnel is strictly nested."""

    def steps(data: synth.SyntheticData) -> pd.Series:
        return _sessions(data, keep_last=True)["steps"].str.split("+").map(set)

    loose = steps(default_data)
    assert default_data.truth["parameters"]["p_loose"] > 0
    assert (loose.map(lambda s: PURCHASE in s and CART not in s)).mean() > 0.01
    assert (loose.map(lambda s: RATE in s and PURCHASE not in s)).mean() > 0.01
    nested = steps(synth.generate(synth.SynthConfig.small(p_loose=0.0)))
    assert not nested.map(
        lambda s: (
            (PURCHASE in s and CART not in s) or (RATE in s and PURCHASE not in s) or (CART in s and CLICK not in s)
        )
    ).any()
    counts = pd.Series([b for s in loose for b in s]).value_counts()
    sessions = len(loose)
    expected = synth.expected_session_events(synth.SynthConfig())
    assert abs(counts.sum() / sessions - expected) < 0.05 * expected


def test_items_file_format() -> None:
    with open(SAMPLE_DIR / synth.ITEMS_FILE, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == synth.ITEM_FIELDS
    assert [r[ITEM_ID] for r in rows] == [f"I{k:04d}" for k in range(1, len(rows) + 1)]
    assert all(re.fullmatch(r"\d+\.\d{2}", r[synth.ITEM_PRICE]) for r in rows)
    assert len({r[ITEM_TITLE] for r in rows}) == len(rows)
    assert all(r[synth.ITEM_BRAND] in r[ITEM_TITLE] and " – " in r[ITEM_TITLE] for r in rows)
    assert all(len(r[synth.ITEM_DESCRIPTION].split()) >= 15 for r in rows)


def test_ground_truth_keys(default_data: synth.SyntheticData) -> None:
    truth = json.loads((SAMPLE_DIR / synth.TRUTH_FILE).read_text(encoding="utf-8"))
    assert truth == json.loads(synth.truth_json(default_data.truth))
    assert truth["behavior_weights"] == synth.DEFAULT_BEHAVIOR_WEIGHTS
    assert list(truth["behavior_weights"]) == list(CANONICAL_BEHAVIORS)
    params = truth["parameters"]
    for key in (
        "seed",
        "n_users",
        "n_items",
        "n_categories",
        "weeks",
        "start",
        "tau_seconds",
        "beta_pref",
        "beta_pop",
        "sim_brand",
        "sim_category",
        "p_click",
        "p_purchase",
    ):
        assert key in params
    assert truth["generator_version"] == synth.GENERATOR_VERSION
    assert truth["counts"]["events"] == len(default_data.events)
    assert sum(truth["counts"]["by_behavior"].values()) == len(default_data.events)
    assert len(truth["latent"]["user_category_preference"]) == params["n_users"]
    assert len(truth["latent"]["item_popularity"]) == params["n_items"]


# --- validation and the command line ------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "words"),
    [
        (_weights(dwell=1.0), ["'dwell'", "1.0"]),
        (_weights(cart=-0.5), ["'cart'", "-0.5"]),
        (_weights(share=math.nan), ["'share'", "nan"]),
        (_weights(view="high"), ["'view'", "'high'"]),
        ({b: 1.0 for b in CANONICAL_BEHAVIORS if b != RATE}, [RATE]),
    ],
)
def test_bad_weights_raise_data_error(weights: dict, words: list[str]) -> None:
    with pytest.raises(DataError) as info:
        synth.SynthConfig.small(behavior_weights=weights)
    assert all(word in str(info.value) for word in words)


@pytest.mark.parametrize(
    "change",
    [
        {"n_categories": 11},
        {"p_click": 1.5},
        {"start": "2026-13-01"},
        {"tau_seconds": 0.0},
    ],
)
def test_bad_parameters_raise_data_error(change: dict) -> None:
    with pytest.raises(DataError, match=next(iter(change))):
        synth.SynthConfig.small(**change)


def test_unusual_weight_orders_work() -> None:
    for weights in (_swap(VIEW, PURCHASE), dict.fromkeys(CANONICAL_BEHAVIORS, 0.0)):
        data = synth.generate(synth.SynthConfig.small(behavior_weights=weights))
        assert data.truth["behavior_weights"] == weights
        assert len(data.events) > 5_000


def test_cli_writes_files_with_weights(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    status = cli.main(
        [
            "synth",
            "--out",
            str(tmp_path),
            "--users",
            "60",
            "--items",
            "50",
            "--events",
            "2000",
            "--seed",
            "5",
            "--weights",
            f"{VIEW}=2, {PURCHASE}=0.3",
        ]
    )
    assert status == 0 and "events" in capsys.readouterr().out
    truth = json.loads((tmp_path / synth.TRUTH_FILE).read_text(encoding="utf-8"))
    assert truth["behavior_weights"] == _weights(view=2.0, purchase=0.3)
    assert truth["parameters"]["seed"] == 5 and truth["counts"]["users"] == 60


@pytest.mark.parametrize("spec", [VIEW, f"{VIEW}=lots", "buy=1"])
def test_cli_bad_weights_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture, spec: str) -> None:
    assert cli.main(["synth", "--out", str(tmp_path), "--weights", spec]) == 2
    assert "error:" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


# --- the planted truth ---------------------------------------------------------------------


def _sessions(data: synth.SyntheticData, keep_last: bool = False) -> pd.DataFrame:
    """One row per session (it starts at its view): user, item, behaviors, next item
    (``keep_last``: also each user's last session, which has none)."""
    ev = data.events.sort_values([USER_ID, TIMESTAMP], kind="stable")
    grouped = ev.groupby((ev[BEHAVIOR] == VIEW).cumsum().to_numpy())
    sessions = pd.DataFrame(
        {
            USER_ID: grouped[USER_ID].first(),
            ITEM_ID: grouped[ITEM_ID].first(),
            "steps": grouped[BEHAVIOR].agg(lambda b: "+".join(b)),
        }
    )
    sessions["next"] = sessions.groupby(USER_ID)[ITEM_ID].shift(-1)
    return sessions if keep_last else sessions.dropna(subset=["next"])


def _log_repeat_lift(sessions: pd.DataFrame, before: tuple[str, ...], after: tuple[str, ...]) -> float:
    """log P(next session on the same item | session steps == after) / (same | before)."""
    repeat = (sessions[ITEM_ID] == sessions["next"]).groupby(sessions["steps"]).mean()
    return float(np.log(repeat["+".join(after)] / repeat["+".join(before)]))


def test_planted_effect_is_visible_and_reverses() -> None:
    """Model-free: each funnel step adds w_b to the same item's score, so the log-ratio of
    next-session repeat rates between sessions ending one step apart tracks w_b. (Damped:
    with a week-long memory an item a user keeps returning to is a likely repeat already.)"""
    lifts = {}
    for name, weights in (("default", _weights()), ("swapped", _swap(CLICK, PURCHASE))):
        s = _sessions(synth.generate(synth.SynthConfig(behavior_weights=weights)))
        lifts[name] = (
            _log_repeat_lift(s, (VIEW,), (VIEW, CLICK)),
            _log_repeat_lift(s, (VIEW, CLICK, CART), (VIEW, CLICK, CART, PURCHASE)),
        )
    click, purchase = lifts["default"]
    assert purchase > click + 0.1  # w_purchase 2.0 > w_click 0.6 (measured 0.34 vs 0.16)
    click, purchase = lifts["swapped"]
    assert click > purchase + 0.1  # w_click 2.0 > w_purchase 0.6 (measured 0.21 vs -0.06)


def _history_features(data: synth.SyntheticData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rebuild the planted score from the files: offsets [S, N], features [S, B, N], target [S].

    features[s, b, j] = sum over earlier events e of type b: exp(-(t - t_e)/tau) sim(j, item(e)).
    """
    truth, items = data.truth, data.items
    params, latent = truth["parameters"], truth["latent"]
    cats = items[ITEM_CATEGORY].map(truth["categories"].index).to_numpy()
    brands = pd.factorize(items[ITEM_CATEGORY] + "/" + items[synth.ITEM_BRAND])[0]
    sim = synth.similarity_matrix(cats, brands, params["sim_brand"], params["sim_category"])
    popularity = np.array([latent["item_popularity"][i] for i in items[ITEM_ID]])
    ev = data.events
    t = (ev[TIMESTAMP] - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    item = ev[ITEM_ID].map({i: k for k, i in enumerate(items[ITEM_ID])}).to_numpy()
    kind = ev[BEHAVIOR].map(CANONICAL_BEHAVIORS.index).to_numpy()
    offsets, features, targets = [], [], []
    for user, rows in ev.groupby(USER_ID).indices.items():
        starts = rows[kind[rows] == 0][1:]  # every session but the first
        decay = np.exp((t[rows][None, :] - t[starts][:, None]) / params["tau_seconds"])
        decay *= t[rows][None, :] < t[starts][:, None]  # [S_u, E_u]
        acc = np.zeros((len(starts), len(CANONICAL_BEHAVIORS), len(items)))
        np.add.at(acc, (slice(None), kind[rows], item[rows]), decay)
        features.append(acc @ sim)
        pref = np.array(latent["user_category_preference"][user])
        offsets.append(np.tile(params["beta_pref"] * pref[cats] + params["beta_pop"] * popularity, (len(starts), 1)))
        targets.append(item[starts])
    return np.concatenate(offsets), np.concatenate(features), np.concatenate(targets)


def _fit_weights(offsets: np.ndarray, features: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Conditional-logit MLE of the behavior weights by Newton steps: (weights, std errors)."""
    w = np.zeros(features.shape[1])
    rows = np.arange(len(targets))
    for _ in range(30):
        score = offsets + np.einsum("sbn,b->sn", features, w)
        prob = np.exp(score - score.max(axis=1, keepdims=True))
        prob /= prob.sum(axis=1, keepdims=True)  # [S, N]
        mean = np.einsum("sbn,sn->sb", features, prob)  # [S, B]
        grad = (features[rows, :, targets] - mean).sum(axis=0)
        hess = np.einsum("sbn,scn,sn->bc", features, features, prob) - mean.T @ mean
        step = np.linalg.solve(hess, grad)
        w += step * min(1.0, 1.0 / np.abs(step).max())  # damped
        if np.abs(step).max() < 1e-6:
            break
    return w, np.sqrt(np.diag(np.linalg.inv(hess)))


@pytest.mark.parametrize("weights", [_weights(), _swap(VIEW, PURCHASE)])
def test_oracle_likelihood_recovers_planted_weights(weights: dict[str, float]) -> None:
    """The generator really samples from softmax(score): fitting the planted formula to its
    output recovers every weight, and the view/purchase order follows the config."""
    config = synth.SynthConfig(n_users=300, n_items=120, target_events=20_000, behavior_weights=weights)
    fitted, stderr = _fit_weights(*_history_features(synth.generate(config)))
    true = np.array([weights[b] for b in CANONICAL_BEHAVIORS])
    assert np.all(np.abs(fitted - true) < 4 * stderr), dict(zip(CANONICAL_BEHAVIORS, fitted))
    view, purchase = fitted[CANONICAL_BEHAVIORS.index(VIEW)], fitted[CANONICAL_BEHAVIORS.index(PURCHASE)]
    assert (purchase - view > 1.0) if weights[PURCHASE] > weights[VIEW] else (view - purchase > 1.0)
