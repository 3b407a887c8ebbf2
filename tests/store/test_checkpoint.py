"""Tests of core.store.files: safetensors round trip, checksums, pickles refused, architecture checks."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
from pathlib import Path

import pytest
import torch

from core.errors import ArtifactError
from core.store.files import load_json, load_state_into, load_tensors, save_json, save_tensors, sha256_bytes
from core.store.run_folder import FORMAT, check_format


class _Planted:
    """Unpickling this object would create ``path``: proof that a loader ran pickle code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def _tensors() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"a.weight": torch.randn(3, 4), "b.bias": torch.arange(5, dtype=torch.int64), "c": torch.zeros(0)}


def test_round_trip_and_checksum(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "model.safetensors"
    tensors = _tensors()
    digest = save_tensors(path, tensors)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest() == sha256_bytes(path.read_bytes())
    loaded = load_tensors(path, digest)
    assert set(loaded) == set(tensors)
    for k, v in tensors.items():
        assert torch.equal(loaded[k], v) and loaded[k].dtype == v.dtype
    assert not list(path.parent.glob("*.tmp*"))  # atomic write leaves no temporary file


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="missing"):
        load_tensors(tmp_path / "nope.safetensors", None)


@pytest.mark.parametrize("writer", ["torch.save", "pickle2", "pickle5"])
def test_pickled_files_are_refused_without_unpickling(tmp_path: Path, writer: str) -> None:
    path = tmp_path / "model.safetensors"
    sentinel = tmp_path / "pwned"
    payload = {"a.weight": torch.zeros(2), "evil": _Planted(sentinel)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=int(writer[-1])))
    for expected in (None, sha256_bytes(path.read_bytes())):  # even with a matching checksum
        with pytest.raises(ArtifactError, match="pickle"):
            load_tensors(path, expected)
    assert not sentinel.exists()


def test_old_protocol_pickle_is_refused_without_unpickling(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    sentinel = tmp_path / "pwned"
    path.write_bytes(pickle.dumps(_Planted(sentinel), protocol=0))  # no \x80 magic byte
    with pytest.raises(ArtifactError):
        load_tensors(path, None)
    assert not sentinel.exists()


@pytest.mark.parametrize("where", [0.1, 0.5, 0.99])
def test_one_flipped_byte_is_refused(tmp_path: Path, where: float) -> None:
    path = tmp_path / "model.safetensors"
    digest = save_tensors(path, _tensors())
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum"):
        load_tensors(path, digest)


def test_garbage_is_not_a_safetensors_file(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"this is not a tensor file at all")
    with pytest.raises(ArtifactError, match="not a valid safetensors"):
        load_tensors(path, None)


def test_json_helpers(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    save_json(path, {"format": FORMAT, "x": [1, 2]})
    assert load_json(path) == {"format": FORMAT, "x": [1, 2]}
    check_format(load_json(path), path)
    with pytest.raises(ArtifactError, match="format"):
        check_format({"format": "something-else/9"}, path)
    path.write_text("{broken", encoding="utf-8")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_json(path)
    path.write_text(json.dumps([1, 2]), encoding="utf-8")
    with pytest.raises(ArtifactError, match="JSON object"):
        load_json(path)
    with pytest.raises(ArtifactError, match="missing"):
        load_json(tmp_path / "absent.json")


def _net(width: int = 4, layers: int = 1) -> torch.nn.Module:
    return torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(layers)])


def test_load_state_into_accepts_a_matching_state() -> None:
    src, dst = _net(), _net()
    load_state_into(dst, src.state_dict(), Path("m.safetensors"))
    x = torch.randn(2, 4)
    assert torch.equal(src(x), dst(x))


@pytest.mark.parametrize(
    "other, what",
    [
        (lambda: _net(width=5), "wrong shape"),
        (lambda: _net(layers=2), "unexpected"),
    ],
)
def test_load_state_into_refuses_mismatched_architectures(other, what: str) -> None:
    with pytest.raises(ArtifactError, match=what):
        load_state_into(_net(), other().state_dict(), Path("m.safetensors"))
    state = _net().state_dict()
    state.pop("0.bias")
    with pytest.raises(ArtifactError, match="missing"):
        load_state_into(_net(), state, Path("m.safetensors"))


def test_saved_bytes_are_plain_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_tensors(path, _tensors())
    raw = path.read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_len])
    assert set(header) - {"__metadata__"} == set(_tensors())
    with pytest.raises(pickle.UnpicklingError):
        torch.load(io.BytesIO(raw), weights_only=True)  # not a torch pickle archive


def test_a_safetensors_file_whose_first_byte_is_0x80_loads(tmp_path: Path) -> None:
    """The header length is little-endian: a length ending in 0x80 is not a pickle."""
    import torch
    from safetensors.torch import save as st_save

    for n in range(1, 400):  # find tensor names giving a header length whose low byte is 0x80
        tensors = {f"t{'x' * n}": torch.zeros(2)}
        if st_save(tensors)[:1] == b"\x80":
            break
    else:
        pytest.fail("no header length ending in 0x80 found")
    path = tmp_path / "model.safetensors"
    digest = save_tensors(path, tensors)
    assert path.read_bytes()[:1] == b"\x80"
    assert list(load_tensors(path, digest)) == list(tensors)
