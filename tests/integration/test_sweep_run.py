"""`monosemantic sweep` end to end on a small store: the table does not depend on how the runs
were executed (one process, worker processes, parts), finished runs are skipped, interrupted
ones resume, and bad input is refused before anything is trained."""

import json
import shutil
from pathlib import Path

import pytest

from helpers.train_data import sparse_activations, write_store
from monosemantic.cli import main
from monosemantic.errors import UserError
from monosemantic.sweep import run as sweep_run
from monosemantic.sweep.config import RunOptions
from monosemantic.sweep.record import SWEEP_TABLE, read_sweep
from monosemantic.sweep.run import SweepConfig, run_sweep
from monosemantic.sweep.table import run_lock, try_lock
from monosemantic.train import trainer

GRID = ["--n-features", "32", "64", "--tokens", "1280", "2560", "--architecture", "topk",
        "--k", "4", "--batch-size", "128", "--device", "cpu", "--log-every", "5",
        "--checkpoint-every", "5", "--eval-every", "0", "--loss-recovered", "false"]
NAMES = ["f32_t1280_k4", "f32_t2560_k4", "f64_t1280_k4", "f64_t2560_k4"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    x_ND = sparse_activations(n_rows=4000, d=16, n_true=32, active=3, seed=1)[0] * 30.0
    return write_store(tmp_path_factory.mktemp("store") / "acts", x_ND)


def _sweep(out: Path, store: Path, *extra: str) -> int:
    return main(["sweep", str(out), "--store", str(store), *GRID, *extra])


@pytest.fixture(scope="module")
def reference(tmp_path_factory, store) -> Path:
    """The grid run one point after another in this process."""
    out = tmp_path_factory.mktemp("sweeps") / "sequential"
    assert _sweep(out, store) == 0
    return out


def test_sequential_sweep_writes_one_record_per_run(reference):
    records = read_sweep(reference)
    assert [r.run for r in records] == NAMES
    # One seed per size: sizes must not start from the same first decoder rows.
    seeds = {(r.n_features, r.seed) for r in records}
    assert len(seeds) == 2 and len({seed for _, seed in seeds}) == 2
    for r in records:
        assert (r.architecture, r.d_in, r.batch_size, r.sparsity) == ("topk", 16, 128, {"k": 4})
        assert r.steps * r.batch_size == r.tokens in (1280, 2560)
        assert r.flops == 12 * r.d_in * r.n_features * r.tokens
        assert r.train_loss == pytest.approx(sum(r.train_loss_terms.values()))
        assert set(r.train_loss_terms) == {"mse", "aux"}
        assert 0 < r.variance_explained < 1 and r.l0 == pytest.approx(4.0)
        assert 0 <= r.dead_fraction <= 1 and r.dead_window_tokens > 0
        assert r.loss_recovered is None
        assert (reference / r.run / "sae").is_dir() and (reference / r.run / "eval.json").is_file()


def test_relu_sweep_runs_the_papers_recipe_over_lambdas(tmp_path, store):
    assert main(["sweep", str(tmp_path / "relu"), "--store", str(store), "--n-features", "32",
                 "--tokens", "1280", "--l1-coefficient", "1", "5", "--batch-size", "128",
                 "--device", "cpu", "--log-every", "5", "--loss-recovered", "false"]) == 0
    records = read_sweep(tmp_path / "relu")
    assert [r.run for r in records] == ["f32_t1280_l1-1", "f32_t1280_l1-5"]
    assert [r.sparsity for r in records] == [{"l1_coefficient": 1.0}, {"l1_coefficient": 5.0}]
    for r in records:
        assert set(r.train_loss_terms) == {"mse", "l1"} and r.lr == 5e-5
        assert r.train_loss == pytest.approx(sum(r.train_loss_terms.values()))
    saved = json.loads((tmp_path / "relu" / records[0].run / "cfg.json").read_text())
    assert (saved["l1_warmup_fraction"], saved["lr_decay_fraction"]) == (0.05, 0.2)


def test_worker_processes_and_parts_give_the_same_table(tmp_path, store, reference):
    expected = (reference / SWEEP_TABLE).read_bytes()
    assert _sweep(tmp_path / "jobs", store, "--jobs", "2") == 0
    assert (tmp_path / "jobs" / SWEEP_TABLE).read_bytes() == expected
    assert _sweep(tmp_path / "parts", store, "--part", "2/2") == 0
    assert [r.run for r in read_sweep(tmp_path / "parts")] == NAMES[1::2]
    assert _sweep(tmp_path / "parts", store, "--part", "1/2") == 0
    assert (tmp_path / "parts" / SWEEP_TABLE).read_bytes() == expected


def test_finished_runs_are_skipped(tmp_path, store, reference, monkeypatch, capsys):
    out = tmp_path / "again"
    shutil.copytree(reference, out)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/sae/*")}
    records = {p: p.read_bytes() for p in out.glob("*/sweep_record.json")}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(trainer, "train", no_training)
    assert _sweep(out, store) == 0
    printed = capsys.readouterr().out
    assert "4 already finished" in printed and f"next: monosemantic scaling {out}" in printed
    assert all(name in printed for name in NAMES)  # the summary table
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/sae/*")} == stamps
    assert {p: p.read_bytes() for p in out.glob("*/sweep_record.json")} == records
    assert (out / SWEEP_TABLE).read_bytes() == (reference / SWEEP_TABLE).read_bytes()


def test_a_trained_run_without_its_record_is_evaluated_not_trained(tmp_path, store, reference,
                                                                   monkeypatch):
    out = tmp_path / "unevaluated"
    shutil.copytree(reference, out)
    (out / "f64_t1280_k4" / "sweep_record.json").unlink()
    (out / "f64_t1280_k4" / "eval.json").unlink()

    def no_training(*args, **kwargs):
        raise AssertionError("a trained run was trained again")

    monkeypatch.setattr(trainer, "train", no_training)
    assert _sweep(out, store) == 0
    assert (out / "f64_t1280_k4" / "eval.json").is_file()
    assert (out / SWEEP_TABLE).read_bytes() == (reference / SWEEP_TABLE).read_bytes()


def test_interrupted_sweep_resumes_to_the_same_table(tmp_path, store, reference, monkeypatch):
    out = tmp_path / "interrupted"
    step = trainer.Loop.step

    def crash_at_step_7(self, x_BD):
        if self.state.step == 7 and self.cfg.out.name == "f32_t2560_k4":
            raise RuntimeError("killed")
        step(self, x_BD)

    monkeypatch.setattr(trainer.Loop, "step", crash_at_step_7)
    with pytest.raises(RuntimeError, match="killed"):
        _sweep(out, store)
    assert (out / "f32_t1280_k4" / "sweep_record.json").is_file()
    crashed = out / "f32_t2560_k4"
    assert (crashed / "checkpoints").is_dir() and not (crashed / "sae").exists()
    monkeypatch.setattr(trainer.Loop, "step", step)
    assert _sweep(out, store) == 0
    assert (out / SWEEP_TABLE).read_bytes() == (reference / SWEEP_TABLE).read_bytes()


def test_a_run_held_by_another_process_is_left_to_it(tmp_path, store, capsys):
    out = tmp_path / "held"
    with try_lock(run_lock(out, "f64_t1280_k4")) as held:
        assert held
        assert _sweep(out, store) == 0
    assert [r.run for r in read_sweep(out)] == [n for n in NAMES if n != "f64_t1280_k4"]
    assert not (out / "f64_t1280_k4").exists()
    assert "1 runs are not finished" in capsys.readouterr().out


def test_a_larger_grid_adds_runs(tmp_path, store, reference):
    out = tmp_path / "grown"
    shutil.copytree(reference, out)
    assert _sweep(out, store, "--n-features", "128") == 0
    names = [r.run for r in read_sweep(out)]
    assert names == NAMES + ["f128_t1280_k4", "f128_t2560_k4"]
    saved = json.loads((out / "sweep_cfg.json").read_text())
    assert saved["n_features"] == ["32", "64", "128"]


def test_other_options_on_the_same_folder_are_refused(tmp_path, store, reference, capsys):
    out = tmp_path / "changed"
    shutil.copytree(reference, out)
    assert _sweep(out, store, "--batch-size", "256") == 2
    assert "train.batch_size: 128 -> 256" in capsys.readouterr().err


@pytest.mark.parametrize("extra,message", [
    (["--tokens", "100"], "--tokens 100 is less than one batch of 128"),
    (["--k", "40"], "k = 40 is larger than n_features = 32"),
    (["--holdout-fraction", "0"], "none held out"),
    (["--store", "no/such/store"], "activation store no/such/store does not exist"),
    (["--n-features", "2"], "k = 4 is larger than n_features = 2"),
])
def test_bad_input_is_refused_before_training(tmp_path, store, extra, message, capsys):
    # A repeated list option extends the grid; a repeated scalar (--store) replaces it.
    assert _sweep(tmp_path / "bad", store, *extra) == 2
    assert message in capsys.readouterr().err
    assert not any((tmp_path / "bad").glob("f*"))


def test_a_folder_that_is_not_a_sweep_is_refused(tmp_path, store, capsys):
    assert _sweep(store, store) == 2
    assert "is not a sweep folder (no sweep_cfg.json) and holds" in capsys.readouterr().err
    assert not any(store.glob("f*"))


def test_python_api_refuses_an_empty_grid(tmp_path, store):
    with pytest.raises(UserError, match="the grid is empty"):
        run_sweep(SweepConfig(out=tmp_path / "empty", store=store, n_features=[], tokens=[10]))


def test_loss_recovered_with_the_stores_model(tmp_path, tiny_model_dir, monkeypatch):
    from monosemantic.activations.harvest import HarvestConfig, harvest
    from monosemantic.data import CorpusConfig

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    words = "golden gate bridge sparse feature token model layer import numpy the fox".split()
    (corpus / "text.txt").write_text("".join(
        " ".join(words[(n * 7 + i * 3) % len(words)] for i in range(12)) + f" {n}.\n"
        for n in range(300)))
    harvest(HarvestConfig(out=tmp_path / "acts", model=str(tiny_model_dir),
                          hooks=("blocks.1.hook_resid_post",), tokens=2000,
                          corpus=CorpusConfig(source=str(corpus), txt_unit="line"), ctx_len=32,
                          batch_size=8, dtype="float32", shard_rows=512, device="cpu"))
    loads = []
    load = sweep_run._load_store_model
    monkeypatch.setattr(sweep_run, "_load_store_model", lambda cfg: loads.append(1) or load(cfg))
    records = run_sweep(SweepConfig(out=tmp_path / "sw", store=tmp_path / "acts",
                                    n_features=["32", "64"], tokens=[1280], loss_contexts=4,
                                    train=RunOptions(batch_size=128, device="cpu"),
                                    architecture="topk", k=[8]))
    assert len(records) == 2 and len(loads) == 1  # one model for all runs of a process
    for record in records:
        report = json.loads((tmp_path / "sw" / record.run / "eval.json").read_text())
        assert report["sizes"]["spliced_contexts"] == 4
        assert record.loss_recovered == pytest.approx(report["metrics"]["loss_recovered"])
        assert record.d_in == 32
