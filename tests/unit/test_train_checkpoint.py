"""Checkpoint folders in one process: the TrainState round trip, atomic publication, cleanup of
unfinished folders, the refusals (old format, another run's checkpoint)."""

import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from monosemantic.config import save_config
from monosemantic.distributed import Ranks
from monosemantic.errors import UserError
from monosemantic.sae import SAEConfig
from monosemantic.train.checkpoint import (
    checkpoint_path,
    clean_partial,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_meta,
    write_checkpoint,
)
from monosemantic.train.config import TrainConfig, resolve
from monosemantic.train.dcp import FeatureSlice, load_state, save_state
from monosemantic.train.resume import resume_point
from monosemantic.train.state import TrainState
from monosemantic.train.trainer import Loop

CPU = torch.device("cpu")
SAE_OPTIONS = {
    "relu": {},
    "topk": {"k": 2, "aux_k": 4},
    "batchtopk": {"k": 2, "aux_k": 4},
    "matryoshka": {"k": 2, "aux_k": 4, "matryoshka_prefixes": (3, 6, 12)},
    "jumprelu": {"l0_coefficient": 0.01},
}


def _cfg(run: Path, arch: str = "topk", **kw) -> TrainConfig:
    sae = SAEConfig(architecture=arch, n_features=12, **SAE_OPTIONS[arch])
    options = {"steps": 20, "batch_size": 8, "log_every": 1000, "dead_window_tokens": 16,
               "device": "cpu", **kw}
    return resolve(TrainConfig(out=run, store=Path("store"), sae=sae, **options), None, 4)


def _trained(cfg: TrainConfig, steps: int) -> tuple[TrainState, Loop, torch.Tensor]:
    state = TrainState.create(cfg, d_in=4, device=CPU)
    x_BD = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    state.sae.init_from_data(x_BD)
    loop = Loop(cfg, data=None, state=state, device=CPU)
    for _ in range(steps):
        loop.step(x_BD)
    return state, loop, x_BD


@pytest.mark.parametrize("arch", sorted(SAE_OPTIONS))
def test_round_trip_continues_bit_for_bit(tmp_path, arch):
    cfg = _cfg(tmp_path / "run", arch)
    state, loop, x_BD = _trained(cfg, 5)
    state.last_records = {"train": {"step": 5, "loss": 1.25}}
    step, path = state.save(tmp_path / "run", keep=2, wall_time=3.5, norm_scale=0.25)
    assert (step, path) == (5, checkpoint_path(tmp_path / "run", 5))
    after_save = torch.rand(3), random.random()

    fresh = TrainState.create(cfg, d_in=4, device=CPU)
    torch.manual_seed(123)
    random.seed(123)
    fresh.load(path)
    rand, py_rand = after_save
    assert torch.equal(torch.rand(3), rand) and random.random() == py_rand  # RNGs came back
    assert (fresh.step, fresh.wall_time, fresh.last_records) == (5, 3.5, state.last_records)
    assert read_meta(path)["norm_scale"] == 0.25
    for name, value in state.sae.state_dict().items():
        assert torch.equal(fresh.sae.state_dict()[name], value), name
    assert torch.equal(fresh.tracker.tokens_since_fire_F, state.tracker.tokens_since_fire_F)
    assert torch.equal(fresh.recon.sums, state.recon.sums) and fresh.recon.rows == 40
    assert fresh.losses.result() == state.losses.result()

    # Both continue identically: Adam's moments and step counts came back too.
    fresh_loop = Loop(cfg, data=None, state=fresh, device=CPU)
    for _ in range(3):
        loop.step(x_BD)
        fresh_loop.step(x_BD)
    for name, value in state.sae.state_dict().items():
        assert torch.equal(fresh.sae.state_dict()[name], value), name


def test_checkpoint_holds_whole_tensors_for_inspection(tmp_path):
    state, _, _ = _trained(_cfg(tmp_path / "run"), 2)
    _, path = state.save(tmp_path / "run", keep=2, wall_time=0.0, norm_scale=1.0)
    saved = load_checkpoint(path)
    assert saved["step"] == 2 and saved["world"] == 1
    assert torch.equal(saved["sae"]["W_dec"], state.sae.W_dec.detach())
    assert torch.equal(saved["optim"]["W_dec/exp_avg"],
                       state.optimizer.state[state.sae.W_dec]["exp_avg"])
    assert saved["tracker"]["tokens_since_fire_F"].shape == (12,)


def test_slices_of_a_whole_checkpoint(tmp_path):
    """One process saves the whole tensors; any slice reads back its part."""
    W_DF = torch.arange(24.0).reshape(2, 12)
    save_state(tmp_path / "c", {"W": W_DF, "b": torch.ones(2)}, {}, {"W": 1},
               FeatureSlice.whole(12))
    for rank in range(5):  # 12 features over 5 ranks: uneven
        part = FeatureSlice.of_rank(rank, 5, 12)
        local = {"W": torch.zeros(2, part.size), "b": torch.zeros(2)}
        load_state(tmp_path / "c", local, [], {"W": 1}, part)
        assert torch.equal(local["W"], W_DF[:, part.lo:part.hi])
        assert torch.equal(local["b"], torch.ones(2))
    with pytest.raises(ValueError, match="does not hold the 3 features"):
        load_state(tmp_path / "c", {"W": torch.zeros(2, 4)}, [], {"W": 1},
                   FeatureSlice(0, 3, 12))


def test_publication_is_atomic_and_keeps_the_latest(tmp_path):
    def failing(folder: Path) -> None:
        (folder / "part").write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_checkpoint(tmp_path, 10, failing, {"step": 10}, keep=2, is_main=True)
    assert list_checkpoints(tmp_path) == []  # the unfinished folder is no checkpoint
    for step in (10, 20, 30, 30):  # the same step again replaces it
        tensors = {"w/x": torch.full((2,), float(step))}
        write_checkpoint(tmp_path, step, lambda d, t=tensors: save_state(d, t, {}, {}, None),
                         {"step": step}, keep=2, is_main=True)
    assert [p.name for _, p in list_checkpoints(tmp_path)] == ["step_000000020",
                                                               "step_000000030"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == \
        ["step_000000020", "step_000000030"]
    (tmp_path / "checkpoints" / ".step_000000040.tmp").mkdir()
    (tmp_path / "checkpoints" / ".step_000000010.old").mkdir()
    clean_partial(tmp_path)
    assert len(list((tmp_path / "checkpoints").iterdir())) == 2
    assert latest_checkpoint(tmp_path)[0] == 30


def test_old_single_file_and_foreign_folders_are_refused(tmp_path):
    cfg = _cfg(tmp_path / "run")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    save_config(cfg, tmp_path / "run" / "cfg.json")
    (tmp_path / "run" / "checkpoints" / "step_000000010.pt").write_bytes(b"old")
    with pytest.raises(UserError, match=r"single-file format .*step_000000010\.pt"):
        resume_point(cfg, Ranks())
    (tmp_path / "run" / "checkpoints" / "step_000000010.pt").unlink()
    (tmp_path / "run" / "checkpoints" / "step_000000020").mkdir()
    with pytest.raises(UserError, match=r"step_000000020 has no meta\.json"):
        resume_point(cfg, Ranks())


def test_checkpoint_of_another_run_is_refused_before_metrics_are_cut(tmp_path):
    run = tmp_path / "run"
    cfg = _cfg(run)
    run.mkdir()
    save_config(cfg, run / "cfg.json")
    (run / "metrics.jsonl").write_text(json.dumps({"split": "train", "step": 30}) + "\n")
    other, _, _ = _trained(_cfg(tmp_path / "other", seed=7), 2)
    _, path = other.save(tmp_path / "other", keep=2, wall_time=0.0, norm_scale=1.0)
    shutil.copytree(path, checkpoint_path(run, 20))
    with pytest.raises(UserError, match=r"written by another run \(seed: 7 -> 0\)"):
        resume_point(cfg, Ranks())
    assert '"step": 30' in (run / "metrics.jsonl").read_text()
