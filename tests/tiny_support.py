"""The tiny parts most tests build on: a random tiny BERT with a WordPiece tokenizer (saved offline, the
tests' text encoder), a random tiny GPT-2 (a decoder-only encoder) and the tiny behavior model's settings.

Importable from every test folder (pytest puts the folder of ``tests/conftest.py`` on sys.path).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def save_tiny_bert(
    folder: Path,
    vocab: Sequence[str],
    *,
    seed: int = 0,
    hidden: int = 8,
    layers: int = 1,
    heads: int = 1,
    intermediate: int = 16,
    max_positions: int = 512,
) -> Path:
    """Write a randomly initialised BERT (seeded) and its tokenizer for ``vocab`` into ``folder``."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(vocab=str(folder / "vocab.txt"))  # transformers 5: `vocab`, not `vocab_file`
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=max_positions,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_gpt2(folder: Path, *, seed: int = 0, hidden: int = 8, layers: int = 1, max_positions: int = 128) -> Path:
    """Write a randomly initialised GPT-2 (seeded, a decoder-only model) and a byte-level BPE tokenizer into ``folder``.

    The vocabulary is the 256 byte symbols, ``<|endoftext|>`` (EOS and UNK; no pad token, as GPT-2)
    and a few merges, so "red shoe coffee" splits into word pieces ("Ġshoe", "offee", ...).
    """
    import json

    import torch
    from transformers import GPT2Config, GPT2Model, GPT2Tokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    merges = ["Ġ s", "h o", "Ġs ho", "Ġsho e", "Ġ r", "e d", "Ġr ed", "r ed", "o f", "of f", "e e", "off ee"]
    vocab = {"<|endoftext|>": 0}
    for symbol in [*bytes_to_unicode().values(), *(m.replace(" ", "") for m in merges)]:
        vocab.setdefault(symbol, len(vocab))
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(vocab),
        n_embd=hidden,
        n_layer=layers,
        n_head=1,
        n_positions=max_positions,
        bos_token_id=0,
        eos_token_id=0,
    )
    GPT2Model(config).save_pretrained(folder)
    GPT2Tokenizer.from_pretrained(folder).save_pretrained(folder)  # adds tokenizer.json and tokenizer_config.json
    return folder


# The vocabulary most tests' tiny BERT uses: enough word pieces for the generated item texts' first words.
TINY_VOCAB: tuple[str, ...] = (
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "the",
    "a",
    "red",
    "blue",
    "shoe",
    "coffee",
    "bag",
    "##s",
)


def tiny_bert(folder: Path) -> Path:
    """A random 1-layer BERT (hidden 8) over :data:`TINY_VOCAB`, saved offline into ``folder``."""
    return save_tiny_bert(folder, TINY_VOCAB)


# The tiny behavior model most trained runs of the tests use (a module adds or overrides what it needs).
TINY_MODEL: dict[str, int] = {
    "d_model": 16,
    "n_layers": 1,
    "n_heads": 1,
    "max_len": 20,
    "expert_dim": 8,
    "n_experts": 2,
}
