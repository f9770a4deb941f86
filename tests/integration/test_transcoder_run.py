"""A transcoder end to end through the CLI on a tiny model: harvest hook_mlp_in and
hook_mlp_out together, train from the paired stores, evaluate on the target site with the
transcoder spliced in for the MLP."""

from __future__ import annotations

import json
import random

import pytest
import torch

from helpers.tiny import FAMILIES, tiny_model, tiny_tokenizer
from helpers.transcoder import ExactMLP
from monosemantic.cli import main
from monosemantic.errors import UserError
from monosemantic.sae import SAEConfig, load_sae
from monosemantic.train.config import TrainConfig
from monosemantic.train.trainer import train

HOOK_IN, HOOK_OUT = "blocks.1.hook_mlp_in", "blocks.1.hook_mlp_out"
WORDS = ("golden gate bridge san francisco sparse autoencoder feature token model layer import "
         "numpy array return value def class function the quick brown fox").split()


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("transcoder")
    corpus = root / "corpus"
    corpus.mkdir()
    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(12)) + f" {n}." for n in range(400)]
    (corpus / "text.txt").write_text("\n".join(lines) + "\n")
    out = root / "acts"
    assert main(["harvest", "--model", str(tiny_model_dir), "--corpus.source", str(corpus),
                 "--corpus.txt-unit", "line", "--out", str(out), "--hooks", HOOK_IN, HOOK_OUT,
                 "--tokens", "4000", "--ctx-len", "32", "--batch-size", "8", "--dtype",
                 "float32", "--shard-rows", "1024", "--device", "cpu"]) == 0
    return out


def _train_args(store, run, *extra):
    return ["train", str(run), "--store", str(store), "--hook-in", HOOK_IN, "--hook-out",
            HOOK_OUT, "--n-features", "128", "--batch-size", "128", "--steps", "60",
            "--lr", "3e-3", "--holdout-fraction", "0.2", "--eval-every", "0",
            "--checkpoint-every", "0", "--log-every", "20", "--device", "cpu", *extra]


@pytest.mark.parametrize("arch,skip", [("topk", False), ("relu", True)])
def test_train_and_eval_through_the_cli(store, tmp_path, arch, skip, capsys):
    run = tmp_path / f"run_{arch}"
    extra = ["--architecture", arch, "--k", "8"] + (["--skip", "true"] if skip else [])
    if arch == "relu":
        extra += ["--l1-coefficient", "0.5"]
    assert main(_train_args(store, run, *extra)) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    final_eval = [r for r in records if r["split"] == "eval"][-1]
    # Measured on this tiny random model: 0.66 (topk) and 0.74 (relu + skip) after 60 steps;
    # a transcoder that ignored its input would explain nothing of the MLP's output.
    assert final_eval["variance_explained"] > 0.4
    tc = load_sae(run / "sae")
    assert tc.cfg.is_transcoder and tc.cfg.skip == skip and tc.cfg.d_out == tc.cfg.d_in
    assert tc.cfg.apply_b_dec_to_input is False
    cfg = json.loads((run / "sae" / "cfg.json").read_text())
    assert cfg["hook_name_out"] == HOOK_OUT and cfg["metadata"]["hook_name"] == HOOK_IN

    capsys.readouterr()
    assert main(["eval", str(run), "--n-contexts", "4", "--batch-size", "2"]) == 0
    report = json.loads((run / "eval.json").read_text())
    m = report["metrics"]
    assert (report["hook"], report["hook_out"]) == (HOOK_IN, HOOK_OUT)
    # The saved (raw-scale) transcoder on the same held-out rows as the trainer's evaluation
    # (normalised scale): the fold of both scales leaves the figure unchanged.
    assert m["variance_explained"] == pytest.approx(final_eval["variance_explained"], abs=1e-4)
    for key in ("ce_clean", "ce_spliced", "ce_zero", "loss_recovered"):
        assert m[key] == m[key] and abs(m[key]) < float("inf")
    # The one-pass analysis encodes the input store's rows; the database and the browser name
    # both sites (the decoder-based views are of the output site's directions).
    assert main(["analyze", str(run), "--device", "cpu"]) == 0
    from monosemantic.web.rundata import RunData

    data = RunData(run)
    try:
        assert (data.db.meta["hook"], data.db.meta["hook_out"]) == (HOOK_IN, HOOK_OUT)
        assert data.sites == f"{HOOK_IN} → {HOOK_OUT}"
        assert data.overview()["hook_out"] == HOOK_OUT
    finally:
        data.close()


@pytest.mark.parametrize("family", FAMILIES)
def test_spliced_loss_reads_the_input_of_the_same_forward(family):
    """Splicing a transcoder equal to the MLP sublayer changes nothing; the same one fed
    another site's activation does."""
    from monosemantic.evals.spliced import spliced_loss
    from monosemantic.models import LoadedModel

    tokenizer = tiny_tokenizer()
    lm = LoadedModel.from_hf(tiny_model(family, len(tokenizer)), tokenizer)
    ids_BS = tokenizer(["The quick brown fox jumps over the lazy dog. 0123456789",
                        "def add(a, b): return a + b, the golden gate bridge"],
                       return_tensors="pt", padding=True).input_ids
    block = lm.model.get_submodule(lm.hook_point("blocks.1.hook_resid_post").module_path)
    exact = ExactMLP(block, family)
    m = spliced_loss(lm, exact, HOOK_OUT, [ids_BS], hook_in=HOOK_IN)
    assert m["ce_spliced"] == pytest.approx(m["ce_clean"], abs=1e-5)
    assert m["kl"] == pytest.approx(0.0, abs=1e-6)
    assert m["ce_zero"] != pytest.approx(m["ce_clean"], abs=1e-5)
    wrong = spliced_loss(lm, exact, HOOK_OUT, [ids_BS], hook_in="blocks.1.hook_resid_pre")
    assert wrong["kl"] > 1e-6


def test_paired_stores_keep_rows_aligned(store):
    from monosemantic.activations import ActivationStore

    a, b = ActivationStore(store / HOOK_IN), ActivationStore(store / HOOK_OUT)
    assert a.n_rows == b.n_rows
    acts_a, acts_b = a.take(range(a.n_rows)).acts_ND, b.take(range(b.n_rows)).acts_ND
    # The same seed gives both stores the same shuffled rows: batch i pairs row for row.
    batches = zip(a.iter_batches(64, shuffle=True, seed=3), b.iter_batches(64, shuffle=True,
                                                                           seed=3))
    for _, (x_BD, y_BD) in zip(range(3), batches):
        rows_a = [int((acts_a == row).all(1).nonzero()[0]) for row in x_BD[:8]]
        rows_b = [int((acts_b == row).all(1).nonzero()[0]) for row in y_BD[:8]]
        assert rows_a == rows_b
        assert max(rows_a) >= 64  # shuffled: not the first rows in corpus order


def test_options_that_cannot_work(store, tmp_path):
    with pytest.raises(UserError, match="--hook-in and --hook-out"):
        train(TrainConfig(out=tmp_path / "a", store=store, hook_in=HOOK_IN))
    with pytest.raises(UserError, match="does not exist"):
        train(TrainConfig(out=tmp_path / "b", store=store, hook_in=HOOK_IN,
                          hook_out="blocks.0.hook_mlp_out"))
    with pytest.raises(UserError, match="--skip is a transcoder"):
        train(TrainConfig(out=tmp_path / "c", store=store / HOOK_IN,
                          sae=SAEConfig(skip=True)))


def test_resume_from_a_checkpoint_matches_an_uninterrupted_run(store, tmp_path):
    import shutil

    from monosemantic.train.checkpoint import latest_checkpoint

    args = ["--architecture", "topk", "--k", "8", "--skip", "true", "--checkpoint-every", "20",
            "--keep-checkpoints", "3"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(_train_args(store, whole, *args)) == 0
    assert main(_train_args(store, cut, *args)) == 0
    # Back to the state of a run that crashed right after its step-40 checkpoint.
    step, path = latest_checkpoint(cut)
    assert step == 60
    shutil.rmtree(path)
    shutil.rmtree(cut / "sae")
    assert latest_checkpoint(cut)[0] == 40
    assert main(_train_args(store, cut, *args)) == 0
    a, b = load_sae(whole / "sae"), load_sae(cut / "sae")
    for name in ("W_enc", "W_dec", "b_dec", "W_skip"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name))
