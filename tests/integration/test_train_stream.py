"""Streaming mode: train straight from a tiny random model, no store; resume skips exactly."""

import json
import shutil

import pytest
import torch

from helpers.torchrun import run_cli
from helpers.train_data import metrics_records
from monosemantic.data import CorpusConfig
from monosemantic.sae import SAEConfig
from monosemantic.train.checkpoint import checkpoint_path, load_checkpoint
from monosemantic.train.trainer import TrainConfig, train

TEXT = ("Sparse autoencoders find features in activations of language models. "
        "The Golden Gate Bridge is in San Francisco. def add(a, b): return a + b\n\n") * 60


def _cfg(tmp_path, tiny_model_dir, out):
    corpus_file = tmp_path / "corpus.txt"
    corpus_file.write_text(TEXT)
    return TrainConfig(
        out=out, model=str(tiny_model_dir), hook="blocks.1.hook_resid_post",
        corpus=CorpusConfig(source=str(corpus_file), txt_unit="paragraph", dedupe=False),
        ctx_len=32, stream_batch_size=4, stream_buffer_rows=256, batch_size=64, steps=20,
        sae=SAEConfig(n_features=64), lr=1e-3, holdout_fraction=0.1, norm_estimate_batches=2,
        checkpoint_every=10, eval_every=10, log_every=5, device="cpu", keep_checkpoints=5)


def test_streaming_trains_and_resumes_exactly(tmp_path, tiny_model_dir):
    run = train(_cfg(tmp_path, tiny_model_dir, tmp_path / "run"))
    recs = metrics_records(run)
    evals = [r for r in recs if r["split"] == "eval"]
    assert [r["step"] for r in evals] == [10, 20]
    assert evals[-1]["rows"] == 128  # 0.1 x 20 steps x 64 rows, as whole batches
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in recs if r["split"] == "train")
    meta = json.loads((run / "sae" / "monosemantic.json").read_text())["extra_metadata"]
    assert meta["store"] is None and meta["hook"] == "blocks.1.hook_resid_post"
    assert meta["norm_scale"] > 0 and meta["holdout_stream_batches"] == [0, 2]
    final = load_checkpoint(checkpoint_path(run, 20))

    # Lose everything after step 10, as a crash would: the resumed run re-streams and skips.
    shutil.rmtree(checkpoint_path(run, 20))
    shutil.rmtree(run / "sae")
    train(_cfg(tmp_path, tiny_model_dir, tmp_path / "run"))
    again = load_checkpoint(checkpoint_path(run, 20))
    assert again["norm_scale"] == final["norm_scale"]
    for name, value in final["sae"].items():
        torch.testing.assert_close(again["sae"][name], value, rtol=1e-5, atol=1e-6)


def _stream_args(corpus_file, tiny_model_dir) -> list[str]:
    """`_cfg`'s options on the command line (40 steps)."""
    return ["--model", str(tiny_model_dir), "--hook", "blocks.1.hook_resid_post",
            "--corpus.source", str(corpus_file), "--corpus.txt-unit", "paragraph",
            "--corpus.dedupe", "false", "--ctx-len", "32", "--stream-batch-size", "4",
            "--stream-buffer-rows", "256", "--batch-size", "64", "--steps", "40",
            "--sae.n-features", "64", "--lr", "1e-2", "--holdout-fraction", "0.1",
            "--norm-estimate-batches", "2", "--checkpoint-every", "20", "--eval-every", "20",
            "--log-every", "10", "--device", "cpu"]


def test_two_ranks_stream_their_own_documents(tmp_path, tiny_model_dir):
    """Each rank streams its half of the documents (doc_id % 2; the split itself is tested in
    tests/unit/test_data_documents.py) and trains on 32 rows of each 64-row batch. Not the
    1-process run (other contexts, other mixing), but the same task: the losses and the scale
    come out close to it."""
    corpus_file = tmp_path / "corpus.txt"
    corpus_file.write_text(TEXT)
    runs = {}
    for ranks in (1, 2):
        runs[ranks] = tmp_path / f"run{ranks}"
        done = run_cli(ranks, "train", str(runs[ranks]), *_stream_args(corpus_file,
                                                                      tiny_model_dir))
        assert done.returncode == 0, done.stderr[-4000:]
    one, two = (metrics_records(runs[r]) for r in (1, 2))
    assert [(r["split"], r["step"]) for r in two] == [(r["split"], r["step"]) for r in one]
    evals = [r for r in two if r["split"] == "eval"]
    assert [r["rows"] for r in evals] == [256, 256]  # rank 0 holds out 8 batches of 32 rows
    first = next(r for r in two if r["split"] == "train")
    assert evals[-1]["nmse"] < 0.7 * first["nmse"]  # it learns (measured 0.96 -> 0.55)
    for r1, r2 in zip(one, two):  # measured within 7% of each other
        assert r2["nmse"] == pytest.approx(r1["nmse"], rel=0.15), (r1, r2)
    meta = [json.loads((runs[r] / "sae" / "monosemantic.json").read_text())["extra_metadata"]
            for r in (1, 2)]
    assert meta[1]["stream_ranks"] == 2 and meta[1]["holdout_stream_batches"] == [0, 8]
    assert meta[1]["norm_scale"] == pytest.approx(meta[0]["norm_scale"], rel=0.1)
