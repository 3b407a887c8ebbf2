"""The Train page's text encoder fields: which local model reads the item and behavior text, and whether training
fine-tunes it (LoRA adapters or every weight, :mod:`core.model.finetune`)."""

from __future__ import annotations

from typing import Any

import streamlit as st

RATES = (1e-3, 3e-4, 1e-4, 3e-5, 2e-5, 1e-5)
MODES = {"Frozen (no fine-tuning)": "none", "LoRA adapters": "lora", "Every weight (full)": "full"}


def encoder_fields() -> str | dict[str, Any] | None:
    """The run's ``encoder`` setting: a folder (None: the bundled all-MiniLM-L6-v2), or an object when it is tuned."""
    folder = st.text_input(
        "Encoder model folder (empty: the bundled all-MiniLM-L6-v2)",
        key="train_encoder",
        placeholder="/path/to/a/local/hugging-face/model",
    )
    cols = st.columns([2, 1, 1])
    label = cols[0].radio(
        "Fine-tune the text encoder on behavior",
        list(MODES),
        horizontal=True,
        key="train_finetune",
        help="Frozen: item and event texts are read once and cached. LoRA trains small adapters of the language "
        "model jointly with the behavior model (each step reads some of the batch's items through it; every text "
        "is read again after each epoch); full trains all its weights. Both cost more time per epoch.",
    )
    rank = cols[1].number_input("LoRA rank", 1, 256, 8, key="train_lora_rank")
    rate = cols[2].selectbox(
        "Encoder learning rate",
        [None, *RATES],
        format_func=lambda r: "the mode's default (LoRA 1e-4, full 2e-5)" if r is None else f"{r:g}",
        key="train_encoder_lr",
    )
    path, mode = folder.strip() or None, MODES[label]
    if mode == "none":
        return path
    setting: dict[str, Any] = {"path": path, "finetune": mode}
    if mode == "lora":
        setting["lora_rank"] = int(rank)
    if rate is not None:
        setting["lr"] = float(rate)
    return setting
