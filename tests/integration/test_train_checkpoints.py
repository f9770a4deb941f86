"""Sharded checkpoints under torchrun (gloo, CPU): resharding at another world size, a resume
at another number of ranks, a worker killed with SIGKILL under --max-restarts, another run's
checkpoint refused.

A run resumed at another world size trains on the same global batches, so it matches the
straight run within the data-parallel test's bounds (test_train_distributed.py: float
summation order only). A 2-rank run whose worker is killed and restarted resumes at the same
world size and is bit-identical to the straight 2-rank run."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import shard_worker, snapshot_worker
from helpers.train_data import metrics_records, sparse_activations, write_store
from monosemantic.sae import SAEConfig, load_sae
from monosemantic.train.checkpoint import checkpoint_path, latest_checkpoint, read_meta
from monosemantic.train.config import TrainConfig
from monosemantic.train.dcp import FeatureSlice, load_state
from monosemantic.train.state import TrainState
from monosemantic.train.trainer import train

TESTS = Path(__file__).resolve().parents[1]
SRC = str(TESTS.parent / "src")
STEPS = 40
ARGS = ["--steps", str(STEPS), "--batch-size", "64", "--sae.architecture", "topk",
        "--sae.n-features", "64", "--sae.k", "2", "--sae.aux-k", "8", "--lr", "3e-3",
        "--log-every", "10", "--eval-every", "20", "--checkpoint-every", "10",
        "--keep-checkpoints", "5", "--device", "cpu", "--holdout-fraction", "0.1",
        "--dead-window-tokens", "320"]
TIMING = ("tokens_per_s", "elapsed_s")

# The CLI with a pause after every step, so that a kill lands mid-run; it changes no numbers.
SLOW_CLI = """
import sys, time
from monosemantic.train import trainer
step = trainer.Loop.step
def slow_step(self, x_BD):
    step(self, x_BD)
    time.sleep(0.05)
trainer.Loop.step = slow_step
from monosemantic.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _env() -> dict:
    # One thread per process: the ranks must fit 2 cores.
    return {**os.environ, "MONOSEMANTIC_QUIET": "1", "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([SRC, str(TESTS), os.environ.get("PYTHONPATH", "")])}


def _launch(ranks: int, *args: str, restarts: int = 0) -> list[str]:
    if ranks == 1:
        return [sys.executable, *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            str(ranks), "--max-restarts", str(restarts), *args]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)


def _train(run: Path, store: Path, ranks: int) -> None:
    done = _run(_launch(ranks, "-m", "monosemantic", "train", str(run), "--store", str(store),
                        *ARGS))
    assert done.returncode == 0, done.stderr[-4000:]


def _cut(source: Path, dest: Path, step: int) -> Path:
    """A copy of run `source` as a crash after the checkpoint of `step` would leave it."""
    shutil.copytree(source, dest)
    shutil.rmtree(dest / "sae", ignore_errors=True)
    for path in (dest / "checkpoints").iterdir():
        if int(path.name.split("_")[1]) > step:
            shutil.rmtree(path)
    return dest


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    x_ND = sparse_activations(n_rows=4096, d=16, n_true=48, active=3, seed=2)[0] * 10.0
    return write_store(tmp_path_factory.mktemp("store") / "acts", x_ND)


@pytest.fixture(scope="module")
def straight(tmp_path_factory, store) -> Path:
    """The one-process run, uninterrupted."""
    run = tmp_path_factory.mktemp("straight") / "run"
    _train(run, store, 1)
    return run


# ---------------------------------------------------------------- resharding


def test_feature_sharded_state_reshards_to_any_world_size(tmp_path):
    """4 ranks save their slices (F = 10: uneven), 2 ranks load theirs and save, 4 load those;
    one process reads either whole or as any slice. The worker checks every value."""
    worker = str(TESTS / "helpers" / "shard_worker.py")
    at4, at2 = tmp_path / "at4", tmp_path / "at2"
    for ranks, args in [(4, ["save", at4]), (2, ["load", at4, "4", at2]), (4, ["load", at2, "2"])]:
        done = _run(_launch(ranks, worker, *map(str, args)))
        assert done.returncode == 0, done.stderr[-4000:]

    whole = shard_worker.expected_state()
    for folder, world in ((at4, 4), (at2, 2)):
        for part in (FeatureSlice.whole(10), FeatureSlice(3, 9, 10)):
            local = {k: torch.zeros_like(shard_worker.local_slice(k, v, part))
                     for k, v in whole.items()}
            objects = load_state(folder, local, [f"rng/rank{r}" for r in range(world)],
                                 shard_worker.SHARDED, part)
            for name, value in local.items():
                assert torch.equal(value, shard_worker.local_slice(name, whole[name], part)), name
            assert [objects[f"rng/rank{r}"]["rank"] for r in range(world)] == list(range(world))

    # Replicated entries are stored once (rank 0's), sharded ones once per saving rank.
    import torch.distributed.checkpoint as dcp

    stored = [i.fqn for i in dcp.FileSystemReader(str(at4)).read_metadata().storage_data]
    assert stored.count("sae/b_dec") == stored.count("optim/param_groups") == 1
    assert stored.count("sae/W_enc") == 4


def test_feature_sliced_train_states_save_and_load(tmp_path):
    """TrainStates holding half the features each (as feature-parallel ranks will): 2 ranks
    load their halves of a 1-process checkpoint and save them; 1 process reads that whole."""
    whole = snapshot_worker.trained_state(tmp_path / "one")
    _, path = whole.save(tmp_path / "one", keep=2, wall_time=1.0, norm_scale=0.5)
    worker = str(TESTS / "helpers" / "snapshot_worker.py")
    done = _run(_launch(2, worker, str(tmp_path / "two"), str(path)))
    assert done.returncode == 0, done.stderr[-4000:]

    step, saved = latest_checkpoint(tmp_path / "two")
    meta = read_meta(saved)
    assert (step, meta["world"], meta["feature_sharded"]) == (4, 2, True)
    again = TrainState.create(snapshot_worker.config(tmp_path / "two"), d_in=4,
                              device=torch.device("cpu"))
    again.load(saved)
    got = snapshot_worker.values(again)
    for name, value in snapshot_worker.values(whole).items():
        assert torch.equal(got[name], value), name


# ---------------------------------------------------------------- world size changes


def _assert_matches(run: Path, reference: Path) -> None:
    """The data-parallel test's bounds: float summation order only."""
    ref_state = load_sae(reference / "sae").inference_state()
    state = load_sae(run / "sae").inference_state()
    for name, value in ref_state.items():
        assert float((state[name] - value).norm()) <= 1e-3 * float(value.norm()), name
    recs, ref_recs = metrics_records(run), metrics_records(reference)
    assert [(r["split"], r["step"]) for r in recs] == [(r["split"], r["step"]) for r in ref_recs]
    for r, ref in zip(recs, ref_recs):
        for key in ("loss", "mse", "l0", "nmse", "dead_fraction", "dense_fraction"):
            if key in ref:
                assert r[key] == pytest.approx(ref[key], rel=1e-4, abs=1e-6), (r["step"], key)


def test_resume_at_another_world_size(tmp_path, store, straight):
    """1 -> 2 -> 4 -> 2 ranks and 4 -> 1, each resuming the previous one's checkpoint."""
    chain = [(1, 10, 2), (2, 20, 4), (4, 30, 2)]  # (saved by, resumed at step, resumed with)
    source = straight
    for saved_by, step, ranks in chain:
        run = _cut(source, tmp_path / f"{saved_by}to{ranks}", step)
        assert read_meta(checkpoint_path(run, step))["world"] == saved_by
        _train(run, store, ranks)
        _assert_matches(run, straight)
        assert read_meta(checkpoint_path(run, STEPS))["world"] == ranks
        if (saved_by, ranks) == (2, 4):
            at4 = run
        source = run
    run = _cut(at4, tmp_path / "4to1", 30)
    _train(run, store, 1)
    _assert_matches(run, straight)


# ---------------------------------------------------------------- a lost rank


def _workers(launcher: int) -> dict[int, int]:
    """{RANK: pid} of the torchrun launcher's worker processes (its children, from /proc)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            env = (stat.parent / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile, or not ours to read
        rank = [e for e in env if e.startswith(b"RANK=")]
        if parent == launcher and rank:
            found[int(rank[0][5:])] = int(stat.parent.name)
    return found


def test_killed_worker_restarts_and_resumes_exactly(tmp_path, store):
    """torchrun --max-restarts 1: rank 0 is killed with SIGKILL at some moment after the first
    checkpoint (mid-step, mid-checkpoint or mid-log); the restarted workers resume from the
    latest complete checkpoint and end bit-identical to the uninterrupted 2-rank run."""
    reference = tmp_path / "reference"
    _train(reference, store, 2)

    script = tmp_path / "slow_cli.py"
    script.write_text(SLOW_CLI)
    run = tmp_path / "killed"
    proc = subprocess.Popen(
        _launch(2, str(script), "train", str(run), "--store", str(store), *ARGS, restarts=1),
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while latest_checkpoint(run) is None:
            assert proc.poll() is None, proc.stderr.read()[-4000:]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
        time.sleep(0.15)
        victim = _workers(proc.pid)[0]
        killed_after = latest_checkpoint(run)[0]
        assert killed_after < STEPS, "the run finished before it could be killed"
        os.kill(victim, signal.SIGKILL)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    # With one restart allowed, success after the kill means the restarted group finished.
    assert proc.returncode == 0, err[-4000:]
    assert not any(p.name.startswith(".") for p in (run / "checkpoints").iterdir())

    ref_state = load_sae(reference / "sae").inference_state()
    state = load_sae(run / "sae").inference_state()
    for name, value in ref_state.items():
        assert torch.equal(state[name], value), name
    strip = [{k: v for k, v in r.items() if k not in TIMING} for r in metrics_records(run)]
    assert strip == [{k: v for k, v in r.items() if k not in TIMING}
                     for r in metrics_records(reference)]
    meta = json.loads((run / "sae" / "monosemantic.json").read_text())["extra_metadata"]
    assert meta["training"]["steps"] == STEPS


# ---------------------------------------------------------------- another run's checkpoint


def test_checkpoint_of_another_run_is_refused_by_rank_0_without_a_hang(tmp_path, store,
                                                                       straight):
    other = tmp_path / "other"
    train(TrainConfig(out=other, store=store, steps=STEPS, batch_size=64, lr=3e-3,
                      sae=SAEConfig(architecture="topk", n_features=32, k=2, aux_k=8),
                      checkpoint_every=10, eval_every=0, log_every=10, device="cpu",
                      holdout_fraction=0.1, dead_window_tokens=320))
    run = _cut(straight, tmp_path / "run", 20)
    # A newer checkpoint than the run's own, copied from the other run.
    shutil.copytree(checkpoint_path(other, STEPS), checkpoint_path(run, 30))
    metrics_before = (run / "metrics.jsonl").read_text()

    done = _run(_launch(2, "-m", "monosemantic", "train", str(run), "--store", str(store),
                        *ARGS))
    assert done.returncode != 0
    assert done.stderr.count("was written by another run (sae.n_features: 32 -> 64)") == 1
    assert "rank 1: stopped, rank 0 refused the run" in done.stderr
    assert (run / "metrics.jsonl").read_text() == metrics_before  # nothing cut back
