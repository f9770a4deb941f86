"""Streaming mode: train straight from a tiny random model, no store; resume skips exactly."""

import json
import shutil

import torch

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
