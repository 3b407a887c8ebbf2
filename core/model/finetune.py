"""Fine-tuning the text encoder on behavior: LoRA adapters (``peft``) or every weight, jointly with the model.

The setting is the run's ``encoder``: a model folder (or null, the bundled all-MiniLM-L6-v2) as before, or an
object ``{"path": FOLDER|null, "finetune": "none"|"lora"|"full", "lora_rank": 8, "lora_alpha": 2·rank,
"lr": 1e-4 (LoRA) / 2e-5 (full), "grad_items": 32}``.

**Design: a refreshed table plus a sampled set with gradients.** Encoding every item with gradients at every
step costs items × tokens per step and does not scale past a few thousand items. Instead each step reads up to
``grad_items`` of the batch's distinct items (its targets and history items, drawn uniformly) through the encoder
*with* gradients; their vectors replace those rows of the item text table for that step
(:meth:`core.model.layers.ItemEncoder.replacing`), wherever the items appear: in the history tokens and among the
candidates the softmax scores. Every other row comes from the no-grad table, which :meth:`EncoderTuner.refresh`
re-encodes through the current encoder at the end of each epoch, before validation, together with the events'
own texts. A step's cost is therefore fixed by ``grad_items``, not by the catalogue; a refresh is one no-grad pass
over the distinct texts per epoch (about 10 s for ML-1M's 3,706 titles with MiniLM on this CPU).

**Files and caches.** The adapter (LoRA's matrices, or the whole encoder for ``full``) is saved as safetensors in
the run folder (``encoder_adapter.safetensors``) with its checksum in ``config.json``; the run's encoder
fingerprint is the base encoder's combined with the adapter's checksum (:func:`tuned_fingerprint`), so the
embedding cache keys a tuned run's vectors apart from the frozen encoder's and from every other adapter's. A
loaded run reads its text through :class:`~core.model.encoder.TextEncoder` with that adapter (token attributions
included). The saved model file holds the item table as the adapted encoder left it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.model.adapters import add_lora
from core.model.embedding_cache import EmbeddingCache, text_key
from core.model.encoder import TextEncoder
from core.model.encoder_spec import ADAPTER_FILE, Adapter, EncoderSpec, tuned_fingerprint
from core.store.files import sha256_bytes, tensor_bytes


class EncoderTuner:
    """The encoder trained jointly with the behavior model: its trainable parameters, the rows it reads with
    gradients each step, and the per-epoch refresh of the item and event text tables.

    ``item_texts``: the texts of items 1..N; ``event_texts``: the events' distinct texts (rows 1..T of the event
    text table; empty without event text); ``start``: the parent's adapter, for an update of a tuned run."""

    def __init__(
        self,
        spec: EncoderSpec,
        item_texts: list[str],
        event_texts: list[str],
        device: torch.device,
        start: Adapter | None = None,
    ) -> None:
        self.spec, self.items, self.events = spec, list(item_texts), list(event_texts)
        self.enc = TextEncoder(spec.path, device=str(device.type), adapter=start)
        self.base_fingerprint = self.enc.base_fingerprint
        _, net, _ = self.enc.loaded()
        if spec.finetune == "lora" and start is None:
            net = add_lora(net, spec.lora_rank, spec.alpha)
        if spec.finetune == "full":
            net.requires_grad_(True)
        self.net, self.device = net, device
        self.target_modules = sorted(getattr(net, "peft_config", {}).get("default", _NoPeft()).target_modules or [])

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.net.parameters() if p.requires_grad]

    def embed(self, texts: list[str]) -> torch.Tensor:
        """[K, T] vectors of ``texts`` as TextEncoder stores them (prompt, pooling, L2 norm), with gradients."""
        return self.enc.vectors(texts)

    def pick(self, items: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Up to ``grad_items`` of the distinct items in ``items`` (padding left out), drawn uniformly."""
        distinct = torch.unique(items[items > 0]).cpu().numpy()
        if len(distinct) > self.spec.grad_items:
            distinct = np.sort(rng.choice(distinct, self.spec.grad_items, replace=False))
        return torch.as_tensor(distinct, dtype=torch.long)

    @contextmanager
    def step(self, model: Any, items: torch.Tensor, rng: np.random.Generator) -> Iterator[None]:
        """Within: the picked items of ``items`` read through the encoder with gradients (the net in train mode)."""
        picked = self.pick(items, rng)
        self.net.train()
        vectors = self.embed([self.items[i - 1] for i in picked.tolist()]) if len(picked) else None
        with model.items.replacing(picked.to(self.device), vectors):
            yield

    def encode_all(self, texts: list[str]) -> torch.Tensor:
        """[len(texts) + 1, T] vectors (row 0 zeros) through the current encoder, without gradients."""
        self.net.eval()
        out = torch.zeros(len(texts) + 1, self.enc.dim)
        out[1:] = torch.from_numpy(self.enc._embed(texts, lambda n: None))  # TextEncoder's batches, longest first
        return out

    def refresh(self, model: Any) -> None:
        """Re-encode every item text (and the event texts) through the current encoder into ``model``'s tables."""
        model.items.set_vectors(self.encode_all(self.items))
        if model.events.text is not None and self.events:
            model.events.text.set_table(self.encode_all(self.events))

    def state(self) -> dict[str, torch.Tensor]:
        """What the run saves: LoRA's matrices, or the whole encoder's weights (copies, on the CPU)."""
        if self.spec.finetune == "lora":
            from peft import get_peft_model_state_dict

            state = get_peft_model_state_dict(self.net)
        else:
            state = self.net.state_dict()
        return {k: v.detach().cpu().clone() for k, v in state.items()}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Put a :meth:`state` back (the best epoch's, after training)."""
        if self.spec.finetune == "lora":
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.net, state)
        else:
            self.net.load_state_dict(state)

    def save(self, folder: Path, state: dict[str, torch.Tensor]) -> Adapter:
        """Write ``state`` as the run's adapter file; its record."""
        from core.store.files import save_tensors

        digest = save_tensors(folder / ADAPTER_FILE, state)
        rank, alpha = (self.spec.lora_rank, self.spec.alpha) if self.spec.finetune == "lora" else (0, 0)
        return Adapter(self.spec.finetune, digest, self.base_fingerprint, rank, alpha, self.target_modules, folder)


def make_tuner(
    spec: EncoderSpec, item_texts: list[str], model: Any, data: Any, device: torch.device, start: Adapter | None
) -> EncoderTuner | None:
    """The tuner of a fit (None: the encoder stays frozen). An update of a tuned run (``start``, its parent's
    adapter) goes on tuning it the parent's way; ``data``'s texts are the events' (read where the model has event
    text)."""
    if start is not None:
        rank = start.lora_rank or spec.lora_rank
        spec = replace(spec, finetune=start.finetune, lora_rank=rank, lora_alpha=start.lora_alpha or None)
    if not spec.tuned:
        return None
    events = list(data.texts[1:]) if model.events.text is not None and data.has_text else []
    return EncoderTuner(spec, item_texts, events, device, start)


def finish_tuning(rec: Any, best: dict[str, torch.Tensor] | None, cache_dir: Any) -> dict[str, torch.Tensor] | None:
    """After training: the tuner at its best epoch's weights (what the run saves, returned), ``rec``'s encoder
    fingerprint the adapted encoder's, and the vectors of the model's tables in the embedding cache under it (a
    loaded run reads its event texts from there)."""
    tuner = getattr(rec, "tuner_", None)
    if tuner is None:
        return None
    state = best if best is not None else tuner.state()
    tuner.load_state(state)
    rec.encoder_fingerprint_ = tuned_fingerprint(tuner.base_fingerprint, sha256_bytes(tensor_bytes(state)))
    if cache_dir:
        model = rec.model_
        rows = {text_key(t): v for t, v in zip(tuner.items, model.items.vectors()[1:].cpu().numpy())}
        if model.events.text is not None and tuner.events:
            rows.update({text_key(t): v for t, v in zip(tuner.events, model.events.text.table[1:].cpu().numpy())})
        cache = EmbeddingCache(Path(cache_dir) / rec.encoder_fingerprint_, tuner.enc.dim, rec.encoder_fingerprint_)
        todo = [k for k in rows if k not in cache.lookup(list(rows))]
        if todo:
            cache.add(todo, np.stack([rows[k] for k in todo]).astype(np.float32))
    return state


class _NoPeft:
    target_modules: list[str] | None = None
