"""`monosemantic bench RUN [RUN ...] --out OUT` end to end on a tiny model: a Python corpus ->
harvest -> two seeds of one SAE (and one of another hook) -> bench through the CLI."""

import json

import pytest
import torch

from monosemantic.activations.harvest import HarvestConfig, harvest
from monosemantic.bench.config import BenchConfig
from monosemantic.bench.metrics import METRICS
from monosemantic.bench.options import PROBE_TASK_NAMES, RealBenchOptions
from monosemantic.bench.real import run_real_bench
from monosemantic.cli import main
from monosemantic.data import CorpusConfig
from monosemantic.errors import UserError
from monosemantic.evals import EvalConfig, run_eval
from monosemantic.sae import SAEConfig
from monosemantic.train.trainer import TrainConfig, train

HOOKS = ("blocks.1.hook_resid_post", "blocks.0.hook_resid_post")
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
