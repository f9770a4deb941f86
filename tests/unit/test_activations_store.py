"""Activation store: manifest, atomic shard writes, resume, integrity checks, dtypes, scale."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from helpers.store_rows import HEADER, all_acts, synthetic_batches, write_store
from monosemantic.activations.manifest import (
    MANIFEST,
    StoreError,
    new_manifest,
    read_manifest,
    write_manifest,
)
from monosemantic.activations.reader import ActivationStore
from monosemantic.activations.writer import StoreWriter
from monosemantic.errors import UserError


def shard_digests(path):
    return [(s["file"], s["rows"], s["sha256"]) for s in read_manifest(path)["shards"]]


def test_manifest_round_trip(tmp_path):
    manifest = new_manifest({**HEADER, "corpus": {"description": "x", "config": {"seed": 1}}},
                            d=4, storage_dtype="bfloat16", shard_rows=16)
    write_manifest(tmp_path, manifest)
    assert read_manifest(tmp_path) == manifest
    assert manifest["model"] == "tiny" and manifest["dtype"] == "bfloat16"
    assert manifest["header_keys"] == sorted(["model", "hook", "ctx_len", "corpus"])
    assert not list(tmp_path.glob(".*.tmp"))


def test_manifest_of_other_version_is_refused(tmp_path):
    manifest = new_manifest(HEADER, d=4, storage_dtype="float16", shard_rows=16)
    manifest["format_version"] = 999
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="version 999"):
        read_manifest(tmp_path)
    with pytest.raises(StoreError, match="not an activation store"):
        ActivationStore(tmp_path / "nowhere")


def test_written_store_has_fixed_size_shards_and_all_rows(tmp_path):
    write_store(tmp_path, n_rows=100, shard_rows=32)
    store = ActivationStore(tmp_path)
    assert [s["rows"] for s in store.manifest["shards"]] == [32, 32, 32, 4]
    assert store.n_rows == 100 and store.d == 4 and store.hook == HEADER["hook"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "manifest.json", "shard_00000.bin", "shard_00001.bin", "shard_00002.bin",
        "shard_00003.bin"]


def test_crash_during_shard_write_leaves_no_partial_shard(tmp_path, monkeypatch):
    writer = StoreWriter(tmp_path, HEADER, 4, "float32", shard_rows=32)
    batches = list(synthetic_batches(100, 4, 10))
    for b, lo, *arrays in batches[:3]:
        writer.append(*arrays, batch=b, first_row=lo)  # 30 rows: no shard yet
    real_replace = os.replace

    def crash(src, dst):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    b, lo, *arrays = batches[3]
    with pytest.raises(OSError, match="simulated"):
        writer.append(*arrays, batch=b, first_row=lo)
    monkeypatch.setattr(os, "replace", real_replace)
    assert not list(tmp_path.glob("shard_*"))  # the temp file is not a visible shard
    assert read_manifest(tmp_path)["shards"] == []
    with pytest.raises(StoreError, match="unfinished"):
        ActivationStore(tmp_path)
    resumed = write_store(tmp_path)  # resuming removes the temp file and completes the store
    assert not list(tmp_path.glob(".*.tmp"))
    assert resumed.complete


def test_resume_after_crash_gives_the_same_shards(tmp_path):
    write_store(tmp_path / "whole")
    crashed = write_store(tmp_path / "resumed", stop_after_batch=6)
    assert crashed.rows == 64 and not crashed.complete
    assert crashed.resume == (6, 60)  # shard 2 ends inside batch 6 (rows 60..69)
    write_store(tmp_path / "resumed")
    assert shard_digests(tmp_path / "resumed") == shard_digests(tmp_path / "whole")
    whole = ActivationStore(tmp_path / "whole")
    resumed = ActivationStore(tmp_path / "resumed")
    assert torch.equal(next(whole.iter_batches(100, shuffle=False)),
                       next(resumed.iter_batches(100, shuffle=False)))
    assert whole.norm_scale == resumed.norm_scale


@pytest.mark.parametrize("change", [{"model": "other"}, {"hook": "blocks.1.hook_resid_post"}])
def test_resume_with_another_config_is_a_user_error(tmp_path, change):
    write_store(tmp_path, stop_after_batch=4)
    with pytest.raises(UserError, match="another configuration") as err:
        write_store(tmp_path, header={**HEADER, **change})
    assert next(iter(change)) in str(err.value)
    with pytest.raises(UserError, match="dtype"):
        write_store(tmp_path, dtype="float16")


def test_refuses_to_write_into_a_non_store_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        write_store(tmp_path)


def test_truncated_shard_is_named_on_open(tmp_path):
    write_store(tmp_path)
    shard = tmp_path / "shard_00001.bin"
    shard.write_bytes(shard.read_bytes()[:-7])
    with pytest.raises(StoreError, match="shard_00001.bin.*truncated"):
        ActivationStore(tmp_path)


def test_altered_shard_is_named_on_read_and_by_verify(tmp_path):
    write_store(tmp_path)
    shard = tmp_path / "shard_00002.bin"
    data = bytearray(shard.read_bytes())
    data[5] ^= 0xFF
    shard.write_bytes(bytes(data))
    store = ActivationStore(tmp_path, verify="size")  # sizes still match
    with pytest.raises(StoreError, match="shard_00002.bin.*corrupt"):
        store.verify()
    with pytest.raises(StoreError, match="shard_00002.bin.*corrupt"):
        list(ActivationStore(tmp_path).iter_batches(8))
    with pytest.raises(StoreError, match="shard_00002.bin"):
        ActivationStore(tmp_path, verify="open")
    # rows that avoid the altered shard read fine
    assert len(list(ActivationStore(tmp_path).iter_rows(8, rows=range(0, 64)))) == 8


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_dtypes_round_trip(tmp_path, dtype):
    write_store(tmp_path, dtype=dtype)
    store = ActivationStore(tmp_path)
    torch_dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16,
                   "float32": torch.float32}[dtype]
    expected = all_acts(100, 4).to(torch_dtype).float()
    got = torch.cat([b.acts_ND for b in store.iter_rows(33)])
    assert got.dtype == torch.float32
    assert torch.equal(got, expected)
    half = next(store.iter_batches(100, shuffle=False, dtype=torch_dtype))
    assert half.dtype == torch_dtype and torch.equal(half.float(), expected)


def test_float16_overflow_is_a_user_error(tmp_path):
    writer = StoreWriter(tmp_path, HEADER, 2, "float16", 8)
    acts = torch.tensor([[1.0, 7e4]])
    with pytest.raises(UserError, match="bfloat16"):
        writer.append(acts, torch.zeros(1), torch.zeros(1), torch.zeros(1), batch=0, first_row=0)


def test_norm_scale_over_all_stored_rows(tmp_path):
    write_store(tmp_path, dtype="bfloat16", d=6)
    store = ActivationStore(tmp_path)
    x = all_acts(100, 6).to(torch.bfloat16).double()
    expected = np.sqrt(6 / x.square().sum(1).mean().item())
    assert store.norm_scale == pytest.approx(expected, rel=1e-12)
    normed = torch.cat(list(store.iter_batches(10, shuffle=False, normalize=True))).double()
    assert normed.square().sum(1).mean().item() == pytest.approx(6, rel=1e-5)
