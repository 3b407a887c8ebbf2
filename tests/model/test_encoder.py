"""TextEncoder on a tiny random BERT built offline, plus one check on the real MiniLM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_support import save_tiny_bert  # tests/tiny_support.py
from transformers import BertModel, BertTokenizer

from core.errors import ArtifactError, DataError
from core.model.encoder import TextEncoder, mean_pool
from core.model.encoder_files import default_model_path

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
