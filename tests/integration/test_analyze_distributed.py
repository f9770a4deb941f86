"""`analyze` under torchrun (gloo, CPU): the ranks share the feature slices and rank 0 writes the
database one process writes, every table row for row (only the meta that describes the
computation differs); a run no rank can read stops every rank with rank 0's error."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from helpers.feature_db import db_rows
from helpers.torchrun import run_cli
from helpers.word_store import harvest_word_store
from monosemantic.featuredb.schema import DB_FILENAME
from monosemantic.models import load_model
from monosemantic.sae import SAEConfig, create_sae, save_sae

HOOK = "blocks.0.hook_resid_pre"
WORDS = ["golden", "gate", "bridge", "sparse", "autoencoder", "feature", "token", "import",
         "numpy", "return", "value", "def", "class", "the", "quick", "brown", "fox"]
ARGS = ["--batch-size", "256", "--top-k", "6", "--logit-tokens", "4", "--neighbours", "3",
        "--feature-map", "false", "--device", "cpu"]
# How the database was computed, not what it holds.
COMPUTATION_META = ("pass_seconds", "pass_state_bytes", "feature_slice")


def tables(path) -> dict[str, list[tuple]]:
    """`db_rows` of the database without the computation meta (also inside the recorded
    options, which hold --feature-slice)."""
    rows = db_rows(path, COMPUTATION_META)
    rows["meta"] = [(i, key, _without_slice(value) if key in ("config", "options") else value)
                    for i, key, value in rows["meta"]]
    return rows


def _without_slice(value: str) -> dict:
    return {k: v for k, v in json.loads(value).items() if k != "feature_slice"}


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dir):
    """A run of a random relu SAE (24 features, half of them firing on about half the tokens)
    on a small store, analysed by one process (its database kept as `single.sqlite`)."""
    root = tmp_path_factory.mktemp("analyze_ranks")
    store = harvest_word_store(root, tiny_model_dir, HOOK, WORDS)
    torch.manual_seed(0)
    d = load_model(str(tiny_model_dir)).d_model
    sae = create_sae(SAEConfig(architecture="relu", d_in=d, n_features=24))
    with torch.no_grad():
        sae.b_enc[:12] = 0.0
    run = root / "run"
    save_sae(sae, run / "sae", {"model": str(tiny_model_dir), "hook": HOOK,
                                "store": str(root / "store"),
                                "holdout_rows": [store.n_rows - 200, store.n_rows]})
    done = run_cli(1, "analyze", str(run), *ARGS)
    assert done.returncode == 0, done.stderr[-4000:]
    (run / DB_FILENAME).rename(run / "single.sqlite")
    return run


@pytest.mark.parametrize(("ranks", "extra"), [(2, []), (2, ["--feature-slice", "5"]),
                                              (4, ["--feature-slice", "5"])])
def test_ranks_write_the_one_process_database(run, ranks, extra):
    (run / DB_FILENAME).unlink(missing_ok=True)
    done = run_cli(ranks, "analyze", str(run), *ARGS, *extra)
    assert done.returncode == 0, done.stderr[-4000:]
    want, got = tables(run / "single.sqlite"), tables(run / DB_FILENAME)
    assert want["examples"] and want["neighbours"] and want["intervals"]
    assert want["logit_effects"] and want["vocab"]
    assert sorted(got) == sorted(want)
    for table in want:
        assert got[table] == want[table], table  # exact: every slice computes as unsliced
    assert not list(run.glob(".features.rank*"))  # the parts are gone


def test_a_missing_run_stops_every_rank(tmp_path):
    missing = tmp_path / "gone"
    done = run_cli(2, "analyze", str(missing), *ARGS, timeout=120)
    assert done.returncode != 0
    assert f"on ranks 0, 1 of 2: run directory {missing} does not exist" in done.stderr
    assert not (missing / DB_FILENAME).exists()


def test_a_moved_store_stops_every_rank(run, tmp_path):
    """The run's store moved away: every rank fails to open it, rank 0 names the path."""
    moved = tmp_path / "run"
    shutil.copytree(run / "sae", moved / "sae")
    store = run.parent / "store"
    hidden = run.parent / "store_hidden"
    store.rename(hidden)
    try:
        done = run_cli(2, "analyze", str(moved), *ARGS, timeout=120)
    finally:
        hidden.rename(store)
    assert done.returncode != 0
    assert f"activation store {store} does not exist" in done.stderr
    assert "on ranks 0, 1 of 2" in done.stderr
