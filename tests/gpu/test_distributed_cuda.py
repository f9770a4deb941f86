"""Harvest and analyze under torchrun on CUDA (NCCL, one GPU per rank; skipped with fewer than
two GPUs): the 2-rank store and database match the 1-process ones made on the same GPU type.

Not run in this project's CPU sessions (written beside the gloo tests in tests/integration,
whose CPU runs are exact). On GPUs a shard holds the rows of the same batches through the same
model, so equal bytes are expected where the kernels are deterministic for a batch shape; the
comparison allows float tolerance on activations and analysis values all the same, and is
exact on everything else (row order, tokens, documents, positions, counts, example rows)."""

from __future__ import annotations

import sqlite3

import pytest
import torch

from helpers.torchrun import run_cli
from monosemantic.activations import ActivationStore
from monosemantic.featuredb.schema import DB_FILENAME
from monosemantic.sae import SAEConfig, create_sae, save_sae

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")]

HOOK = "blocks.0.hook_resid_post"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus")
    for i in range(30):
        (path / f"doc{i}.txt").write_text(f"Document {i}. " + "sparse features fire " * (i + 5))
    return path


def _harvest(ranks: int, model_dir, corpus, out) -> ActivationStore:
    done = run_cli(ranks, "harvest", "--model", str(model_dir), "--corpus.source", str(corpus),
                   "--out", str(out), "--hook", HOOK, "--tokens", "2000", "--ctx-len", "32",
                   "--batch-size", "4", "--shard-rows", "256", "--dtype", "float32",
                   "--device", "cuda")
    assert done.returncode == 0, done.stderr[-4000:]
    return ActivationStore(out, verify="open")


def test_harvest_and_analyze_on_two_gpus(tmp_path, tiny_model_dir, corpus):
    one = _harvest(1, tiny_model_dir, corpus, tmp_path / "one")
    two = _harvest(2, tiny_model_dir, corpus, tmp_path / "two")
    assert two.n_rows == one.n_rows == 2000
    a, b = next(one.iter_rows(2000)), next(two.iter_rows(2000))
    for x, y in zip(a[1:], b[1:]):
        assert torch.equal(x, y)
    torch.testing.assert_close(b.acts_ND, a.acts_ND, rtol=1e-5, atol=1e-5)

    torch.manual_seed(0)
    sae = create_sae(SAEConfig(architecture="relu", d_in=one.d, n_features=32))
    run = tmp_path / "run"
    save_sae(sae, run / "sae", {"model": str(tiny_model_dir), "hook": HOOK,
                                "store": str(tmp_path / "one"), "holdout_rows": [1800, 2000]})
    args = ["analyze", str(run), "--batch-size", "256", "--feature-map", "false",
            "--device", "cuda"]
    dbs = {}
    for ranks in (1, 2):
        done = run_cli(ranks, *args)
        assert done.returncode == 0, done.stderr[-4000:]
        dbs[ranks] = run / f"db{ranks}.sqlite"
        (run / DB_FILENAME).rename(dbs[ranks])
    queries = {"features": "SELECT id, count FROM features ORDER BY id",
               "examples": "SELECT id, feature, kind, interval, rank, row FROM examples "
                           "ORDER BY id",
               "values": "SELECT max_act FROM features ORDER BY id"}
    got = {}
    for ranks, path in dbs.items():
        con = sqlite3.connect(path)
        got[ranks] = {k: con.execute(q).fetchall() for k, q in queries.items()}
        con.close()
    assert got[2]["features"] == got[1]["features"]
    assert got[2]["examples"] == got[1]["examples"]
    assert [v for (v,) in got[2]["values"]] == pytest.approx([v for (v,) in got[1]["values"]],
                                                             rel=1e-5)
