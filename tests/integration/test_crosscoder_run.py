"""Crosscoders end to end on tiny random models through the CLI: two layers of one model
(per-site variance explained and spliced-in loss), and the same hook of two models with
different weights but the same tokenizer (model diffing)."""

from __future__ import annotations

import json
import random

import pytest

from helpers.tiny import save_tiny_model_dir
from monosemantic.cli import main

HOOKS = ("blocks.0.hook_resid_post", "blocks.1.hook_resid_post")
WORDS = ("golden gate bridge san francisco sparse autoencoder feature token model layer import "
         "numpy array return value def class function the quick brown fox").split()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("xc_corpus")
    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(12)) + f" {n}." for n in range(400)]
    (root / "text.txt").write_text("\n".join(lines) + "\n")
    return root


def _harvest(model_dir, corpus, out, *hooks):
    assert main(["harvest", "--model", str(model_dir), "--corpus.source", str(corpus),
                 "--corpus.txt-unit", "line", "--out", str(out), "--hooks", *hooks,
                 "--tokens", "3000", "--ctx-len", "32", "--batch-size", "8", "--dtype",
                 "float32", "--shard-rows", "1024", "--device", "cpu"]) == 0
    return out


def _train(run, *data):
    assert main(["train", str(run), *data, "--architecture", "topk", "--k", "8",
                 "--n-features", "64", "--batch-size", "128", "--steps", "40", "--lr", "3e-3",
                 "--holdout-fraction", "0.2", "--eval-every", "0", "--checkpoint-every", "0",
                 "--log-every", "20", "--device", "cpu"]) == 0


def test_two_layers_of_one_model(tiny_model_dir, corpus, tmp_path):
    acts = _harvest(tiny_model_dir, corpus, tmp_path / "acts", *HOOKS)
    run = tmp_path / "run"
    _train(run, "--store", str(acts), "--crosscoder", *HOOKS)
    assert main(["crosscoder-eval", str(run), "--n-contexts", "4", "--device", "cpu"]) == 0
    report = json.loads((run / "crosscoder_eval.json").read_text())
    labels = [f"{tiny_model_dir}:{h}" for h in HOOKS]
    assert report["sites"] == labels
    for label in labels:
        assert report["reconstruction"]["sites"][label]["variance_explained"] > 0.3
        spliced = report["spliced"][label]
        assert spliced["n_predictions"] > 0
        assert spliced["kl"] >= 0 and spliced["ce_spliced"] == spliced["ce_spliced"]
    # Both sites are scored on the same contexts and the same clean forward.
    first, second = (report["spliced"][label] for label in labels)
    assert first["n_predictions"] == second["n_predictions"]
    assert first["ce_clean"] == pytest.approx(second["ce_clean"])
    assert first["ce_zero"] != second["ce_zero"]  # each site zeroed in turn, not the same one


def test_same_hook_of_two_models_is_diffed(tmp_path, corpus):
    model_a = save_tiny_model_dir(tmp_path / "model_a", family="llama", seed=0)
    model_b = save_tiny_model_dir(tmp_path / "model_b", family="llama", seed=1)
    store_a = _harvest(model_a, corpus, tmp_path / "acts_a", HOOKS[1])
    store_b = _harvest(model_b, corpus, tmp_path / "acts_b", HOOKS[1])
    run = tmp_path / "diff"
    _train(run, "--stores", str(store_a), str(store_b))
    assert main(["crosscoder-eval", str(run), "--n-contexts", "0", "--device", "cpu"]) == 0
    diff = json.loads((run / "crosscoder_diff.json").read_text())
    assert diff["site_a"] == f"{model_a}:{HOOKS[1]}" and diff["site_b"] == f"{model_b}:{HOOKS[1]}"
    assert diff["a_only"] + diff["b_only"] + diff["shared"] + diff["zero"] == 64
    assert len(diff["cosine"]) == 64
