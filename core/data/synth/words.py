"""Word lists of the sample-data generator: catalogue categories and review templates.
Each :class:`Category` holds the brands, models, product types, modifiers and description
sentences that :mod:`core.data.synth.catalogue` draws item titles and descriptions from;
``REVIEW_TEMPLATES`` holds, by tone, the review sentences that
:mod:`core.data.synth.simulate` fills in for review events."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    """Word lists of one catalogue category; templates use str.format fields."""

    name: str
    brands: tuple[str, ...]
    models: tuple[str, ...]
    types: tuple[str, ...]
    attrs: tuple[str, ...]  # pre-modifiers: "waterproof"
    details: tuple[str, ...]  # post-modifiers: "with a 30-hour battery"
    extras: tuple[str, ...]  # title suffix: "men's, size range 7–13"
    benefits: tuple[str, ...]  # description sentences
    price: tuple[float, float]
    unit: str = ""  # "pair of " / "bag of "
    name_tpl: str = "{brand} {model} {num}"
    title_tpl: str = "{name} – {attr} {ptype}, {extra}"
    tail: str = ""  # last description sentence


# Hand-laid word lists (one category or tone per block), kept as written by the formatter.
# fmt: off
CATEGORIES: tuple[Category, ...] = (
    Category(
        "running shoes",
        ("Northpeak", "Stridewell", "Fleetfoot", "Trailhawk", "Apexrun", "Cadence"),
        ("Trail Runner", "Velocity", "Summit", "Pacer", "Glide", "Tempo", "Ridge", "Swift"),
        ("trail running shoe", "road running shoe", "racing flat", "stability running shoe",
         "cushioned running shoe"),
        ("waterproof", "lightweight", "breathable", "carbon-plated", "wide-fit", "reflective"),
        ("with an engineered mesh upper", "with a recycled knit upper", "in slate grey and orange",
         "in black and white", "with a grippy rubber outsole", "with a 6 mm heel drop"),
        ("men's, size range 7–13", "women's, size range 5–11", "unisex, size range 5–13"),
        ("Built for long miles on mixed terrain.",
         "A responsive foam midsole returns energy on every stride.",
         "The secure heel lock keeps your foot stable on fast descents.",
         "Ideal for tempo runs, long runs and race day."),
        (59.0, 220.0),
    ),
    Category(
        "headphones",
        ("Sonara", "Auralis", "Bassline", "Quietwave", "Echofield", "Helix Audio"),
        ("Studio", "Pulse", "Air", "Nova", "Drift", "Halo", "Arc"),
        ("over-ear headphones", "wireless earbuds", "on-ear headphones",
         "studio monitor headphones", "sports earbuds", "open-ear headphones"),
        ("noise-cancelling", "wireless", "water-resistant", "low-latency", "foldable"),
        ("with a 30-hour battery", "with Bluetooth 5.3 and multipoint pairing",
         "with USB-C fast charging", "with memory-foam ear cushions", "in matte black",
         "in sand beige"),
        ("with carrying case", "with built-in microphone", "with charging case",
         "with detachable cable"),
        ("Deep, balanced sound for music, podcasts and calls.",
         "Adaptive noise cancelling blocks out trains and open-plan offices.",
         "Touch controls let you skip tracks without reaching for your phone.",
         "A secure fit that stays put during workouts."),
        (29.0, 350.0), unit="pair of ",
    ),
    Category(
        "coffee",
        ("Ember Roasters", "Highland Bean", "Copper Kettle", "Morning Ritual",
         "Blackstone Coffee", "Sierra Verde"),
        ("Ethiopia Yirgacheffe", "Colombia Huila", "Guatemala Antigua", "Sumatra Mandheling",
         "Brazil Cerrado", "Kenya AA", "Costa Rica Tarrazú", "House Blend"),
        ("whole bean coffee", "ground coffee", "espresso blend", "single-origin coffee",
         "cold brew coffee", "decaf coffee"),
        ("light roast", "medium roast", "dark roast", "organic", "fair-trade", "small-batch"),
        ("with notes of dark chocolate and cherry", "with notes of citrus and jasmine",
         "with notes of caramel and toasted almond", "with a syrupy body and low acidity",
         "roasted to order in small batches"),
        ("250 g bag", "500 g bag", "1 kg bag", "12 oz bag"),
        ("Great as espresso or in a pour-over.",
         "Roasted within days of shipping for peak freshness.",
         "Sourced directly from smallholder farms.",
         "Sealed in a one-way valve bag to keep it fresh."),
        (8.0, 42.0), unit="bag of ", name_tpl="{brand} {model}",
    ),
    Category(
        "skincare",
        ("Lumiskin", "Dermaleaf", "Pure Botanica", "Aqualis", "Velvet Rose", "Clearform"),
        ("Hydra", "Daily", "Barrier", "Glow", "Calm", "Renew", "Bright"),
        ("moisturizer", "vitamin C serum", "gentle cleanser", "mineral sunscreen SPF 50",
         "night cream", "exfoliating toner", "eye cream"),
        ("fragrance-free", "oil-free", "vegan", "lightweight", "non-comedogenic",
         "dermatologist-tested"),
        ("with hyaluronic acid", "with niacinamide and ceramides", "with green tea extract",
         "for sensitive skin", "for dry and combination skin"),
        ("30 ml", "50 ml", "100 ml", "200 ml"),
        ("Absorbs quickly without a greasy finish.",
         "Helps restore the skin barrier overnight.",
         "Suitable for daily use under makeup.",
         "Free from parabens and added fragrance."),
        (9.0, 68.0), name_tpl="{brand} {model}",
    ),
    Category(
        "board games",
        ("Meeple Forge", "Dicecraft", "Tabletop Tales", "Red Castle Games", "Boardwise",
         "Lantern Games"),
        ("Lost Harbors", "Crimson Empires", "Starfall Expedition", "Clockwork Kingdoms",
         "Dragon's Hoard", "Tidal Traders", "Moonlit Manor", "Harvest Valley", "Sky Pirates",
         "Frontier Rails"),
        ("strategy board game", "cooperative board game", "party game", "deck-building game",
         "family board game", "two-player card game"),
        ("award-winning", "fast-paced", "competitive", "beginner-friendly", "story-driven"),
        ("for 2–4 players", "for 2–6 players", "for 3–8 players", "with a 60-minute playtime",
         "with a 30-minute playtime", "with over 200 illustrated cards"),
        ("ages 8+", "ages 10+", "ages 14+"),
        ("Easy to learn in ten minutes, with plenty of depth for repeat plays.",
         "Every game plays out differently thanks to a modular board.",
         "A great pick for family game night.",
         "Includes a solo mode for quiet evenings."),
        (15.0, 80.0), name_tpl="{model}", title_tpl="{name} by {brand} – {attr} {ptype}, {extra}",
        tail="Published by {brand}.",
    ),
    Category(
        "backpacks",
        ("Ridgeline", "Urbanpack", "Trekwise", "Nomad Supply", "Cobalt Gear", "Kestrel Outdoor"),
        ("Summit", "Commuter", "Voyager", "Ranger", "Metro", "Alpine", "Scout"),
        ("hiking backpack", "laptop backpack", "travel backpack", "daypack", "rolltop backpack"),
        ("water-resistant", "lightweight", "padded", "anti-theft", "packable"),
        ("made from ripstop nylon", "made from recycled polyester", "made from waxed canvas",
         "with a ventilated back panel", "with a 16-inch laptop sleeve", "in olive green",
         "in charcoal"),
        ("20 L", "28 L", "35 L", "45 L"),
        ("Comfortable on long commutes and weekend hikes.",
         "Plenty of pockets keep cables, keys and snacks organised.",
         "Carry-on friendly for most airlines.",
         "Padded shoulder straps spread the load evenly."),
        (35.0, 190.0),
    ),
    Category(
        "kitchen knives",
        ("Kiriya", "Steelcraft", "Hanzo Forge", "Bladewright", "Carbonedge", "Oakhaven Cutlery"),
        ("Classic", "Pro", "Heritage", "Edge", "Shiro", "Artisan"),
        ("chef's knife", "santoku knife", "paring knife", "bread knife", "nakiri knife",
         "utility knife", "5-piece knife set"),
        ("hand-forged", "full-tang", "razor-sharp", "Damascus steel", "German stainless steel",
         "high-carbon steel"),
        ("with a pakkawood handle", "with an olive wood handle", "with a G10 handle",
         "with a 15-degree edge", "with a protective sheath"),
        ("8-inch blade", "7-inch blade", "6-inch blade", "with gift box"),
        ("Holds its edge through months of daily prep.",
         "Balanced for precise, effortless cuts.",
         "Hand wash and dry to keep the blade in top shape.",
         "A favourite of home cooks and professional chefs alike."),
        (18.0, 260.0),
    ),
    Category(
        "yoga",
        ("Lotus Flow", "Zenmat", "Asana Works", "Breathe Studio", "Mountain Pose", "Solace"),
        ("Balance", "Flow", "Grounded", "Prana", "Still", "Sun"),
        ("yoga mat", "yoga block", "yoga strap", "meditation cushion", "yoga wheel", "yoga towel"),
        ("non-slip", "eco-friendly", "extra-thick", "travel-friendly", "sweat-absorbent"),
        ("made from natural rubber", "made from cork", "made from TPE foam",
         "made from organic cotton", "in sage green", "in dusty rose", "in midnight blue"),
        ("single", "set of 2", "studio edition", "with carrying strap"),
        ("Grips well even during hot yoga sessions.",
         "Cushions knees and wrists without feeling unstable.",
         "Light enough to carry to class every day.",
         "Wipes clean in seconds."),
        (12.0, 120.0), name_tpl="{brand} {model}",
    ),
    Category(
        "books",
        ("Harbor Press", "Quill & Ink", "Northlight Books", "Paperlane", "Beacon House",
         "Maple Street Publishing"),
        ("The Silent Orchard", "The Last Lighthouse", "The Hidden Archive", "The Glass River",
         "The Winter Atlas", "The Paper Kingdom", "The Forgotten Garden", "The Iron Harbor",
         "Salt and Starlight", "A Map of Small Fires", "The Long Way North", "Everyday Bread"),
        ("novel", "mystery novel", "science fiction novel", "fantasy novel", "cookbook",
         "self-help book", "history book"),
        ("bestselling", "award-winning", "illustrated", "gripping", "acclaimed"),
        ("with 320 pages", "with 416 pages", "with 248 pages", "with a foreword by the author",
         "including a reading group guide"),
        ("paperback", "hardcover", "new edition", "large print"),
        ("Readers call it impossible to put down.",
         "Thoughtful, well researched and beautifully written.",
         "A favourite of book clubs this season.",
         "Shortlisted for several national prizes."),
        (9.0, 38.0), name_tpl="{model}", title_tpl="{name} ({brand}) – {attr} {ptype}, {extra}",
        tail="Published by {brand}.",
    ),
    Category(
        "smart home",
        ("Homeio", "Brightnest", "Voltiq", "Lumen Grid", "Cozyhaus", "Signal Smart"),
        ("Link", "Glow", "Sense", "Guard", "Hub", "Beam", "Core"),
        ("smart plug", "smart bulb", "video doorbell", "smart thermostat",
         "indoor security camera", "smart speaker", "motion sensor"),
        ("Wi-Fi", "Matter-compatible", "voice-controlled", "energy-saving", "battery-powered"),
        ("that works with Alexa and Google Home", "with 2K video and night vision",
         "with energy monitoring", "with away-mode scheduling",
         "with a companion app for iOS and Android"),
        ("1-pack", "2-pack", "4-pack", "starter kit"),
        ("Sets up in minutes from your phone.",
         "Schedules and scenes run locally, even when the internet is down.",
         "Cuts standby power and shows what each device uses.",
         "Sends instant alerts when something happens at home."),
        (14.0, 230.0),
    ),
)

# Review templates by sentiment; fields: ptype, brand, attr. Some carry commas and quotes.
REVIEW_TEMPLATES: dict[str, tuple[str, ...]] = {
    "positive": (
        "Love this {ptype}. Exactly as described and it arrived quickly.",
        "Honestly, the best {ptype} I have owned. {brand} got it right.",
        'Five stars. My partner called it "the best purchase this year", and I agree.',
        "Great quality for the price, would buy again.",
        "I use it every day and it still feels brand new after a month.",
    ),
    "neutral": (
        "Decent {ptype}, does the job. Nothing special though.",
        "It's fine, but not quite worth the full price.",
        'Solid overall; the "{attr}" part is true, but delivery took a while.',
        "Good, not great. Might try another {brand} model next time.",
    ),
    "negative": (
        "Disappointed with this {ptype}. It did not hold up.",
        'Not as described: the "{attr}" claim is a stretch, and support was slow.',
        "Returned it after a week, sadly.",
        "Expected more from {brand}. Would not buy again.",
    ),
}
# fmt: on
