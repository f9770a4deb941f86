"""`monosemantic bench RUN [RUN ...] --out OUT` end to end on a tiny model: a Python corpus ->
harvest -> two seeds of one SAE (and one of another hook) -> bench through the CLI."""

import json
import string

import pytest
import torch

from helpers.pretrained import gemma_scope_params, write_gemma_scope_safetensors
from monosemantic.activations.harvest import HarvestConfig, harvest
from monosemantic.bench.config import BenchConfig
from monosemantic.bench.metrics import METRICS
from monosemantic.bench.options import PROBE_TASK_NAMES, RealBenchOptions
from monosemantic.bench.real import run_real_bench
from monosemantic.cli import main
from monosemantic.data import CorpusConfig
from monosemantic.errors import UserError
from monosemantic.evals import EvalConfig, run_eval
from monosemantic.pretrained.view import VIEWS_ENV
from monosemantic.runs import RunDir
from monosemantic.sae import SAEConfig
from monosemantic.train.trainer import TrainConfig, train

HOOKS = ("blocks.1.hook_resid_post", "blocks.0.hook_resid_post")
LETTERS = string.ascii_lowercase
NAMES = ("alpha", "beta", "gamma", "delta")


def _module(n: int, gen: torch.Generator) -> str:
    """A small Python file with every probing task's both classes (capitalised words the
    tiny tokenizer keeps whole: it was trained on the Golden Gate sentence)."""
    a, b = (NAMES[int(i)] for i in torch.randint(0, len(NAMES), (2,), generator=gen))
    return (f'"""Module {a} number {n}.\n\nThe Golden Gate Bridge is in San Francisco."""\n'
            f"import os\n\n\n"
            f"def {a}_{n}(x, y=None):\n"
            f"    # Return the {b} value when it is set\n"
            f"    if y is None:\n"
            f"        return 'none {b}'\n"
            f"    for item in range(x):\n"
            f'        print("Item", item, "{a}")\n'
            f"    return x + {n}\n")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("bench_real")
    corpus = root / "corpus"
    corpus.mkdir()
    gen = torch.Generator().manual_seed(0)
    for n in range(80):
        (corpus / f"m{n:03d}.txt").write_text(_module(n, gen))
    harvest(HarvestConfig(out=root / "store", model=str(tiny_model_dir), hooks=HOOKS,
                          tokens=8000, corpus=CorpusConfig(source=str(corpus)), ctx_len=64,
                          batch_size=8, dtype="float32", shard_rows=1024, device="cpu"))

    def trained(name: str, hook: str, seed: int):
        return train(TrainConfig(out=root / name, store=root / "store" / hook,
                                 sae=SAEConfig(architecture="topk", n_features=64, k=4),
                                 batch_size=128, steps=30, lr=1e-3, seed=seed,
                                 holdout_fraction=0.5, eval_every=0,
                                 checkpoint_every=0, log_every=10, device="cpu"))

    a, b = trained("seed0", HOOKS[0], 0), trained("seed1", HOOKS[0], 1)
    other = trained("layer0", HOOKS[1], 0)
    run_eval(EvalConfig(run=a, n_contexts=0, plot=False))
    return root, a, b, other


def test_cli_bench_two_seeds(runs, capsys):
    root, a, b, _ = runs
    out = root / "out"
    assert main(["bench", str(a), str(b), "--out", str(out), "--threads", "1",
                 "--min-per-class", "10"]) == 0
    printed = capsys.readouterr().out
    assert "probe_k1" in printed and "seed0" in printed and "seed1" in printed
    assert {p.name for p in out.iterdir()} >= {"seed0", "seed1", "bench.json", "bench.md",
                                               "compare.html"}
    assert not (root / ".out.partial").exists()
    report = json.loads((out / "bench.json").read_text())
    assert report["runs"] == ["seed0", "seed1"]
    per_run = json.loads((out / "seed0" / "bench.json").read_text())
    assert set(per_run["metrics"]) == set(METRICS)
    lo, hi = per_run["sample"]["rows"]
    assert hi - lo == per_run["sample"]["n_tokens"] > 0
    # eval.json exists for seed0 only (n_contexts 0: no loss recovered anywhere).
    src0 = per_run["metrics"]["reconstruction"]["source"]
    src1 = report["results"]["seed1"]["metrics"]["reconstruction"]["source"]
    assert src0["variance_explained"] == "eval.json" and src1["l0"] == "bench sample"
    assert src0["loss_recovered"].startswith("missing")
    rec = per_run["metrics"]["reconstruction"]
    # eval ran on all held-out rows; the bench sample is the same rows here.
    assert rec["sample"]["variance_explained"] == pytest.approx(
        rec["eval_json"]["variance_explained"], abs=1e-6)
    assert rec["sample"]["l0"] == pytest.approx(4.0)
    probing = per_run["metrics"]["sparse_probing"]
    assert set(probing["tasks"]) == set(PROBE_TASK_NAMES)
    for task in probing["tasks"].values():
        assert task["n_per_class"] >= 10 and set(task["sae"]) == {"1", "2", "5"}
        assert 0 <= task["raw_accuracy"] <= 1 and len(task["sae"]["5"]["features"]) == 5
    (pair,) = report["consistency"]
    assert (pair["a"], pair["b"], pair["method"]) == ("seed0", "seed1", "hungarian")
    assert 0 < pair["mean_cosine"] < 1
    page = (out / "compare.html").read_text()
    assert "<table" in page and "http" not in page.split("<body>")[1].split("bench.json")[0]
    assert "| seed0 | seed1 |" in (out / "bench.md").read_text()
    # The metrics that run the language model: absorption on the tiny tokenizer's few whole
    # words, neurons replayed over the store's contexts (float32: the stored rows come back).
    columns = report["table"]["columns"]
    assert {"absorption_fraction", "full_absorption", "letter_probe_f1", "letter_main_f1",
            "feat_share_weak_r", "feat_median_max_r", "neuron_share_weak_r"} <= set(columns)
    assert "feat_share_weak_r" in printed and "absorption_fraction" in page
    absorbed = per_run["metrics"]["absorption"]
    assert absorbed["n_words"] > 0 and absorbed["hook"] == HOOKS[0]
    assert absorbed["caveat"] is not None and set(absorbed["letters"]) == set(LETTERS)
    neurons = per_run["metrics"]["neurons"]
    assert neurons["mlp_hook"] == "blocks.1.mlp.hook_post" and neurons["n_features"] == 64
    assert neurons["n_tokens"] == neurons["replay_rows"] == per_run["sample"]["n_tokens"]
    assert neurons["replay_rel_error"] < 1e-4
    row = dict(zip(columns, report["table"]["rows"][0]))
    assert row["feat_share_weak_r"] == neurons["feature_share_weak"]


def test_a_permuted_copy_of_a_run_is_fully_consistent(runs, tmp_path):
    # The same run twice through --pair: every decoder row matches itself.
    root, a, _, _ = runs
    report = run_real_bench(BenchConfig(run=[a, a], real=RealBenchOptions(
        out=tmp_path / "o", pair=[1, 2], metrics=["core"])))
    assert report["runs"] == ["seed0", "seed0-2"]
    (pair,) = report["consistency"]
    assert pair["mean_cosine"] == pytest.approx(1.0) and pair["share_above_0.9"] == 1.0


@pytest.mark.parametrize("extra, message", [
    (["--pair", "1", "3"], "only SAEs of the same activations can be matched"),
    (["--pair", "1", "4"], "give two different run positions between 1 and 3"),
    (["--tasks", "nope"], "unknown --tasks"),
    (["--metrics", "nope"], "unknown --metrics"),
    (["--store", "/nonexistent/store"], "does not exist"),
])
def test_bad_input_fails_clearly_and_writes_nothing(runs, capsys, extra, message):
    root, a, b, other = runs
    out = root / "bad"
    assert main(["bench", str(a), str(b), str(other), "--out", str(out), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and not (root / ".bad.partial").exists()


def test_out_must_be_new_or_empty(runs, capsys):
    root, a, _, _ = runs
    out = root / "full"
    out.mkdir()
    (out / "x").write_text("")
    assert main(["bench", str(a), "--out", str(out)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert main(["bench", str(a)]) == 2
    assert "give --out OUT" in capsys.readouterr().err


def test_a_failure_midway_leaves_no_output(runs, tmp_path):
    # No task can find 1000 tokens of each class: the probing fails after the core extras ran.
    _, a, _, _ = runs
    out = tmp_path / "o"
    with pytest.raises(UserError, match="--min-per-class 1000"):
        run_real_bench(BenchConfig(run=[a], real=RealBenchOptions(
            out=out, min_per_class=1000, max_per_class=1000)))
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.fixture()
def gemma_scope(runs, monkeypatch, tmp_path):
    """A Gemma Scope-style folder (params.safetensors only: names neither model nor hook) of
    the tiny model's width, its run views under tmp_path."""
    monkeypatch.setenv(VIEWS_ENV, str(tmp_path / "views"))
    d = RunDir.open(runs[1]).d_in
    return write_gemma_scope_safetensors(tmp_path / "width_64" / "l0_9", gemma_scope_params(d, 64))


def test_a_pretrained_sae_beside_a_run_on_the_runs_held_out_rows(runs, gemma_scope,
                                                                tiny_model_dir, tmp_path):
    root, a, _, _ = runs
    held = RunDir.open(a).holdout_rows
    out = tmp_path / "mixed"
    assert main(["bench", str(a), str(gemma_scope), "--model", str(tiny_model_dir),
                 "--hook", HOOKS[0], "--store", str(root / "store" / HOOKS[0]),
                 "--rows", f"{held.start}:{held.stop}", "--pair", "1", "2", "--out", str(out),
                 "--metrics", "reconstruction", "core", "neurons", "--threads", "1"]) == 0
    report = json.loads((out / "bench.json").read_text())
    assert report["runs"] == ["seed0", "l0_9"]
    run, view = (report["results"][n] for n in report["runs"])
    assert run["sample"]["rows"] == view["sample"]["rows"] == [held.start, held.stop]
    assert run["sample"]["rows_from"] == view["sample"]["rows_from"] == "--rows"
    assert not run["sample"]["includes_training_rows"]
    assert run["pretrained"] is None and view["pretrained"]["layout"]
    assert view["seed"] is None and view["model"] == str(tiny_model_dir)
    assert view["metrics"]["neurons"]["replay_rel_error"] < 1e-4
    # A random JumpReLU SAE shares nothing with a trained topk SAE, but the pair is matched.
    (pair,) = report["consistency"]
    assert (pair["a"], pair["b"]) == ("seed0", "l0_9") and pair["mean_cosine"] < 0.9
    assert len(report["table"]["rows"]) == 2 and (out / "l0_9" / "bench.json").is_file()


def test_a_pretrained_sae_alone_samples_the_store_from_its_first_row(runs, gemma_scope,
                                                                    tiny_model_dir, tmp_path):
    root, a, _, _ = runs
    report = run_real_bench(BenchConfig(run=[gemma_scope], real=RealBenchOptions(
        out=tmp_path / "o", model=str(tiny_model_dir), hook=HOOKS[0],
        store=root / "store" / HOOKS[0], holdout_tokens=500, metrics=["core"])))
    sample = report["results"]["l0_9"]["sample"]
    assert sample["rows"] == [0, 500] and sample["rows_from"] == "every store row"
    assert report["consistency"] == []


def test_rows_reaching_into_training_rows_are_flagged(runs, tmp_path):
    _, a, _, _ = runs
    report = run_real_bench(BenchConfig(run=[a], real=RealBenchOptions(
        out=tmp_path / "o", rows="0:300", metrics=["core"])))
    sample = report["results"]["seed0"]["sample"]
    assert sample["rows"] == [0, 300] and sample["includes_training_rows"]


def test_a_pretrained_sae_without_a_store_is_refused(runs, gemma_scope, tiny_model_dir,
                                                    tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["bench", str(gemma_scope), "--model", str(tiny_model_dir), "--hook", HOOKS[0],
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "pretrained SAE" in err and "--store STORE" in err and "--rows START:STOP" in err
    assert not out.exists()


@pytest.mark.parametrize("rows, message", [("5", "START:STOP"), ("0:999999", "non-empty span")])
def test_bad_rows_are_refused(runs, tmp_path, capsys, rows, message):
    _, a, _, _ = runs
    assert main(["bench", str(a), "--rows", rows, "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_a_transcoder_is_refused(tiny_model_dir, tmp_path, capsys):
    from helpers.transcoder import random_transcoder, save_transcoder_run

    lm_cfg = json.loads((tiny_model_dir / "config.json").read_text())
    width = lm_cfg["hidden_size"]
    run = save_transcoder_run(tmp_path / "tc", tiny_model_dir, random_transcoder(width, width))
    out = tmp_path / "o"
    assert main(["bench", str(run), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "is a transcoder" in err and f"monosemantic eval {run}" in err
    assert not out.exists()
