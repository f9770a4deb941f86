"""End-to-end trainer runs on synthetic sparse data (in memory): learning, metrics, failures."""

import json
from pathlib import Path

import pytest
import torch

from helpers.train_data import MemoryData, metrics_records, sparse_activations
from monosemantic.errors import UserError
from monosemantic.sae import SAEConfig
from monosemantic.train.checkpoint import latest_checkpoint, load_checkpoint
from monosemantic.train.trainer import NonFiniteLossError, TrainConfig, train

D, BATCH = 16, 256


def _cfg(out: Path, architecture: str = "relu", k: int = 32, l1_coefficient: float = 1.0,
         **kw) -> TrainConfig:
    sae = SAEConfig(architecture=architecture, n_features=64, k=k, l1_coefficient=l1_coefficient)
    base = dict(out=out, store=Path("unused"), sae=sae, batch_size=BATCH, steps=300, lr=3e-3,
                log_every=25, eval_every=100, checkpoint_every=100, device="cpu",
                dead_window_tokens=20 * BATCH)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def sparse_x():
    return sparse_activations(n_rows=8192, d=D, n_true=32, active=3, seed=0)[0]


@pytest.mark.parametrize("arch, extra", [("relu", {"l1_coefficient": 0.3}),
                                         ("topk", {"k": 4, "lr": 1e-2})])
def test_training_learns_sparse_data(tmp_path, sparse_x, arch, extra):
    """Golden-metric style: loss falls and held-out variance explained ends high."""
    run = train(_cfg(tmp_path / arch, architecture=arch, **extra),
                data=MemoryData(sparse_x, BATCH, holdout_fraction=0.1))
    records = metrics_records(run)
    train_recs = [r for r in records if r["split"] == "train"]
    eval_recs = [r for r in records if r["split"] == "eval"]
    assert [r["step"] for r in train_recs] == list(range(25, 301, 25))
    assert [r["step"] for r in eval_recs] == [100, 200, 300]
    assert train_recs[-1]["loss"] < 0.5 * train_recs[0]["loss"]
    final = eval_recs[-1]
    assert final["rows"] == 819  # round(0.1 * 8192) held-out rows
    assert final["variance_explained"] > 0.9
    # The record's NMSE is that of the held-out rows, E||x - x_hat||^2 / E||x - E[x]||^2 with
    # the mean subtracted, recomputed here in float64 from the saved SAE (the final step's).
    from monosemantic.sae import load_sae

    sae = load_sae(run / "sae").eval()
    held_ND = sparse_x[-819:]
    with torch.no_grad():
        err_ND = held_ND.double() - sae(held_ND).x_hat_BD.double()
    dev_ND = held_ND.double() - held_ND.double().mean(0)
    nmse = err_ND.square().sum(1).mean() / dev_ND.square().sum(1).mean()
    assert final["nmse"] == pytest.approx(float(nmse), rel=1e-4)
    if arch == "topk":
        assert final["l0"] <= 4.0
        # Features die on this data; the AuxK term is non-zero only if the trainer passed the
        # dead mask to the SAE.
        assert any(r["dead_fraction"] > 0 for r in train_recs)
        assert any(r["loss_aux"] > 0 for r in train_recs)
    else:
        assert 0 < final["l0"] < 64
    for key in ("loss", "loss_mse", "nmse", "variance_explained", "l0", "dead_fraction",
                "dense_fraction", "lr", "l1_scale", "tokens_per_s", "tokens"):
        assert key in train_recs[-1]
    # Each dead / dense figure says the tokens it covers: the dead window, the logging window.
    assert {r["dead_window_tokens"] for r in train_recs} == {20 * BATCH}
    assert {r["dense_window_tokens"] for r in train_recs} == {25 * BATCH}
    assert train_recs[0]["l1_scale"] == 1.0  # warm-up (15 steps) over by step 25
    assert train_recs[-1]["lr"] == pytest.approx(extra.get("lr", 3e-3) / 60)  # last decay step
    assert train_recs[-1]["tokens"] == 300 * BATCH
    saved = json.loads((run / "cfg.json").read_text())
    assert saved["steps"] == 300 and saved["sae"]["architecture"] == arch
    assert saved["sae"]["d_in"] == D and saved["sae"]["n_features"] == 64


def test_final_sae_and_metadata(tmp_path, sparse_x):
    from monosemantic.sae import load_sae

    run = train(_cfg(tmp_path / "run", steps=50, eval_every=0, checkpoint_every=0),
                data=MemoryData(sparse_x, BATCH, holdout_fraction=0.1))
    meta = json.loads((run / "sae" / "monosemantic.json").read_text())["extra_metadata"]
    assert meta["model"] == "synthetic" and meta["holdout_rows"] == [7373, 8192]
    assert meta["training"]["steps"] == 50 and meta["training"]["tokens"] == 50 * BATCH
    assert meta["training"]["wall_time_s"] > 0
    assert 0 < meta["training"]["final_train"]["variance_explained"] <= 1
    assert meta["training"]["final_train"]["dead_window_tokens"] == 20 * BATCH
    sae = load_sae(run / "sae")
    x = sparse_x[-100:]
    assert torch.isfinite(sae(x).x_hat_BD).all()
    assert latest_checkpoint(run)[0] == 50  # final checkpoint always written


@pytest.mark.parametrize("arch", ["relu", "topk", "batchtopk", "jumprelu", "matryoshka"])
def test_every_architecture_trains_and_saves(tmp_path, sparse_x, arch):
    from monosemantic.sae import load_sae

    run = train(_cfg(tmp_path / arch, architecture=arch, k=4, steps=30, eval_every=0,
                     checkpoint_every=0, log_every=10, dead_window_tokens=4 * BATCH),
                data=MemoryData(sparse_x, BATCH, holdout_fraction=0.1))
    last = metrics_records(run)[-1]
    assert last["split"] == "eval" and 0 < last["variance_explained"] <= 1
    sae = load_sae(run / "sae")
    assert sae.cfg.architecture == arch and sae.cfg.n_features == 64


def test_optional_backends_fail_clearly_when_missing(tmp_path, sparse_x):
    import importlib.util

    if importlib.util.find_spec("tensorboard") is not None:
        pytest.skip("tensorboard is installed here")
    with pytest.raises(UserError, match="pip install tensorboard"):
        train(_cfg(tmp_path / "run", tensorboard=True), data=MemoryData(sparse_x, BATCH))
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_nan_in_first_batches_fails_early(tmp_path, sparse_x):
    bad = sparse_x.clone()
    bad[:, 3] = float("nan")
    with pytest.raises(UserError, match="NaN/Inf"):
        train(_cfg(tmp_path / "run"), data=MemoryData(bad, BATCH))


class _PoisonedData(MemoryData):
    """Clean batches except at one step (after the start-up finiteness checks)."""

    def __init__(self, *a, bad_step: int, **kw):
        super().__init__(*a, **kw)
        self.bad_step = bad_step

    def train_batches(self, start_step):
        for step, x in enumerate(super().train_batches(start_step), start=start_step):
            yield x * float("nan") if step == self.bad_step else x


def test_nan_loss_stops_naming_step_and_checkpoint(tmp_path, sparse_x):
    cfg = _cfg(tmp_path / "run", steps=40, checkpoint_every=10, log_every=5, eval_every=0)
    with pytest.raises(NonFiniteLossError, match=r"step 23.*step_000000020 \(step 20\)"):
        train(cfg, data=_PoisonedData(sparse_x, BATCH, bad_step=23))
    assert latest_checkpoint(tmp_path / "run")[0] == 20  # nothing written after the NaN
    assert not (tmp_path / "run" / "sae").exists()
    state = load_checkpoint(latest_checkpoint(tmp_path / "run")[1])
    assert all(torch.isfinite(v).all() for v in state["sae"].values())


def test_resume_refuses_changed_config_and_dimension(tmp_path, sparse_x):
    run = tmp_path / "run"
    data = MemoryData(sparse_x, BATCH)
    train(_cfg(run, steps=20, eval_every=0), data=data)
    with pytest.raises(UserError, match=r"different config \(lr: 0\.003 -> 0\.001\)"):
        train(_cfg(run, steps=20, eval_every=0, lr=1e-3), data=data)
    with pytest.raises(UserError, match=r"different config \(sae\.k: 32 -> 8\)"):
        train(_cfg(run, steps=20, eval_every=0, k=8), data=data)
    with pytest.raises(UserError, match="width 16, but the data has width 8"):
        train(_cfg(run, steps=20, eval_every=0), data=MemoryData(sparse_x[:, :8], BATCH))
    # Same config, run complete: nothing retrained, metrics not duplicated.
    before = metrics_records(run)
    train(_cfg(run, steps=20, eval_every=0, log_every=5), data=data)
    assert metrics_records(run) == before


def test_not_a_run_directory_is_refused(tmp_path, sparse_x):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a training run"):
        train(_cfg(tmp_path / "run"), data=MemoryData(sparse_x, BATCH))


def test_matryoshka_trains_every_prefix_to_reconstruct(tmp_path, sparse_x):
    run = train(_cfg(tmp_path / "mat", architecture="matryoshka", k=4, lr=1e-2, steps=150,
                     eval_every=150, checkpoint_every=0, log_every=25),
                data=MemoryData(sparse_x, BATCH, holdout_fraction=0.1))
    records = metrics_records(run)
    train_recs = [r for r in records if r["split"] == "train"]
    assert train_recs[-1]["loss_prefix_mse"] < 0.7 * train_recs[0]["loss_prefix_mse"]
    # The smaller prefixes reconstruct worse than the whole dictionary: their mean is above it.
    assert train_recs[-1]["loss_prefix_mse"] > train_recs[-1]["loss_mse"]
    assert records[-1]["split"] == "eval" and records[-1]["variance_explained"] > 0.8
    saved = json.loads((run / "cfg.json").read_text())
    assert saved["sae"]["architecture"] == "matryoshka"
