"""`monosemantic harvest` on a tiny local model: store contents, hooks, resume after SIGKILL,
config mismatch, and the streaming mode."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from monosemantic.activations import ActivationStore, stream_activations
from monosemantic.activations.manifest import read_manifest
from monosemantic.cli import main
from monosemantic.data import CorpusConfig, iter_documents
from monosemantic.devices import torch_threads
from monosemantic.models import load_model

HOOK = "blocks.1.hook_resid_post"
WORDS = ("the golden gate bridge is in san francisco def add return import numpy as np sparse "
         "autoencoders find features quick brown fox jumps over lazy dog").split()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run far faster on one thread on a busy machine (and the SIGKILL test's
    subprocess uses one too, so both produce the same bits)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    """~150 distinct .txt documents (enough for ~100k tiny-tokenizer tokens)."""
    path = tmp_path_factory.mktemp("harvest_corpus")
    rng = random.Random(0)
    for i in range(150):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(200, 600)))
        (path / f"doc{i:03d}.txt").write_text(f"Document {i}. {words}\n")
    return path


def harvest_args(model_dir, corpus_dir, out, *extra) -> list[str]:
    return ["harvest", "--model", str(model_dir), "--corpus.source", str(corpus_dir),
            "--out", str(out), "--ctx-len", "32", "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def small_store(tmp_path_factory, tiny_model_dir, corpus_dir) -> Path:
    out = tmp_path_factory.mktemp("small") / "store"
    assert main(harvest_args(tiny_model_dir, corpus_dir, out, "--hook", HOOK, "--tokens",
                             "3000", "--shard-rows", "1024", "--batch-size", "4",
                             "--dtype", "float32")) == 0
    return out


def test_cli_harvest_writes_a_complete_store(small_store, tiny_model_dir, corpus_dir):
    store = ActivationStore(small_store, verify="open")
    assert store.n_rows == 3000 and store.d == 32 and store.hook == HOOK
    assert store.model == str(tiny_model_dir) and store.ctx_len == 32
    assert [s["rows"] for s in store.manifest["shards"]] == [1024, 1024, 952]
    assert store.manifest["corpus"]["config"]["source"] == str(corpus_dir)
    assert "files" in store.manifest["corpus"]["description"]
    x = torch.cat([b.acts_ND for b in store.iter_rows(500)]).double()
    assert store.norm_scale == pytest.approx((32 / x.square().sum(1).mean()).sqrt().item(),
                                             rel=1e-9)


def test_rows_are_the_model_activations_of_the_corpus_tokens(small_store, tiny_model_dir,
                                                             corpus_dir):
    """Independent check: tokenize the first document and run the plain HF model on it."""
    store = ActivationStore(small_store)
    rows = next(store.iter_rows(3000))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert not set(rows.tokens_N.tolist()) & set(tokenizer.all_special_ids)
    first = next(iter_documents(CorpusConfig(source=str(corpus_dir))))
    ids = tokenizer(first.text, add_special_tokens=False)["input_ids"]
    mine = rows.doc_ids_N == first.doc_id
    # the document's text tokens appear in order, at positions 1, 2, ... (0 is its BOS)
    positions = rows.positions_N[mine]
    assert torch.equal(positions, torch.arange(1, len(positions) + 1))
    assert rows.tokens_N[mine].tolist() == ids[:len(positions)]
    # its first context: BOS + the first 31 text tokens, through layer 1
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    input_ids = torch.tensor([[tokenizer.bos_token_id, *ids[:31]]])
    with torch.no_grad():
        hidden = model(input_ids, output_hidden_states=True).hidden_states[2][0]
    assert torch.allclose(rows.acts_ND[mine][:31], hidden[1:], atol=1e-5, rtol=1e-4)


def test_several_hooks_give_one_store_each_with_the_same_rows(tmp_path, tiny_model_dir,
                                                               corpus_dir):
    hooks = [HOOK, "blocks.0.mlp.hook_post"]
    out = tmp_path / "multi"
    assert main(harvest_args(tiny_model_dir, corpus_dir, out, "--hooks", *hooks, "--tokens",
                             "600", "--exclude-special", "false")) == 0
    resid, mlp = (ActivationStore(out / h) for h in hooks)
    assert (resid.d, mlp.d) == (32, 128) and resid.dtype == "float16"
    a, b = next(resid.iter_rows(600)), next(mlp.iter_rows(600))
    assert torch.equal(a.tokens_N, b.tokens_N) and torch.equal(a.positions_N, b.positions_N)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert (a.tokens_N == tokenizer.bos_token_id).any()  # BOS kept when asked
    assert not (a.tokens_N == tokenizer.pad_token_id).any()  # padding never stored


def test_resume_with_other_options_is_a_clear_error(small_store, tiny_model_dir, corpus_dir,
                                                    capsys):
    assert main(harvest_args(tiny_model_dir, corpus_dir, small_store, "--hook", HOOK,
                             "--tokens", "3000", "--shard-rows", "1024", "--batch-size", "4",
                             "--dtype", "bfloat16")) == 2
    err = capsys.readouterr().err
    assert "another configuration" in err and "dtype" in err and "Traceback" not in err


def _wait_for_shard(proc: subprocess.Popen, out: Path, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if read_manifest(out)["shards"]:
                return
        except Exception:  # manifest not written yet (or mid-rename): keep polling
            pass
        time.sleep(0.005)
    raise AssertionError(f"no shard appeared; harvest exited with {proc.poll()}")


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path, tiny_model_dir,
                                                           corpus_dir):
    opts = ["--hook", HOOK, "--tokens", "20000", "--shard-rows", "512", "--batch-size", "2"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "monosemantic.cli",
                             *harvest_args(tiny_model_dir, corpus_dir, killed, *opts)],
                            env={**os.environ, "MONOSEMANTIC_QUIET": "1", "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_shard(proc, killed)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    at_kill = read_manifest(killed)
    assert not at_kill["complete"] and len(at_kill["shards"]) >= 1

    assert main(harvest_args(tiny_model_dir, corpus_dir, killed, *opts)) == 0
    whole = tmp_path / "whole"
    assert main(harvest_args(tiny_model_dir, corpus_dir, whole, *opts)) == 0
    resumed, reference = read_manifest(killed), read_manifest(whole)
    assert resumed["rows"] == reference["rows"] == 20000
    assert [(s["file"], s["rows"], s["sha256"]) for s in resumed["shards"]] == \
        [(s["file"], s["rows"], s["sha256"]) for s in reference["shards"]]
    assert resumed["norm_scale"] == reference["norm_scale"]
    assert sorted(p.name for p in killed.iterdir()) == sorted(p.name for p in whole.iterdir())
    ActivationStore(killed).verify()


def test_stream_gives_the_stored_rows_shuffled(small_store, tiny_model_dir, corpus_dir):
    lm = load_model(str(tiny_model_dir))
    kwargs = dict(ctx_len=32, model_batch_size=4, buffer_rows=512, max_rows=3000, seed=1)
    batches = list(stream_activations(lm, CorpusConfig(source=str(corpus_dir)), HOOK, 100,
                                      **kwargs))
    assert len(batches) == 30 and all(b.shape == (100, 32) for b in batches)
    assert all(b.dtype == torch.float32 for b in batches)
    streamed = torch.cat(batches)
    stored = next(ActivationStore(small_store).iter_rows(3000)).acts_ND
    assert not torch.equal(streamed, stored)  # shuffled
    key = lambda x: sorted(map(tuple, x.tolist()))  # noqa: E731
    assert key(streamed) == key(stored)
    again = torch.cat(list(stream_activations(lm, CorpusConfig(source=str(corpus_dir)), HOOK,
                                              100, **kwargs)))
    assert torch.equal(streamed, again)
    skipped = torch.cat(list(stream_activations(lm, CorpusConfig(source=str(corpus_dir)), HOOK,
                                                100, skip_rows=250, **kwargs)))
    assert torch.equal(skipped, streamed[250:250 + len(skipped)])
    # the trainer's style: a model spec and a corpus source string, by keyword
    by_spec = stream_activations(model=str(tiny_model_dir), hook=HOOK, corpus=str(corpus_dir),
                                 batch_size=100, **kwargs)
    assert torch.equal(next(by_spec), streamed[:100])


@pytest.mark.slow
def test_default_model_harvest_fits_float16(tmp_path):
    """Gemma 3 270M at layer 6: float16 storage holds its residuals (BOS excluded)."""
    out = tmp_path / "gemma"
    assert main(["harvest", "--tokens", "600", "--out", str(out), "--ctx-len", "128",
                 "--batch-size", "2", "--device", "cpu", "--corpus.shuffle-buffer", "8"]) == 0
    store = ActivationStore(out)
    assert (store.n_rows, store.d, store.dtype) == (600, 640, "float16")
    x = next(store.iter_rows(600)).acts_ND
    assert torch.isfinite(x).all()
    norms = x.norm(dim=1)
    # s brings the mean squared norm to d = 640
    assert (store.norm_scale * norms).square().mean().item() == pytest.approx(640, rel=1e-3)


def test_harvest_local_mixed_stores_code_and_prose_rows(tmp_path, tiny_model_dir):
    """`--corpus.source local-mixed`: rows come from both sources, in the iterator's order."""
    site = tmp_path / "site"
    site.mkdir()
    rng = random.Random(0)
    for i in range(40):
        body = "".join(f"def f{i}_{j}(x):\n    return x + {rng.randint(0, 99)}\n"
                       for j in range(10))
        (site / f"mod{i:02d}.py").write_text(body)
    out = tmp_path / "store"
    corpus = ["--corpus.source", "local-mixed", "--corpus.local-roots", str(site),
              "--corpus.shuffle-buffer", "8"]
    assert main(["harvest", "--model", str(tiny_model_dir), "--out", str(out), "--hook", HOOK,
                 "--tokens", "4000", "--ctx-len", "32", "--device", "cpu", "--batch-size", "4",
                 *corpus]) == 0
    store = ActivationStore(out)
    assert store.n_rows == 4000
    assert store.manifest["corpus"]["config"]["source"] == "local-mixed"
    assert store.manifest["corpus"]["description"].startswith("local-mixed (50%")
    rows = next(store.iter_rows(4000))
    docs = {d.doc_id: d for d in itertools.islice(iter_documents(CorpusConfig(
        source="local-mixed", local_roots=(str(site),), shuffle_buffer=8)), 200)}
    doc_ids = rows.doc_ids_N.tolist()
    prose = sum(docs[i].origin.startswith("wikipedia:") for i in doc_ids)
    assert 0.2 < prose / len(doc_ids) < 0.8
    # a prose document's rows are its tokens, in order
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    first = next(d for d in docs.values() if d.origin.startswith("wikipedia:")
                 and d.doc_id in doc_ids)
    mine = rows.doc_ids_N == first.doc_id
    ids = tokenizer(first.text, add_special_tokens=False)["input_ids"]
    assert rows.tokens_N[mine].tolist() == ids[:int(mine.sum())]
