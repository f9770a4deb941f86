"""Trainer building blocks: schedules, dead/dense tracking, metric sums, checkpoints, config."""

from pathlib import Path

import pytest
import torch

from monosemantic.config import ConfigError, from_dict, to_dict
from monosemantic.sae import SAEConfig, sae_class
from monosemantic.train.checkpoint import latest_checkpoint, load_checkpoint, write_checkpoint
from monosemantic.train.config import TrainConfig, changed_fields, resolve, validate
from monosemantic.train.dcp import save_state
from monosemantic.train.dead import FeatureTracker
from monosemantic.train.metrics import LossSums, ReconstructionSums
from monosemantic.train.schedules import Schedule

# ---------------------------------------------------------------- schedules


def test_l1_warmup_is_linear_over_first_5_percent():
    sched = Schedule(total_steps=1000, lr=5e-5)  # warm-up: 50 steps
    assert sched.l1_scale(0) == pytest.approx(1 / 50)
    assert sched.l1_scale(24) == pytest.approx(25 / 50)
    assert sched.l1_scale(49) == pytest.approx(1.0)
    assert sched.l1_scale(50) == 1.0
    assert sched.l1_scale(999) == 1.0


def test_lr_constant_then_linear_decay_to_zero_over_last_20_percent():
    sched = Schedule(total_steps=1000, lr=1e-3)  # decay: last 200 steps
    assert sched.lr_at(0) == pytest.approx(1e-3)
    assert sched.lr_at(799) == pytest.approx(1e-3)
    assert sched.lr_at(800) == pytest.approx(1e-3)  # (1000 - 800) / 200
    assert sched.lr_at(900) == pytest.approx(0.5e-3)
    assert sched.lr_at(999) == pytest.approx(1e-3 / 200)
    lrs = [sched.lr_at(s) for s in range(800, 1000)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_lr_warmup_and_zero_fractions():
    sched = Schedule(total_steps=100, lr=1.0, l1_warmup_fraction=0.0, lr_warmup_fraction=0.1,
                     lr_decay_fraction=0.0)
    assert sched.lr_at(0) == pytest.approx(0.1)
    assert sched.lr_at(9) == pytest.approx(1.0)
    assert sched.lr_at(99) == 1.0
    assert sched.l1_scale(0) == 1.0


# ---------------------------------------------------------------- dead / dense


def test_dead_counter_resets_on_fire_and_marks_silent_features():
    tracker = FeatureTracker(n_features=3, window_tokens=10, device="cpu")
    f_fire01 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]] * 2)  # 4 tokens
    f_fire0 = torch.tensor([[0.5, 0.0, 0.0]] * 4)
    fires = tracker.update(f_fire01)
    assert fires.tolist() == [2, 2, 0]
    assert tracker.tokens_since_fire_F.tolist() == [0, 0, 4]
    tracker.update(f_fire0)
    tracker.update(f_fire0)
    assert tracker.tokens_since_fire_F.tolist() == [0, 8, 12]
    assert tracker.dead_mask().tolist() == [False, False, True]
    tracker.update(f_fire0)
    assert tracker.dead_mask().tolist() == [False, True, True]
    assert tracker.dead_fraction().item() == pytest.approx(2 / 3)
    # feature 2 fires once: alive again
    tracker.update(torch.tensor([[0.0, 0.0, 1.0]]))
    assert tracker.dead_mask().tolist() == [False, True, False]


def test_dense_fraction_uses_the_logging_window():
    tracker = FeatureTracker(n_features=4, window_tokens=100, device="cpu")
    f_BF = torch.zeros(10, 4)
    f_BF[:, 0] = 1.0          # fires on 100% of tokens
    f_BF[:2, 1] = 1.0         # 20%
    f_BF[0, 2] = 1.0          # 10%: not above the 0.1 threshold
    tracker.update(f_BF)
    assert tracker.dense_fraction(0.1).item() == pytest.approx(2 / 4)
    assert tracker.dense_fraction(0.5).item() == pytest.approx(1 / 4)
    tracker.reset_window()
    assert tracker.dense_fraction(0.1).item() == 0.0
    tracker.update(torch.zeros(5, 4))
    assert tracker.dense_fraction(0.1).item() == 0.0


def test_tracker_state_round_trip():
    a = FeatureTracker(5, 7, "cpu")
    a.update(torch.eye(5)[:3])
    b = FeatureTracker(5, 1, "cpu")
    b.load_state_dict(a.state_dict())
    assert b.window_tokens == 7
    assert torch.equal(b.tokens_since_fire_F, a.tokens_since_fire_F)
    assert b.tokens_in_window == 3
    assert b.max_silence_bound == 3  # the restored counters' maximum


def test_tracker_bound_proves_no_feature_is_dead_without_reading_the_device():
    tracker = FeatureTracker(3, window_tokens=10, device="cpu")
    tracker.update(torch.ones(4, 3))
    tracker.update(torch.ones(4, 3))
    assert not tracker.may_have_dead()  # at most 8 tokens of silence
    tracker.update(torch.ones(4, 3))
    assert tracker.may_have_dead()  # 12 >= 10 as far as the host knows
    tracker.refresh_bound()
    assert tracker.max_silence_bound == 0 and not tracker.may_have_dead()


@pytest.mark.parametrize("arch", ["topk", "relu"])
def test_dead_mask_reaches_the_sae_on_the_step_after_a_feature_dies(tmp_path, arch):
    """No log step in sight: a feature silent for the dead window is in the mask at once."""
    from monosemantic.train.state import TrainState
    from monosemantic.train.trainer import Loop

    cfg = resolve(_cfg({"architecture": arch, "n_features": 8, "k": 2}, out=tmp_path, steps=10,
                       batch_size=4, log_every=1000, dead_window_tokens=8, device="cpu"), None)
    cpu = torch.device("cpu")
    state = TrainState.create(cfg, d_in=4, device=cpu)
    with torch.no_grad():
        state.sae.b_enc[3] = -1e6  # feature 3 never fires
    loop = Loop(cfg, data=None, state=state, device=cpu)
    masks, forward = [], loop.forward

    def spy(x_BD, dead_mask_F=None, l1_scale=1.0):
        masks.append(None if dead_mask_F is None else dead_mask_F.clone())
        return forward(x_BD, dead_mask_F=dead_mask_F, l1_scale=l1_scale)

    loop.forward = spy
    x_BD = torch.randn(4, 4, generator=torch.Generator().manual_seed(0))
    for _ in range(4):
        loop.step(x_BD)
    if arch == "relu":  # no AuxK: no mask to build
        assert masks == [None] * 4
        return
    assert masks[:2] == [None, None]  # 0 and 4 tokens seen: nothing can be dead yet
    assert masks[2][3] and masks[3][3]  # silent for 8 tokens before step 2


# ---------------------------------------------------------------- metrics


def test_nmse_subtracts_the_mean():
    torch.manual_seed(0)
    x_ND = torch.randn(1000, 8) + 5.0  # large mean: dividing by E||x||^2 would look far better
    x_hat_ND = x_ND + 0.1 * torch.randn(1000, 8)
    sums = ReconstructionSums(8, "cpu")
    for x_BD, xh_BD in zip(x_ND.split(300), x_hat_ND.split(300)):
        sums.add(x_BD, xh_BD, torch.tensor(7 * x_BD.shape[0]))
    res = sums.result()
    expected = (x_ND - x_hat_ND).square().sum() / (x_ND - x_ND.mean(0)).square().sum()
    assert res["nmse"] == pytest.approx(expected.item(), rel=1e-6)
    assert res["variance_explained"] == pytest.approx(1 - expected.item(), rel=1e-6)
    assert res["l0"] == pytest.approx(7.0)
    sums.reset()
    assert sums.result() == {}


def test_loss_sums_average_parts_and_record_first_nonfinite_step():
    sums = LossSums("cpu")
    sums.add(0, torch.tensor(2.0), {"mse": torch.tensor(1.5), "l1": torch.tensor(0.5)})
    sums.add(1, torch.tensor(4.0), {"mse": torch.tensor(3.0), "l1": torch.tensor(1.0)})
    assert sums.bad_step() is None
    assert sums.result() == pytest.approx({"loss": 3.0, "loss_mse": 2.25, "loss_l1": 0.75})
    sums.add(2, torch.tensor(float("nan")), {"mse": torch.tensor(1.0), "l1": torch.tensor(0.0)})
    sums.add(3, torch.tensor(float("inf")), {"mse": torch.tensor(1.0), "l1": torch.tensor(0.0)})
    assert sums.bad_step() == 2


# ---------------------------------------------------------------- checkpoints


def test_atomic_save_and_keep_latest(tmp_path: Path):
    for step in (10, 20, 30):
        tensors = {"w/x": torch.ones(2) * step}
        write_checkpoint(tmp_path, step, lambda d, t=tensors: save_state(d, t, {}, {}, None),
                         {"step": step}, keep=2, is_main=True)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step_000000020", "step_000000030"]  # no temp folders left behind
    step, path = latest_checkpoint(tmp_path)
    state = load_checkpoint(path)
    assert step == 30 and state["step"] == 30 and state["w"]["x"].tolist() == [30.0, 30.0]


# ---------------------------------------------------------------- config


def _cfg(sae: dict | None = None, **kw) -> TrainConfig:
    base = {"out": Path("run"), "store": Path("store"), "sae": SAEConfig(**(sae or {}))}
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("sae, message", [
    ({"architecture": "topk", "k": 100, "n_features": 64}, "k = 100 must be between 1 and "
                                                           "n_features = 64"),
    ({"l1_coefficient": -1.0}, "l1_coefficient must be a finite number >= 0"),
    ({"n_features": 0}, "n_features must be a positive integer"),
])
def test_sae_options_are_checked_by_the_sae_config(sae, message):
    with pytest.raises(ConfigError, match=message):
        _cfg(sae)
    cfg = _cfg({"architecture": sae.get("architecture", "relu")})
    for name, value in sae.items():  # set after construction: `validate` still sees them
        setattr(cfg.sae, name, value)
    with pytest.raises(ConfigError, match=message):
        validate(cfg)


@pytest.mark.parametrize("kw, message", [
    ({"steps": 0}, "--steps must be >= 1"),
    ({"total_tokens": 0}, "--total-tokens must be >= 1"),
    ({"steps": 10, "total_tokens": 100}, "not both"),
    ({"store": None}, "give --store"),
    ({"model": "gpt2", "hook": "blocks.0.hook_resid_post"}, "either --store or --model"),
    ({"lr": 0.0}, "--lr must be > 0"),
    ({"holdout_fraction": 1.0}, "--holdout-fraction"),
    ({"lr_decay_fraction": 1.5}, "--lr-decay-fraction"),
    ({"batch_size": 0}, "--batch-size must be >= 1"),
    ({"adam_betas": (0.9, 1.0)}, "--adam-betas"),
])
def test_validation_names_the_option_to_change(kw, message):
    with pytest.raises(ConfigError, match=message):
        validate(_cfg(**kw))


def test_resolve_defaults_from_data():
    cfg = resolve(_cfg(batch_size=100), n_train_rows=1050, d_in=16)
    assert cfg.steps == 10 and cfg.lr == 5e-5 and cfg.sae.d_in == 16
    assert cfg.dead_window_tokens == 200  # a fifth of the 1000-token run
    cfg = resolve(_cfg({"architecture": "topk", "n_features": 2**16}, total_tokens=1001,
                       batch_size=100), None)
    assert cfg.steps == 11 and cfg.total_tokens is None and cfg.sae.d_in is None
    assert cfg.lr == pytest.approx(1e-4)  # 2e-4 / sqrt(4)
    assert sae_class("jumprelu").default_lr(SAEConfig("jumprelu", n_features=10)) == 7e-5
    with pytest.raises(ConfigError, match="fewer than one batch"):
        resolve(_cfg(batch_size=100), n_train_rows=99)
    with pytest.raises(ConfigError, match="sae.d_in = 8 but the data has width 16"):
        resolve(_cfg({"d_in": 8}, steps=1), None, d_in=16)


def test_config_round_trip_and_changed_fields():
    cfg = _cfg({"architecture": "topk", "k": 8}, steps=5, adam_betas=(0.8, 0.99))
    saved = to_dict(cfg)
    assert saved["sae"]["k"] == 8 and "k" not in saved  # the SAE's options are nested
    again = from_dict(TrainConfig, saved)
    assert again == cfg and again.adam_betas == (0.8, 0.99)
    other = _cfg({"architecture": "topk", "k": 16}, steps=5, adam_betas=(0.8, 0.99), lr=1e-3,
                 log_every=1, device="cpu")
    assert changed_fields(saved, to_dict(other)) == {"lr": (None, 1e-3), "sae.k": (8, 16)}


def test_changed_fields_reads_the_flat_layout_of_earlier_versions():
    new = to_dict(resolve(_cfg({"architecture": "topk", "n_features": 64, "k": 4}), 10**5,
                          d_in=16))
    old = {k: v for k, v in new.items() if k != "sae"}
    # Earlier versions: the SAE's options at the top level, None for the SAE's default, no d_in.
    old.update(architecture="topk", n_features=64, k=4, l1_coefficient=None, aux_k=None,
               l0_coefficient=None, jumprelu_init_threshold=None, jumprelu_bandwidth=None,
               aux_coefficient=None, decoder_init_norm=None)
    assert changed_fields(old, new) == {}
    old["k"] = 8
    assert changed_fields(old, new) == {"sae.k": (8, 4)}


def test_changed_fields_gives_sae_options_added_since_their_defaults():
    new = to_dict(resolve(_cfg({"architecture": "topk", "n_features": 64, "k": 4}), 10**5,
                          d_in=16))
    old = {**new, "sae": {k: v for k, v in new["sae"].items() if k != "matryoshka_prefixes"}}
    assert changed_fields(old, new) == {}
    new["sae"]["matryoshka_prefixes"] = [16, 64]
    assert changed_fields(old, new) == {"sae.matryoshka_prefixes": ([], [16, 64])}
