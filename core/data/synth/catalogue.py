"""The synthetic product catalogue and its item similarity. :func:`_make_catalogue` draws
items spread evenly over the configured categories, each with a unique English title, a
description, a brand and a shop-like price (from the word lists of
:mod:`core.data.synth.words`); :func:`similarity_matrix` is the ``sim(j, i)`` of the planted
score: 1 for the same item, ``sim_brand`` for the same brand and category, ``sim_category``
for the same category, else 0."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.data.synth.config import (
    ITEM_BRAND,
    ITEM_DESCRIPTION,
    ITEM_FIELDS,
    ITEM_PRICE,
    SynthConfig,
)
from core.data.synth.words import CATEGORIES, Category
from core.schema import ITEM_CATEGORY, ITEM_ID, ITEM_TITLE


@dataclass(frozen=True)
class _Catalogue:
    """The items frame (ITEM_FIELDS) plus the per-item codes and words the simulation uses."""

    frame: pd.DataFrame
    category: np.ndarray  # [N] category index
    brand: np.ndarray  # [N] global brand index
    ptype: list[str]
    attr: list[str]


def _article(word: str) -> str:
    """'a' or 'an' for the word that follows."""
    return "an" if word[:1].lower() in "aeiou8" else "a"


def _make_item(spec: Category, rng: np.random.Generator) -> dict[str, str]:
    """Draw one item's words from a category's lists and render title + description."""
    pick = {k: str(rng.choice(getattr(spec, k + "s"))) for k in ("model", "attr", "detail", "extra")}
    brand = str(rng.choice(spec.brands))
    ptype = str(rng.choice(spec.types))
    name = spec.name_tpl.format(brand=brand, model=pick["model"], num=int(rng.integers(1, 10)))
    title = spec.title_tpl.format(name=name, brand=brand, attr=pick["attr"], ptype=ptype, extra=pick["extra"])
    first, second = rng.choice(len(spec.benefits), size=2, replace=False)
    described = f"{pick['attr']} {spec.unit}{ptype}" if not spec.unit else f"{spec.unit}{pick['attr']} {ptype}"
    description = " ".join(
        s
        for s in (
            f"{name} is {_article(described)} {described} {pick['detail']}.",
            spec.benefits[first],
            spec.benefits[second],
            spec.tail.format(brand=brand),
        )
        if s
    )
    return {ITEM_TITLE: title, ITEM_DESCRIPTION: description, ITEM_BRAND: brand, "ptype": ptype, "attr": pick["attr"]}


def _price(spec: Category, rng: np.random.Generator) -> float:
    """A shop-like price, log-uniform in the category range, ending in .99/.49/.95/.00."""
    low, high = spec.price
    whole = math.floor(math.exp(rng.uniform(math.log(low), math.log(high))))
    return round(whole + float(rng.choice([0.99, 0.49, 0.95, 0.0])), 2)


def _make_catalogue(config: SynthConfig, rng: np.random.Generator) -> _Catalogue:
    """Items spread evenly over the first n_categories categories, shuffled, unique titles."""
    specs = CATEGORIES[: config.n_categories]
    cats = np.resize(np.arange(config.n_categories), config.n_items)
    cats = cats[rng.permutation(config.n_items)]
    rows, seen = [], set()
    for c in cats:
        for _ in range(50):  # redraw on a duplicate title
            row = _make_item(specs[c], rng)
            if row[ITEM_TITLE] not in seen:
                break
        seen.add(row[ITEM_TITLE])
        rows.append({**row, ITEM_CATEGORY: specs[c].name, ITEM_PRICE: _price(specs[c], rng)})
    width = max(4, len(str(config.n_items)))
    frame = pd.DataFrame(rows)
    frame.insert(0, ITEM_ID, [f"I{k + 1:0{width}d}" for k in range(config.n_items)])
    brand_codes = pd.factorize(frame[ITEM_CATEGORY] + "/" + frame[ITEM_BRAND])[0]
    return _Catalogue(
        frame[list(ITEM_FIELDS)],
        cats.astype(np.int64),
        np.asarray(brand_codes, dtype=np.int64),
        frame["ptype"].tolist(),
        frame["attr"].tolist(),
    )


def similarity_matrix(category: np.ndarray, brand: np.ndarray, sim_brand: float, sim_category: float) -> np.ndarray:
    """sim(j, i): 1 on the diagonal, sim_brand same brand+category, sim_category same category.

    ``category`` and ``brand`` are [N] integer codes (brand codes unique per category);
    returns [N, N] float64.
    """
    same_cat = category[:, None] == category[None, :]
    same_brand = same_cat & (brand[:, None] == brand[None, :])
    sim = np.where(same_brand, sim_brand, np.where(same_cat, sim_category, 0.0))
    np.fill_diagonal(sim, 1.0)
    return sim
