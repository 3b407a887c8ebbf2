"""TextEncoder on tiny random models built offline (a BERT, the BERT in a sentence-transformers layout,
a decoder-only GPT-2), plus checks on the real MiniLM."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_support import TINY_MODEL, save_tiny_bert, save_tiny_gpt2  # tests/tiny_support.py
from transformers import AutoTokenizer, BertModel, BertTokenizer, GPT2Model

from core import schema as S
from core.data import synth
from core.errors import ArtifactError, DataError
from core.model.encoder import TextEncoder, mean_pool
from core.model.encoder_files import default_model_path, model_fingerprint
from core.model.recommender import Recommender

VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "the",
    "a",
    "red",
    "blue",
    "running",
    "shoes",
    "trail",
    "sneakers",
    "espresso",
    "coffee",
    "beans",
    "run",
    "##ning",
    "##s",
    "shoe",
]
TEXTS = ["red running shoes", "a blue shoe", "espresso coffee beans on the trail", ""]


def build_tiny_bert(folder: Path, seed: int) -> Path:
    """Save a random 2-layer BERT (hidden 32) and a WordPiece tokenizer into ``folder``."""
    save_tiny_bert(folder, VOCAB, seed=seed, hidden=32, layers=2, heads=2, intermediate=37, max_positions=64)
    assert BertTokenizer.from_pretrained(folder)("running shoes")["input_ids"] == [2, 9, 10, 3]  # test setup
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("models") / "tiny", seed=0)


@pytest.fixture(scope="module")
def tiny_other(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("models") / "tiny_other", seed=1)


def test_shapes_and_dim(tiny: Path) -> None:
    enc = TextEncoder(tiny, device="cpu")
    assert enc.dim == 32 and enc._net is None  # lazy: nothing loaded yet
    out = enc.encode(TEXTS)
    assert out.shape == (4, 32) and out.dtype == np.float32 and np.isfinite(out).all()
    assert enc.encode([]).shape == (0, 32)


def test_mean_pooling_matches_hand_computation(tiny: Path) -> None:
    tok, net = BertTokenizer.from_pretrained(tiny), BertModel.from_pretrained(tiny).eval()
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = net(**batch).last_hidden_state  # [4, L, 32]
    expected = []
    for b in range(len(TEXTS)):
        rows = [hidden[b, i] for i in range(hidden.shape[1]) if batch["attention_mask"][b, i] == 1]
        expected.append((sum(rows) / len(rows)).numpy())
    raw = TextEncoder(tiny, normalize=False).encode(TEXTS)
    np.testing.assert_allclose(raw, np.stack(expected), atol=1e-5)
    np.testing.assert_allclose(mean_pool(hidden, batch["attention_mask"]).numpy(), raw, atol=1e-5)


def test_padding_does_not_change_embeddings(tiny: Path) -> None:
    enc = TextEncoder(tiny, batch_size=8)
    together = enc.encode(TEXTS)  # one padded batch
    alone = np.stack([enc.encode([t])[0] for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_normalization(tiny: Path) -> None:
    unit = TextEncoder(tiny).encode(TEXTS)
    raw = TextEncoder(tiny, normalize=False).encode(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-5)


def test_duplicates_and_empty_string(tiny: Path) -> None:
    enc = TextEncoder(tiny)
    out = enc.encode(["", "a blue shoe", ""])
    assert enc.last_stats == {"cached": 0, "encoded": 2}
    np.testing.assert_array_equal(out[0], out[2])


def test_second_run_encodes_nothing(tiny: Path, tmp_path: Path) -> None:
    first = TextEncoder(tiny, cache_dir=tmp_path)
    a = first.encode(TEXTS)
    assert first.last_stats == {"cached": 0, "encoded": 4}
    second = TextEncoder(tiny, cache_dir=tmp_path)
    b = second.encode(TEXTS)
    assert second.last_stats == {"cached": 4, "encoded": 0}
    assert second._net is None  # the model was never even loaded
    np.testing.assert_array_equal(a, b)


def test_partial_cache_encodes_only_new_texts(tiny: Path, tmp_path: Path) -> None:
    enc = TextEncoder(tiny, cache_dir=tmp_path)
    enc.encode(TEXTS[:2])
    calls: list[tuple[int, int]] = []
    out = enc.encode([TEXTS[1], TEXTS[2], TEXTS[2], TEXTS[0]], progress=lambda e: calls.append((e["done"], e["total"])))
    assert enc.last_stats == {"cached": 2, "encoded": 1}
    assert calls == [(2, 3), (3, 3)]
    fresh = TextEncoder(tiny).encode([TEXTS[1], TEXTS[2], TEXTS[2], TEXTS[0]])
    np.testing.assert_allclose(out, fresh, atol=1e-6)


def test_an_interrupted_encoding_resumes_after_its_last_saved_part(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.model.encoder as encoder_module

    monkeypatch.setattr(encoder_module, "SAVE_EVERY", 2)  # two parts of two texts each
    texts = ["red running shoes", "a blue shoe", "espresso coffee beans on the trail", "the trail"]

    class Closed(Exception):
        pass

    def close_at_the_end(event: dict) -> None:
        if event["done"] == 4:  # the second part is read but not yet saved
            raise Closed

    with pytest.raises(Closed):
        TextEncoder(tiny, cache_dir=tmp_path).encode(texts, progress=close_at_the_end)
    again = TextEncoder(tiny, cache_dir=tmp_path)
    out = again.encode(texts)
    assert again.last_stats == {"cached": 2, "encoded": 2}  # the longest two, saved before the interruption
    np.testing.assert_allclose(out, TextEncoder(tiny).encode(texts), atol=1e-6)
    assert len(list((tmp_path / again.fingerprint).glob("*.npy"))) == 2  # one shard per part


def test_cache_invalidated_when_model_or_settings_change(tiny: Path, tiny_other: Path, tmp_path: Path) -> None:
    TextEncoder(tiny, cache_dir=tmp_path).encode(TEXTS)
    other = TextEncoder(tiny_other, cache_dir=tmp_path)  # same config, other weights
    other.encode(TEXTS)
    assert other.last_stats == {"cached": 0, "encoded": 4}
    raw = TextEncoder(tiny, cache_dir=tmp_path, normalize=False)
    raw.encode(TEXTS)
    assert raw.last_stats == {"cached": 0, "encoded": 4}
    assert len({TextEncoder(m).fingerprint for m in (tiny, tiny_other)}) == 2


def test_corrupt_cache_index_raises(tiny: Path, tmp_path: Path) -> None:
    enc = TextEncoder(tiny, cache_dir=tmp_path)
    enc.encode(TEXTS[:1])
    (tmp_path / enc.fingerprint / "index.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ArtifactError, match="index.json"):
        TextEncoder(tiny, cache_dir=tmp_path).encode(TEXTS[:1])


def test_progress_called_per_batch(tiny: Path) -> None:
    calls: list[tuple[int, int]] = []
    enc = TextEncoder(tiny, batch_size=2)
    enc.encode(["a", "red", "blue", "the", "shoe"], progress=lambda e: calls.append((e["done"], e["total"])))
    assert calls == [(0, 5), (2, 5), (4, 5), (5, 5)]


def test_bad_model_path_names_path_and_expectation(tiny: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no_model_here"
    with pytest.raises(ArtifactError, match=r"no_model_here.*config\.json"):
        TextEncoder(missing).encode(["x"])
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text((tiny / "config.json").read_text())
    with pytest.raises(ArtifactError, match="lacks tokenizer files"):
        TextEncoder(half).encode(["x"])
    with pytest.raises(ArtifactError, match="local Hugging Face cache"):
        TextEncoder("no-such-org/no-such-model").encode(["x"])


def test_bad_inputs_and_settings_raise(tiny: Path) -> None:
    enc = TextEncoder(tiny)
    with pytest.raises(DataError, match=r"texts\[1\] is int"):
        enc.encode(["a", 3])
    with pytest.raises(DataError, match="list of strings"):
        enc.encode("a bare string")
    with pytest.raises(DataError, match="device"):
        TextEncoder(tiny, device="gpu")
    with pytest.raises(DataError, match="batch_size"):
        TextEncoder(tiny, batch_size=0)
    if not torch.cuda.is_available():
        with pytest.raises(DataError, match="CUDA is not available"):
            TextEncoder(tiny, device="cuda").encode(["a"])


def test_default_minilm_offline() -> None:
    path = default_model_path()
    assert (path / "config.json").is_file()
    enc = TextEncoder()
    assert enc.dim == 384
    shoes, sneakers, coffee = enc.encode(["running shoes", "trail running sneakers", "espresso coffee beans"])
    assert float(shoes @ sneakers) > float(shoes @ coffee)  # unit vectors: dot = cosine


def test_truncated_weights_raise_artifact_error(tiny: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny.iterdir():
        data = f.read_bytes()
        (broken / f.name).write_bytes(data[:100] if f.suffix == ".safetensors" else data)
    with pytest.raises(ArtifactError, match="cannot load an encoder"):
        TextEncoder(broken).encode(["x"])


# -- the pooling each model folder declares -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_gpt2(tmp_path_factory.mktemp("models") / "gpt2")


def _as_sentence_transformers(tiny: Path, folder: Path, pooling: dict, prompts: dict | None = None) -> Path:
    """A copy of ``tiny`` in the sentence-transformers layout: modules.json, 1_Pooling/config.json (+ prompts)."""
    shutil.copytree(tiny, folder)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling), encoding="utf-8")
    if prompts is not None:
        (folder / "config_sentence_transformers.json").write_text(json.dumps(prompts), encoding="utf-8")
    return folder


def test_a_plain_encoder_folder_mean_pools_with_the_settings_it_always_had(tiny: Path) -> None:
    enc = TextEncoder(tiny)
    assert enc.pooling.mode == "mean" and enc.pooling.prompt == ""
    assert enc._settings() == {"pooling": "mean", "normalize": True, "max_length": 256}


def test_the_bundled_minilm_keeps_its_fingerprint() -> None:
    enc = TextEncoder()
    assert enc.pooling.mode == "mean" and enc.pooling.source.endswith("1_Pooling/config.json")
    settings = {"pooling": "mean", "normalize": True, "max_length": 256}  # what the fingerprint always hashed
    assert enc.fingerprint == model_fingerprint(default_model_path(), settings)


def test_decoder_only_model_pools_its_last_real_token(gpt2: Path) -> None:
    enc = TextEncoder(gpt2, normalize=False)
    assert enc.pooling.mode == "lasttoken" and enc.dim == 8  # n_embd
    texts = ["red shoe", "a red shoe with coffee and a longer tail", "", "coffee"]
    raw = enc.encode(texts)  # one right-padded batch
    tok, net = AutoTokenizer.from_pretrained(gpt2), GPT2Model.from_pretrained(gpt2).eval()
    assert tok.pad_token is None and enc.loaded()[0].pad_token == tok.eos_token  # padded with EOS
    for text, row in zip(texts, raw):
        ids = tok(text, return_tensors="pt")["input_ids"]
        if ids.shape[1] == 0:  # GPT-2 adds no token to '': nothing to pool
            assert not row.any()
            continue
        with torch.no_grad():
            last = net(input_ids=ids).last_hidden_state[0, -1]
        np.testing.assert_allclose(row, last.numpy(), atol=1e-5)
    alone = np.stack([TextEncoder(gpt2, normalize=False).encode([t])[0] for t in texts])
    np.testing.assert_allclose(raw, alone, atol=1e-5)  # the longer text's padding does not leak
    unit = TextEncoder(gpt2).encode(texts)
    np.testing.assert_allclose(np.linalg.norm(unit[[0, 1, 3]], axis=1), 1.0, atol=1e-5)


def test_sentence_transformers_cls_pooling(tiny: Path, tmp_path: Path) -> None:
    folder = _as_sentence_transformers(tiny, tmp_path / "cls", {"pooling_mode": "cls"})
    enc = TextEncoder(folder)
    assert enc.pooling.mode == "cls"
    tok, net = BertTokenizer.from_pretrained(tiny), BertModel.from_pretrained(tiny).eval()
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        first = net(**batch).last_hidden_state[:, 0]  # [CLS]
    np.testing.assert_allclose(enc.encode(TEXTS), torch.nn.functional.normalize(first, dim=1).numpy(), atol=1e-5)


def test_the_fingerprint_and_cache_follow_the_pooling(tiny: Path, tmp_path: Path) -> None:
    modes = {"mean": tiny}
    for mode in ("cls", "max"):
        modes[mode] = _as_sentence_transformers(tiny, tmp_path / mode, {"pooling_mode": mode})
    cache = tmp_path / "cache"
    vectors = {}
    for mode, folder in modes.items():
        enc = TextEncoder(folder, cache_dir=cache)
        vectors[mode] = enc.encode(TEXTS)
        assert enc.last_stats == {"cached": 0, "encoded": 4}  # same model files, another pooling: no reuse
    assert len({TextEncoder(f).fingerprint for f in modes.values()}) == 3
    assert not np.allclose(vectors["cls"], vectors["mean"]) and not np.allclose(vectors["max"], vectors["mean"])
    mean_declared = _as_sentence_transformers(tiny, tmp_path / "st-mean", {"pooling_mode_mean_tokens": True})
    assert TextEncoder(mean_declared).fingerprint == TextEncoder(tiny).fingerprint  # same vectors, same cache


def test_a_document_prompt_goes_before_every_text(tiny: Path, tmp_path: Path) -> None:
    prompts = {"prompts": {"query": "the query ", "document": "a shoe "}, "default_prompt_name": None}
    folder = _as_sentence_transformers(tiny, tmp_path / "prompted", {"pooling_mode": "mean"}, prompts)
    enc = TextEncoder(folder, cache_dir=tmp_path / "cache")
    assert enc.pooling.prompt == "a shoe " and enc._settings()["prompt"] == "a shoe "
    np.testing.assert_allclose(enc.encode(TEXTS), TextEncoder(tiny).encode([f"a shoe {t}" for t in TEXTS]), atol=1e-5)
    assert enc.fingerprint != TextEncoder(tiny).fingerprint


def test_a_bad_pooling_config_names_the_file(tiny: Path, tmp_path: Path) -> None:
    folder = _as_sentence_transformers(tiny, tmp_path / "bad", {"pooling_mode": "mean_sqrt_len_tokens"})
    with pytest.raises(ArtifactError, match=r"bad/1_Pooling/config\.json: pooling_mode asks for 'mean_sqrt_len"):
        TextEncoder(folder, cache_dir=tmp_path / "cache").encode(["x"])


def test_a_recommender_trains_and_recommends_on_a_decoder_only_encoder(gpt2: Path) -> None:
    data = synth.generate(synth.SynthConfig.small(3, n_users=20, n_items=15, target_events=400))
    items = data.items.assign(**{S.ITEM_TEXT: data.items[S.ITEM_TITLE]})
    settings = {"encoder": str(gpt2), "device": "cpu", "model": dict(TINY_MODEL), "train": {"epochs": 1, "seed": 0}}
    rec = Recommender(**settings).fit(data.events, items)
    enc = TextEncoder(gpt2)
    assert rec.encoder_fingerprint_ == enc.fingerprint
    texts = [dict(zip(items[S.ITEM_ID].astype(str), items[S.ITEM_TEXT]))[i] for i in rec.data_.item_ids[1:]]
    np.testing.assert_allclose(rec.model_.items.vectors()[1:].detach().numpy(), enc.encode(texts), atol=1e-6)
    user = str(data.events[S.USER_ID].iloc[0])
    top = rec.recommend(user, 5)
    assert len(top) == 5 and top["item_id"].is_unique and set(top["item_id"]) <= set(rec.data_.item_ids[1:])


def test_a_left_padding_tokenizer_gives_the_same_vectors(gpt2: Path, tmp_path: Path) -> None:
    left = Path(shutil.copytree(gpt2, tmp_path / "left"))
    config = json.loads((left / "tokenizer_config.json").read_text(encoding="utf-8"))
    (left / "tokenizer_config.json").write_text(json.dumps({**config, "padding_side": "left"}), encoding="utf-8")
    assert AutoTokenizer.from_pretrained(left).padding_side == "left"
    texts = ["red shoe", "a red shoe with coffee and a longer tail", "coffee"]
    np.testing.assert_allclose(TextEncoder(left).encode(texts), TextEncoder(gpt2).encode(texts), atol=1e-6)
