"""`RunDir`: the run's layout, opening a run (or its sae/ folder) with clear errors, what the
run was trained on, its store and the maxima from its feature database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_activations_store import HEADER, write_store
from test_interp_results import tiny_feature_db

from monosemantic.errors import UserError
from monosemantic.runs import RunDir, feature_db_path
from monosemantic.sae import SAEConfig, create_sae, save_sae

D, F = 4, 8


def make_run(root, extra=None, n_features=F):
    """A finished run as the trainer leaves it: cfg.json, metrics.jsonl and sae/."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "cfg.json").write_text("{}")
    (root / "metrics.jsonl").write_text("")
    torch.manual_seed(0)
    sae = create_sae(SAEConfig(architecture="topk", d_in=D, n_features=n_features, k=2))
    meta = {"model": "tiny", "hook": HEADER["hook"], "store": None, "holdout_rows": None,
            "training": {"final_train": {"l0": 2.0}}}
    save_sae(sae, root / "sae", {**meta, **(extra or {})})
    return RunDir(root)


def test_layout(tmp_path):
    run = RunDir(tmp_path / "r")
    assert run.cfg_path == tmp_path / "r" / "cfg.json"
    assert run.metrics_path == tmp_path / "r" / "metrics.jsonl"
    assert run.checkpoints_dir == tmp_path / "r" / "checkpoints"
    assert run.sae_dir == tmp_path / "r" / "sae"
    assert run.sae_weights_path == tmp_path / "r" / "sae" / "sae_weights.safetensors"
    assert run.db_path == tmp_path / "r" / "features.sqlite"
    assert run.eval_path == tmp_path / "r" / "eval.json"
    assert run.density_plot_path == tmp_path / "r" / "density_histogram.png"
    assert run.store_dir == tmp_path / "r" / "acts"
    assert run.name == "r" and run == RunDir(tmp_path / "r")


def test_find_resolves_the_sae_folder_to_its_run(tmp_path):
    run = make_run(tmp_path / "run")
    assert RunDir.find(tmp_path / "run") == run
    assert RunDir.find(tmp_path / "run" / "sae") == run
    assert RunDir.open(tmp_path / "run" / "sae").hook == HEADER["hook"]
    # A run that happens to be called "sae" is a run, not an SAE folder.
    named_sae = make_run(tmp_path / "sae")
    assert RunDir.find(tmp_path / "sae") == named_sae


def test_open_errors_say_what_to_do(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        RunDir.open(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no sae/ folder.*not finished"):
        RunDir.open(tmp_path / "empty")
    foreign = make_run(tmp_path / "foreign")
    (foreign.sae_dir / "monosemantic.json").unlink()
    with pytest.raises(UserError, match="monosemantic.json.*another tool"):
        RunDir.open(foreign.path)


def test_an_older_nested_demo_folder_is_refused_with_its_run(tmp_path):
    demo = tmp_path / "demo"
    make_run(demo / "sae")  # the run was OUT/sae, its SAE OUT/sae/sae
    (demo / "demo_cfg.json").write_text("{}")
    with pytest.raises(UserError, match=r"older monosemantic.*serve .*demo/sae"):
        RunDir.find(demo)
    assert RunDir.open(demo / "sae").path == demo / "sae"


def test_metadata(tmp_path):
    run = make_run(tmp_path / "run", {"store": "/somewhere/acts", "holdout_rows": [90, 100]})
    assert (run.model, run.hook, run.d_in, run.n_features) == ("tiny", HEADER["hook"], D, F)
    assert run.store_path is not None and run.store_path.as_posix() == "/somewhere/acts"
    assert run.holdout_rows == range(90, 100)
    assert run.training == {"final_train": {"l0": 2.0}}
    streamed = make_run(tmp_path / "streamed")
    assert streamed.store_path is None and streamed.holdout_rows is None


def test_store_checks(tmp_path):
    write_store(tmp_path / "acts", n_rows=100, d=D)
    run = make_run(tmp_path / "run", {"store": str(tmp_path / "acts"),
                                      "holdout_rows": [90, 100]})
    assert run.store().n_rows == 100
    with pytest.raises(UserError, match=r"does not exist \(moved\?\).*--store"):
        run.store(tmp_path / "gone")
    write_store(tmp_path / "short", n_rows=50, d=D)
    with pytest.raises(UserError, match=r"held-out rows \[90, 100\) do not fit"):
        run.store(tmp_path / "short")
    write_store(tmp_path / "other", n_rows=100, d=D, header={**HEADER, "hook": "blocks.3.x"})
    with pytest.raises(UserError, match="blocks.3.x"):
        run.store(tmp_path / "other")
    with pytest.raises(UserError, match="streamed activations"):
        make_run(tmp_path / "streamed").store()


def test_max_act_from_the_feature_database(tmp_path):
    run = make_run(tmp_path / "run", n_features=D)
    assert run.max_act_F() is None  # no database yet
    tiny_feature_db(run.path)  # 4 features, as the SAE
    max_F = run.max_act_F()
    assert max_F is not None and max_F.shape == (D,)
    stale = make_run(tmp_path / "stale", n_features=F)
    tiny_feature_db(stale.path)
    with pytest.raises(UserError, match="4 features but the SAE has 8.*analyze"):
        stale.max_act_F()


def test_feature_db_path(tmp_path):
    run = make_run(tmp_path / "run")
    assert feature_db_path(run.sae_dir) == run.db_path
    assert feature_db_path(run.path) == run.db_path
    db = tiny_feature_db(tmp_path)
    assert feature_db_path(db) == db


def test_what_a_folder_may_hold_before_training(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.not_before_training() == []  # not there yet
    run.check_trainable()
    run.path.mkdir()
    (run.path / "acts").mkdir()
    (run.path / "demo_cfg.json").write_text(json.dumps({}))
    assert run.not_before_training() == []
    run.check_trainable()
    (run.path / "notes.txt").write_text("mine")
    assert run.not_before_training() == ["notes.txt"]
    with pytest.raises(UserError, match="not a training run.*holds notes.txt.*acts and demo_cfg"):
        run.check_trainable()
    run.cfg_path.write_text("{}")  # a run (to resume) may hold anything
    run.check_trainable()


def test_a_store_inside_the_run_is_found_from_another_directory(tmp_path, monkeypatch):
    run_dir = tmp_path / "runs" / "demo"
    write_store(run_dir / "acts", n_rows=100, d=D)
    # Recorded relative to the directory `train` ran in, as the demo records it.
    run = make_run(run_dir, {"store": "runs/demo/acts", "holdout_rows": [90, 100]})
    monkeypatch.chdir(tmp_path / "runs")
    assert not Path("runs/demo/acts").exists()
    assert run.store().path.resolve() == (run_dir / "acts").resolve()
