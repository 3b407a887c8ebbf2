"""Text-token attributions (LayerIntegratedGradients on the encoder's word embeddings) on a tiny run.

One module-wide workspace: a small generated dataset, a random 1-layer BERT whose WordPiece
vocabulary covers some words of the item texts (so that words split into pieces), one
trained run (d_model 16); a second one on a random decoder-only GPT-2 (last-token pooling).
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_support import save_tiny_bert, save_tiny_gpt2  # tests/tiny_support.py
from transformers import AutoTokenizer, BertTokenizer

from core.errors import ArtifactError, DataError, NotFittedError, NotFoundError
from core.explain import explain
from core.explain.subject import titles_of
from core.explain.text_ig import LiveEncoder, attribute_text, live_encoder, merge_words
from core.explain.tokens import TokenAttribution, token_attributions
from core.model.encoder import TextEncoder
from core.model.recommender import Recommender
from core.runs.explain import token_attributions_run
from core.runs.run import open_run

TRAIN = {"batch_size": 32, "epochs": 2, "threads": 1}
VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "a",
    "is",
    "of",
    "and",
    "with",
    "the",
    "in",
    "to",
    "for",
    "smart",
    "plug",
    "speaker",
    "coffee",
    "bag",
    "roast",
    "medium",
    "cold",
    "brew",
    "bean",
    "house",
    "blend",
    "high",
    "##land",
    "##s",
    "##ing",
    "##er",
    "up",
    "sets",
    "phone",
    "your",
    "from",
    "yoga",
    "mat",
    "-",
    ",",
    ".",
    "–",
]


def _bert(folder: Path, seed: int) -> Path:
    return save_tiny_bert(folder, VOCAB, seed=seed, max_positions=128)


class Env:
    def __init__(self, root: Path, tiny_run, encoder: Path | None = None) -> None:
        run = tiny_run(root, train=TRAIN, encoder=encoder or _bert(root / "bert", seed=0))
        self.ws, self.run_id, self.bert = run.ws, run.run_id, run.encoder
        self.other_bert = _bert(root / "other", seed=1)
        self.rec = open_run(self.ws, self.run_id, "cpu").recommender()
        self.titles = titles_of(self.ws.items("syn"))
        self.raw_user = run.user
        self.user = self.ws.resolve_user("syn", self.raw_user)
        self.item = str(self.rec.recommend(self.user, 3)["item_id"].iloc[2])  # not the top one: fused < 1

    def tokens(self, target: str = "fused", **options: Any) -> list[TokenAttribution]:
        return token_attributions(self.rec, self.user, self.item, target, titles=self.titles, **options)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, tiny_run) -> Env:
    """The module's workspace: one tiny run on a BERT whose vocabulary splits item words."""
    return Env(tmp_path_factory.mktemp("tokens"), tiny_run)


def test_shapes_and_fields(env: Env) -> None:
    (cand,) = env.tokens()
    text = env.titles[env.item][1]
    tokenizer = BertTokenizer.from_pretrained(env.bert)
    assert cand.source == "candidate" and cand.position is None and cand.item == env.item and cand.text == text
    assert cand.tokens == tokenizer.convert_ids_to_tokens(tokenizer(text)["input_ids"])
    assert len(cand.attributions) == len(cand.tokens) and cand.tokens[0] == "[CLS]" and cand.tokens[-1] == "[SEP]"
    assert cand.attributions[0] == 0.0 and cand.attributions[-1] == 0.0  # baseline keeps [CLS]/[SEP]
    assert all(isinstance(w, str) and w and isinstance(a, float) for w, a in cand.words)
    assert cand.runtime_ms > 0 and cand.target == "fused" and cand.units
    assert cand.details["steps"] in (32, 64, 128, 256) and cand.details["tolerance"] == 0.05


@pytest.mark.parametrize("target", ["fused", "engagement", "rating"])
def test_live_text_reproduces_the_models_score_and_completeness_holds(env: Env, target: str) -> None:
    (cand,) = env.tokens(target)
    reference = explain(env.rec, env.user, env.item, "loo", target)
    assert cand.score == pytest.approx(reference.score, abs=1e-4)
    total = sum(cand.attributions)
    assert total - (cand.score - cand.baseline_score) == pytest.approx(cand.completeness_delta, abs=1e-9)
    gap = abs(cand.score - cand.baseline_score)
    assert gap > 1e-6  # the text matters to this model
    assert abs(cand.completeness_delta) <= 0.05 * gap  # default settings: within a few %
    if target != "fused":  # smooth targets need no more than the default 32 steps
        assert cand.details["steps"] == 32
    (fixed,) = env.tokens(target, tolerance=None)
    assert fixed.details["steps"] == 32 and fixed.score == cand.score


def test_attributions_sum_to_the_score_difference(env: Env) -> None:
    (cand,) = env.tokens("engagement", steps=128)
    gap = cand.score - cand.baseline_score
    assert sum(cand.attributions) == pytest.approx(gap, rel=5e-3, abs=1e-7)
    assert sum(a for _, a in cand.words) == pytest.approx(sum(cand.attributions), abs=1e-9)


def _retexted(env: Env, item: str, text: str) -> tuple[Recommender, dict[str, Any]]:
    """A copy of the run whose ``item`` was trained on ``text`` (its stored vector is that text's)."""
    twin = copy.copy(env.rec)
    twin.model_ = copy.deepcopy(env.rec.model_)
    live = live_encoder(twin)
    tok = live.tokenize(text)
    with torch.no_grad():
        table = twin.model_.items.vectors().clone()
        table[list(twin.data_.item_ids).index(item)] = live.embed(tok["ids"], tok["extra"])[0]
        twin.model_.items.set_vectors(table)
    return twin, {**env.titles, item: (None, text)}


def test_words_merge_word_pieces(env: Env) -> None:
    text = "Highland Bean House Blend – medium roast coffee, smart plugs"
    twin, titles = _retexted(env, env.item, text)
    (cand,) = token_attributions(twin, env.user, env.item, "engagement", titles=titles)
    pieces = dict(zip(cand.tokens, cand.attributions))
    words = dict(cand.words)
    assert {"high", "##land", "plug", "##s"} <= set(cand.tokens)
    assert words["Highland"] == pytest.approx(pieces["high"] + pieces["##land"])
    assert words["plugs"] == pytest.approx(pieces["plug"] + pieces["##s"])
    assert [w for w, _ in cand.words] == [
        "Highland",
        "Bean",
        "House",
        "Blend",
        "–",
        "medium",
        "roast",
        "coffee",
        ",",
        "smart",
        "plugs",
    ]


def test_an_item_without_text_has_nothing_to_attribute(env: Env) -> None:
    twin, titles = _retexted(env, env.item, "")
    (cand,) = token_attributions(twin, env.user, env.item, "engagement", titles=titles)
    assert cand.tokens == ["[CLS]", "[SEP]"] and cand.attributions == [0.0, 0.0] and cand.words == []
    assert cand.score == cand.baseline_score and cand.completeness_delta == 0.0 and cand.relative_delta is None


def test_merge_words_wordpiece_rules_and_spans() -> None:
    pieces = ["[CLS]", "run", "##ning", "shoe", "##s", "[SEP]", "##x"]
    special = [True, False, False, False, False, True, False]
    values = [0.0, 1.0, 2.0, 3.0, 4.0, 0.0, 5.0]
    assert merge_words(pieces, values, special) == [("running", 3.0), ("shoes", 7.0), ("##x", 5.0)]
    text = "Running SHOES"
    spans = [[0, 0], [0, 3], [3, 7], [8, 12], [12, 13], [0, 0], [0, 0]]
    word_ids = [None, 0, 0, 1, 1, None, None]
    assert merge_words(pieces[:6], values[:6], special[:6], word_ids[:6], spans[:6], text) == [
        ("Running", 3.0),
        ("SHOES", 7.0),
    ]


def test_event_texts(env: Env) -> None:
    subject_events = explain(env.rec, env.user, env.item, "loo", "engagement").events
    last = len(subject_events) - 1
    out = env.tokens("engagement", event_positions=[0, last], steps=64)
    assert [(t.source, t.position) for t in out] == [("candidate", None), ("event", 0), ("event", last)]
    for t in out[1:]:
        assert t.item == subject_events[t.position].item and t.text == (env.titles[t.item][1] or "")
        assert t.score == pytest.approx(out[0].score, abs=1e-5)  # the same explained score
        gap = t.score - t.baseline_score
        assert abs(sum(t.attributions) - gap) <= 0.05 * abs(gap) + 1e-7
    with pytest.raises(DataError, match=f"from 0 to {last}"):
        env.tokens(event_positions=[last + 1])


def test_the_fitted_model_and_encoder_are_left_as_they_were(env: Env) -> None:
    before = env.rec.model_.items.text.clone(), env.rec.model_.items.text_of.clone()
    env.tokens(event_positions=[0])
    assert torch.equal(env.rec.model_.items.text, before[0]) and torch.equal(env.rec.model_.items.text_of, before[1])
    layer = live_encoder(env.rec).word_embeddings
    assert not layer._forward_hooks and not layer._forward_pre_hooks


def test_missing_or_changed_encoder_is_a_clear_error(env: Env, tmp_path: Path) -> None:
    moved = Path(shutil.copytree(env.bert, tmp_path / "moved"))
    twin = copy.copy(env.rec)
    twin.encoder = str(moved)
    assert token_attributions(twin, env.user, env.item, titles=env.titles)  # same files: same fingerprint
    shutil.rmtree(moved)
    with pytest.raises(ArtifactError, match="cannot be loaded"):
        token_attributions(twin, env.user, env.item, titles=env.titles)
    twin.encoder = str(env.other_bert)
    with pytest.raises(ArtifactError, match="no longer matches"):
        token_attributions(twin, env.user, env.item, titles=env.titles)


def test_a_changed_item_text_is_a_clear_error(env: Env) -> None:
    titles = {**env.titles, env.item: (None, "smart coffee plug")}
    with pytest.raises(ArtifactError, match=f"item {env.item!r}"):
        token_attributions(env.rec, env.user, env.item, titles=titles)


def test_bad_arguments(env: Env) -> None:
    with pytest.raises(DataError, match="steps 1"):
        env.tokens(steps=1)
    with pytest.raises(DataError, match="titles"):
        token_attributions(env.rec, env.user, env.item)
    with pytest.raises(NotFoundError, match="no-such-item"):
        token_attributions(env.rec, env.user, "no-such-item", titles=env.titles)
    with pytest.raises(DataError, match="clicks"):
        env.tokens("clicks")
    with pytest.raises(NotFittedError):
        token_attributions(Recommender(), env.user, env.item, titles=env.titles)


def test_run_api_and_strict_json(env: Env) -> None:
    (cand,) = token_attributions_run(open_run(env.ws, env.run_id), env.raw_user, env.item, "rating")
    out = json.loads(json.dumps(cand.to_dict(), allow_nan=False))
    assert {
        "source",
        "position",
        "item",
        "text",
        "tokens",
        "attributions",
        "words",
        "score",
        "baseline_score",
        "completeness_delta",
        "runtime_ms",
        "relative_delta",
    } <= set(out)
    assert out["source"] == "candidate" and out["target"] == "rating"
    assert all(isinstance(w, list) and len(w) == 2 for w in out["words"])
    with pytest.raises(NotFoundError, match="nobody"):
        token_attributions_run(open_run(env.ws, env.run_id), "nobody", env.item)


# -- other encoders: decoder-only, a document prompt ------------------------------------------------------------------
@pytest.fixture(scope="module")
def gpt2_env(tmp_path_factory: pytest.TempPathFactory, tiny_run) -> Env:
    """A run whose text encoder is a random GPT-2: no [PAD], no special tokens, last-token pooling."""
    root = tmp_path_factory.mktemp("tokens-gpt2")
    return Env(root, tiny_run, encoder=save_tiny_gpt2(root / "gpt2"))


def test_a_decoder_only_encoder(gpt2_env: Env) -> None:
    env = gpt2_env
    assert live_encoder(env.rec).pooling.mode == "lasttoken"
    (cand,) = env.tokens("engagement", steps=128)
    reference = explain(env.rec, env.user, env.item, "loo", "engagement")
    assert cand.score == pytest.approx(reference.score, abs=1e-4)  # the live text gives the stored vector
    text = env.titles[env.item][1]
    tokenizer = AutoTokenizer.from_pretrained(env.bert)
    assert tokenizer.pad_token is None and cand.details["baseline"] == f"{tokenizer.eos_token} word embeddings"
    ids = tokenizer(text, truncation=True, max_length=cand.details["max_tokens"])["input_ids"]
    assert cand.tokens == tokenizer.convert_ids_to_tokens(ids)  # no special tokens
    gap = cand.score - cand.baseline_score
    assert abs(gap) > 1e-6 and sum(cand.attributions) == pytest.approx(gap, rel=5e-3, abs=1e-7)
    assert abs(cand.completeness_delta) <= 0.05 * abs(gap)
    words = [w for w, _ in cand.words]  # byte-level pieces merged into the text's words, without their spaces
    assert all(w and w == w.strip() for w in words) and text.replace(" ", "").startswith("".join(words))
    assert len(words) < len(cand.tokens) and words[:2] == text.split()[:2]
    assert sum(a for _, a in cand.words) == pytest.approx(sum(cand.attributions), abs=1e-9)


def test_a_decoder_only_encoder_and_an_empty_text(gpt2_env: Env) -> None:
    twin, titles = _retexted(gpt2_env, gpt2_env.item, "")
    (cand,) = token_attributions(twin, gpt2_env.user, gpt2_env.item, "engagement", titles=titles)
    assert cand.tokens == [] and cand.attributions == [] and cand.words == []
    assert cand.score == cand.baseline_score and cand.completeness_delta == 0.0


def test_a_document_prompt_is_kept_out_of_the_attributions(env: Env, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(env.bert, tmp_path / "prompted"))
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {"query": "the query ", "document": "the coffee "}}), encoding="utf-8"
    )
    enc = TextEncoder(folder)
    live = LiveEncoder(enc)
    text = "smart plugs"
    weights = torch.linspace(-1.0, 1.0, enc.dim)
    out = attribute_text(live, lambda emb: emb @ weights, text, 32)
    assert out["tokens"] == ["[CLS]", "the", "coffee", "smart", "plug", "##s", "[SEP]"]
    assert out["attributions"][:3] == [0.0, 0.0, 0.0] and out["attributions"][-1] == 0.0  # the prompt is kept
    assert [w for w, _ in out["words"]] == ["smart", "plugs"]
    gap = out["score"] - out["baseline_score"]
    assert abs(gap) > 1e-6 and abs(out["completeness_delta"]) <= 0.05 * abs(gap)
    torch.testing.assert_close(out["embedding"], torch.from_numpy(enc.encode([text])[0]), atol=1e-5, rtol=0)
    tok = live.tokenize(text)
    assert tok["special"] == [True, True, True, False, False, False, True]
    # a tokenizer without offsets finds the prompt's tokens by matching them
    assert live._prompt_tokens(tok["ids"], None, len("the coffee ")).tolist() == [[False, True, True] + [False] * 4]


def test_a_prompt_whose_last_space_joins_the_texts_first_word(gpt2_env: Env, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(gpt2_env.bert, tmp_path / "prompted"))
    prompts = {"prompts": {"query": "query "}, "default_prompt_name": "query"}
    (folder / "config_sentence_transformers.json").write_text(json.dumps(prompts), encoding="utf-8")
    live = LiveEncoder(TextEncoder(folder))
    tok = live.tokenize("shoe")  # "query shoe": the piece "Ġshoe" carries the prompt's space
    assert tok["pieces"][-1] == "Ġshoe" and tok["special"] == [True] * (len(tok["pieces"]) - 1) + [False]
    assert live._prompt_tokens(tok["ids"], None, len("query ")).tolist() == [tok["special"]]  # without offsets
    out = attribute_text(live, lambda emb: emb.sum(-1), "shoe", 32)
    assert out["words"] == [("shoe", out["attributions"][-1])] and not any(out["attributions"][:-1])
