"""LoRA adapters on a Hugging Face encoder (``peft``) and a run's saved adapter put back on its encoder.

Used by :class:`core.model.encoder.TextEncoder` (a tuned run's encoder at load) and by the fine-tuning itself
(:mod:`core.model.finetune`).
"""

from __future__ import annotations

from typing import Any

from core.errors import DataError
from core.model.encoder_spec import ADAPTER_FILE, Adapter


def _lora_config(rank: int, alpha: int, target_modules: list[str] | None) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, bias="none", target_modules=target_modules or None)


def add_lora(net: Any, rank: int, alpha: int, target_modules: list[str] | None = None) -> Any:
    """``net`` with LoRA adapters (peft): on the modules peft knows for the architecture (a BERT's query and
    value), or every linear layer of an architecture it does not know."""
    from peft import get_peft_model

    try:
        return get_peft_model(net, _lora_config(rank, alpha, target_modules))
    except ValueError:  # peft has no default target modules for this architecture
        return get_peft_model(net, _lora_config(rank, alpha, ["all-linear"]))


def apply_adapter(net: Any, adapter: Adapter) -> Any:
    """A loaded encoder ``net`` with a run's saved adapter (checksum checked); for inference."""
    from core.store.files import load_tensors

    if adapter.folder is None:
        raise DataError("the run's encoder adapter has no folder to load from")
    state = load_tensors(adapter.folder / ADAPTER_FILE, adapter.sha256)
    if adapter.finetune == "full":
        net.load_state_dict(state)
        return net
    from peft import set_peft_model_state_dict

    tuned = add_lora(net, adapter.lora_rank, adapter.lora_alpha, adapter.target_modules)
    set_peft_model_state_dict(tuned, state)
    return tuned
