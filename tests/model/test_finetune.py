"""Fine-tuning the text encoder (core.model.finetune): LoRA and full runs train, save, load and explain through the
adapted encoder; the settings are checked; the step's rows carry gradients into the encoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tiny_support import TINY_MODEL

from core.errors import ArtifactError, DataError
from core.model.adapters import add_lora
from core.model.encoder import TextEncoder
from core.model.encoder_spec import ADAPTER_FILE, Adapter, encoder_spec
from core.model.item_table import item_texts
from core.runs.run import open_run
from core.runs.train import train_run

TRAIN = {"batch_size": 16, "epochs": 2, "threads": 1, "patience": 5, "rating_refit_epochs": 0}


def _tuned_run(root: Path, tiny_dataset: Any, bert: Path, finetune: str, **extra: Any) -> tuple[Any, str, Path]:
    ds = tiny_dataset(root, 3)
    settings = {
        "encoder": {"path": str(bert), "finetune": finetune, "lr": 5e-3, "grad_items": 8, **extra},
        "device": "cpu",
        "model": dict(TINY_MODEL),
        "train": dict(TRAIN),
    }
    run_id = train_run(ds.ws, ds.name, settings)
    return ds, run_id, ds.ws.root / "runs" / run_id


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: Any, tiny_bert_dir: Path) -> Any:
    return _tuned_run(tmp_path_factory.mktemp("lora"), tiny_dataset, tiny_bert_dir, "lora", lora_rank=4)


def test_a_lora_run_saves_its_adapter_and_its_tables_are_the_adapted_encoders(lora_run: Any, tiny_bert_dir: Path):
    ds, run_id, folder = lora_run
    config = json.loads((folder / "config.json").read_text())
    record = config["encoder_adapter"]
    assert record["finetune"] == "lora" and record["lora_rank"] == 4 and record["lora_alpha"] == 8
    assert (folder / ADAPTER_FILE).is_file()
    base = TextEncoder(str(tiny_bert_dir)).fingerprint
    assert record["base_fingerprint"] == base and config["encoder_fingerprint"] != base

    adapter = Adapter.read(record, folder)
    assert adapter is not None and adapter.fingerprint == config["encoder_fingerprint"]
    from safetensors.torch import load_file

    state = load_file(folder / ADAPTER_FILE)
    lora_b = [v for k, v in state.items() if "lora_B" in k]
    assert lora_b and any(v.abs().max() > 0 for v in lora_b), "LoRA's B matrices start at zero: training moved them"

    rec = open_run(ds.ws, run_id, device="cpu").recommender()
    texts = item_texts(rec.data_, ds.ws.items(ds.name))
    stored = rec.model_.items.vectors()[1:]
    tuned = TextEncoder(str(tiny_bert_dir), adapter=adapter).encode(texts)
    frozen = TextEncoder(str(tiny_bert_dir)).encode(texts)
    assert np.allclose(stored.numpy(), tuned, atol=1e-5), "the saved table is what the adapted encoder reads"
    assert not np.allclose(stored.numpy(), frozen, atol=1e-4), "and not the frozen encoder's vectors"
    # the embedding cache keys the adapted vectors by the adapted fingerprint
    assert (ds.ws.cache_dir / "embeddings" / config["encoder_fingerprint"] / "index.json").is_file()


def test_a_lora_run_loads_scores_and_explains_tokens_through_its_adapter(lora_run: Any, cli: Any) -> None:
    ds, run_id, _ = lora_run
    user = str(ds.data.events["user_id"].iloc[0])
    first = cli("recommend", "--run", run_id, "--user", user, "--k", "5", "--json", workspace=ds.ws.root).json()
    again = cli("recommend", "--run", run_id, "--user", user, "--k", "5", "--json", workspace=ds.ws.root).json()
    assert first == again, "a fresh load scores as before"
    item = str(first["items"][0]["item_id"])
    args = ("explain", "--run", run_id, "--user", user, "--item", item, "--method", "loo", "--tokens", "--json")
    out = cli(*args, workspace=ds.ws.root).json()
    (tok,) = out["tokens"]  # refused unless the adapted encoder gives the stored vector of the item's text
    assert tok["item"] == item and tok["score"] == pytest.approx(out["score"], abs=1e-4)
    gap = tok["score"] - tok["baseline_score"]
    assert abs(tok["completeness_delta"]) <= 0.05 * abs(gap) + 1e-6


def test_a_changed_adapter_file_is_refused(lora_run: Any, tmp_path: Path) -> None:
    _, _, folder = lora_run
    config = json.loads((folder / "config.json").read_text())
    copy = tmp_path / "run"
    copy.mkdir()
    data = bytearray((folder / ADAPTER_FILE).read_bytes())
    data[-1] ^= 1
    (copy / ADAPTER_FILE).write_bytes(bytes(data))
    adapter = Adapter.read(config["encoder_adapter"], copy)
    with pytest.raises(ArtifactError, match="checksum"):
        TextEncoder(str(Path(config["settings"]["encoder"]["path"])), adapter=adapter).encode(["red shoe"])


def test_full_fine_tuning_saves_the_whole_encoder_and_reads_with_it(
    tmp_path: Path, tiny_dataset: Any, tiny_bert_dir: Path
) -> None:
    ds, run_id, folder = _tuned_run(tmp_path, tiny_dataset, tiny_bert_dir, "full")
    config = json.loads((folder / "config.json").read_text())
    assert config["encoder_adapter"]["finetune"] == "full"
    rec = open_run(ds.ws, run_id, device="cpu").recommender()
    adapter = Adapter.read(config["encoder_adapter"], folder)
    texts = item_texts(rec.data_, ds.ws.items(ds.name))
    tuned = TextEncoder(str(tiny_bert_dir), adapter=adapter).encode(texts)
    assert np.allclose(rec.model_.items.vectors()[1:].numpy(), tuned, atol=1e-5)
    frozen = TextEncoder(str(tiny_bert_dir)).encode(texts)
    assert not np.allclose(tuned, frozen, atol=1e-4)


def test_the_step_rows_carry_gradients_into_the_encoder(tiny_bert_dir: Path) -> None:
    from core.model.config import ModelConfig
    from core.model.layers import ItemEncoder

    enc = TextEncoder(str(tiny_bert_dir))
    _, net, _ = enc.loaded()
    net = add_lora(net, 2, 4)
    table = torch.randn(6, enc.dim)
    items = ItemEncoder(ModelConfig(n_items=5, n_behaviors=2, text_dim=enc.dim, **TINY_MODEL), table)
    live = torch.randn(2, enc.dim, requires_grad=True)
    with items.replacing(torch.tensor([2, 4]), live):
        out = items(torch.tensor([[1, 2, 4]]))
        every = items()
    out.sum().backward()
    assert live.grad is not None and live.grad.abs().sum() > 0
    plain = items(torch.tensor([[1, 2, 4]]))
    # the whole table and a few rows go through matrix products of other shapes: equal up to float rounding
    close = {"rtol": 1e-5, "atol": 1e-6}
    assert torch.allclose(out[0, 0], plain[0, 0], **close) and not torch.allclose(out[0, 1], plain[0, 1], **close)
    assert torch.allclose(every[2], out[0, 1], **close) and torch.allclose(every[3], items()[3], **close)
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) > 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"finetune": "qlora"}, "encoder.finetune='qlora'"),
        ({"finetune": "lora", "lora_rank": 0}, "encoder.lora_rank"),
        ({"finetune": "lora", "lr": -1}, "encoder.lr"),
        ({"finetune": "lora", "steps": 3}, "unknown encoder setting"),
        ({"path": 3}, "encoder.path=3"),
        (7, "encoder=7"),
    ],
)
def test_bad_encoder_settings_name_the_key(value: Any, message: str) -> None:
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        encoder_spec(value)


def test_fine_tuning_with_privacy_is_refused() -> None:
    from core.model.config import check_settings

    settings = {
        "encoder": {"finetune": "lora"},
        "exclude_seen": True,
        "train": {"privacy": {"epsilon": 8}, "rating_refit_epochs": 0},
    }
    with pytest.raises(DataError, match="finetune with privacy"):
        check_settings(settings)
    spec = encoder_spec({"finetune": "full"})
    assert spec.tuned and spec.learning_rate == 2e-5 and encoder_spec("folder").path == "folder"


def _adapter_state(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / ADAPTER_FILE)


def test_an_interrupted_lora_run_resumes_with_its_adapter(tmp_path: Path, tiny_dataset: Any, tiny_bert_dir: Path):
    from core.runs.records import run_record
    from core.runs.train import resume_run

    ds = tiny_dataset(tmp_path, 3)
    settings = {
        "encoder": {"path": str(tiny_bert_dir), "finetune": "lora", "lr": 5e-3, "grad_items": 8},
        "device": "cpu",
        "model": dict(TINY_MODEL),
        "train": {**TRAIN, "epochs": 3},
    }
    seen: list[int] = []
    run_id = train_run(
        ds.ws,
        ds.name,
        settings,
        progress=lambda e: seen.append(e["epoch"]) if e["event"] == "epoch" else None,
        cancel=lambda: bool(seen),
    )
    folder = ds.ws.run_dir(run_id)
    assert run_record(ds.ws, run_id)["status"] == "cancelled" and seen == [1]
    after_one = _adapter_state(folder)
    resume_run(open_run(ds.ws, run_id, device="cpu"))
    assert run_record(ds.ws, run_id)["status"] == "done"
    final, best = _adapter_state(folder), json.loads((folder / "config.json").read_text())["best_epoch"]
    same = all(torch.equal(final[k], after_one[k]) for k in final)
    assert set(final) == set(after_one) and same == (best == 1), "epoch 1's adapter is kept exactly while it is best"
    rec = open_run(ds.ws, run_id, device="cpu").recommender()
    adapter = Adapter.read(json.loads((folder / "config.json").read_text())["encoder_adapter"], folder)
    texts = item_texts(rec.data_, ds.ws.items(ds.name))
    tuned = TextEncoder(str(tiny_bert_dir), adapter=adapter).encode(texts)
    assert np.allclose(rec.model_.items.vectors()[1:].numpy(), tuned, atol=1e-5)


def test_an_update_of_a_lora_run_goes_on_tuning_its_adapter(lora_run: Any) -> None:
    ds, run_id, folder = lora_run
    parent = json.loads((folder / "config.json").read_text())
    settings = {"device": "cpu", "model": dict(TINY_MODEL), "train": {**TRAIN, "epochs": 1}}
    settings["encoder"] = {"path": parent["settings"]["encoder"]["path"]}  # the update says nothing of tuning
    child = train_run(ds.ws, ds.name, settings, parent=run_id)
    child_folder = ds.ws.run_dir(child)
    record = json.loads((child_folder / "config.json").read_text())["encoder_adapter"]
    assert record["finetune"] == "lora" and record["lora_rank"] == 4
    assert record["base_fingerprint"] == parent["encoder_adapter"]["base_fingerprint"]
    before, after = _adapter_state(folder), _adapter_state(child_folder)
    assert any(not torch.equal(before[k], after[k]) for k in before), "the update trained the parent's adapter on"
    rec = open_run(ds.ws, child, device="cpu").recommender()
    assert rec.adapter_ is not None and rec.adapter_.sha256 == record["sha256"]
