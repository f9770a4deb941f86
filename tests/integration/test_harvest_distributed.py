"""`harvest` under torchrun (gloo, CPU): the ranks write the store one process writes, file for
file (same manifest, same shard bytes, rows in corpus order), and a crashed distributed harvest
resumes with another number of ranks to the same store."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from helpers.torchrun import run_cli
from monosemantic.activations import ActivationStore
from monosemantic.activations.manifest import MANIFEST, RECORDS, read_manifest

HOOKS = ["blocks.1.hook_resid_post", "blocks.0.mlp.hook_post"]
WORDS = "the golden gate bridge def return import numpy sparse features fox dog".split()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus")
    rng = random.Random(1)
    for i in range(40):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 200)))
        (path / f"doc{i:02d}.txt").write_text(f"Document {i}. {words}\n")
    return path


def harvest(ranks: int, model_dir: Path, corpus: Path, out: Path) -> None:
    done = run_cli(ranks, "harvest", "--model", str(model_dir), "--corpus.source", str(corpus),
                   "--out", str(out), "--hooks", *HOOKS, "--tokens", "3000", "--ctx-len", "32",
                   "--batch-size", "4", "--shard-rows", "256", "--dtype", "float32",
                   "--device", "cpu")
    assert done.returncode == 0, done.stderr[-4000:]


def store_files(out: Path) -> dict[str, bytes]:
    """Every file of the per-hook stores, by path relative to `out`."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def single(tmp_path_factory, tiny_model_dir, corpus) -> Path:
    out = tmp_path_factory.mktemp("single") / "store"
    harvest(1, tiny_model_dir, corpus, out)
    return out


def test_two_ranks_write_the_one_process_store(tmp_path, tiny_model_dir, corpus, single):
    out = tmp_path / "store"
    harvest(2, tiny_model_dir, corpus, out)
    want, got = store_files(single), store_files(out)
    assert sorted(got) == sorted(want)  # no `.ranks` left, no other file
    for hook in HOOKS:
        manifest = read_manifest(single / hook)
        assert manifest["complete"] and manifest["rows"] == 3000
        assert len(manifest["shards"]) == 12  # 6 written by each rank
        assert read_manifest(out / hook) == manifest
    for name, data in want.items():
        assert got[name] == data, name  # same bytes: the same rows in the same order
    store = ActivationStore(out / HOOKS[0], verify="open")
    assert store.n_rows == 3000


def _crash(out: Path, keep: int) -> None:
    """Turn the complete store at `out` into what a distributed harvest leaves when it dies
    after writing (and recording) shards [0, keep) and nothing else."""
    for hook in HOOKS:
        path = out / hook
        manifest = json.loads((path / MANIFEST).read_text())
        (path / RECORDS).mkdir()
        for i, entry in enumerate(manifest["shards"]):
            if i < keep:
                (path / RECORDS / f"shard_{i:05d}.json").write_text(json.dumps(
                    {**entry, "resume": None}))
            else:
                (path / entry["file"]).unlink()
        manifest.update(shards=[], rows=0, complete=False, norm_scale=None, mean_sq_norm=None,
                        resume={"batch": 0, "row": 0})
        (path / MANIFEST).write_text(json.dumps(manifest))


def test_a_crashed_harvest_resumes_with_other_ranks(tmp_path, tiny_model_dir, corpus, single):
    out = tmp_path / "store"
    harvest(2, tiny_model_dir, corpus, out)
    _crash(out, keep=5)
    kept = {hook: (out / hook / "shard_00002.bin").stat().st_mtime_ns for hook in HOOKS}
    harvest(3, tiny_model_dir, corpus, out)
    want, got = store_files(single), store_files(out)
    assert sorted(got) == sorted(want)
    for name, data in want.items():
        assert got[name] == data, name
    for hook in HOOKS:  # the recorded shards were not written again
        assert (out / hook / "shard_00002.bin").stat().st_mtime_ns == kept[hook]


def test_an_unreadable_corpus_stops_every_rank(tmp_path, tiny_model_dir):
    missing = tmp_path / "nowhere"
    done = run_cli(2, "harvest", "--model", str(tiny_model_dir), "--corpus.source",
                   str(missing), "--out", str(tmp_path / "store"), "--hook", HOOKS[0],
                   "--device", "cpu", timeout=120)
    assert done.returncode != 0
    assert f"on ranks 0, 1 of 2: corpus {missing} does not exist" in done.stderr
    assert "rank 1 stopped: rank 0 reports the error" in done.stderr


def test_one_process_finishes_a_crashed_distributed_harvest(tmp_path, tiny_model_dir, corpus,
                                                            single):
    """It reads only the manifest, so it harvests everything again, and leaves no `.ranks`."""
    out = tmp_path / "store"
    harvest(2, tiny_model_dir, corpus, out)
    _crash(out, keep=3)
    harvest(1, tiny_model_dir, corpus, out)
    assert store_files(out) == store_files(single)
