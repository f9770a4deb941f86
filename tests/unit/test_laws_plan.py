"""The compute planner reads scaling.json and moves as the fitted laws say."""

import json
import shlex

import pytest

from helpers.sweep_tables import Grid, TrueLaw, synthetic_records, write_sweep
from monosemantic import cli
from monosemantic.errors import UserError
from monosemantic.laws.plan_cli import PlanConfig, memory_command, plan
from monosemantic.laws.scaling_cli import ScalingConfig, fit_sweep, write_fit


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    out = write_sweep(tmp_path_factory.mktemp("sweep"),
                      synthetic_records(TrueLaw(), Grid(noise=0.01)))
    write_fit(out, fit_sweep(ScalingConfig(out=out, n_bootstrap=100)))
    return out


def test_plan_follows_the_laws(fitted):
    fit = json.loads((fitted / "scaling.json").read_text())["groups"][0]
    small = plan(PlanConfig(compute=1e15, fit=fitted))
    big = plan(PlanConfig(compute=1e16, fit=fitted))
    assert big["n_features"] / small["n_features"] == pytest.approx(
        10 ** fit["features"]["exponent"], rel=1e-3)
    assert big["tokens"] / small["tokens"] == pytest.approx(10 ** fit["tokens"]["exponent"],
                                                            rel=1e-3)
    # the whole budget is spent: flops = 6·d·F·tokens with d = 64
    assert 6 * 64 * big["n_features"] * big["tokens"] == pytest.approx(1e16, rel=1e-3)
    assert big["loss"] < small["loss"]
    lo, hi = big["loss_interval"]
    assert lo <= big["loss"] <= hi
    lo, hi = big["n_features_interval"]
    assert lo <= big["n_features"] <= hi
    assert big["steps"] == -(-big["tokens"] // 4096)
    assert plan(PlanConfig(compute=1e16, fit=fitted, batch_size=1024))["steps"] == (
        -(-big["tokens"] // 1024))


def test_plan_accepts_the_file_and_the_slug(fitted):
    a = plan(PlanConfig(compute=1e15, fit=fitted / "scaling.json", group="topk-k32-d64"))
    assert a["n_features"] == plan(PlanConfig(compute=1e15, fit=fitted))["n_features"]


def test_plan_without_a_fit_says_how_to_make_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="monosemantic scaling OUT"):
        plan(PlanConfig(compute=1e18))
    with pytest.raises(UserError, match="does not exist"):
        plan(PlanConfig(compute=1e18, fit=tmp_path / "nowhere"))


def test_plan_refuses_a_bad_budget(fitted):
    with pytest.raises(UserError, match="positive"):
        plan(PlanConfig(compute=-1.0, fit=fitted))


def test_plan_asks_which_group(tmp_path):
    records = (synthetic_records(TrueLaw(), Grid(noise=0.01))
               + synthetic_records(TrueLaw(), Grid(architecture="relu",
                                                   sparsity={"l1_coefficient": 5.0})))
    out = write_sweep(tmp_path, records)
    write_fit(out, fit_sweep(ScalingConfig(out=out, n_bootstrap=0)))
    with pytest.raises(UserError, match="choose one with --group"):
        plan(PlanConfig(compute=1e15, fit=out))
    relu = plan(PlanConfig(compute=1e15, fit=out, group="relu l1_coefficient=5 d=64"))
    assert "--architecture relu" in relu["plan_memory"]
    assert relu["loss_interval"] is None  # no resamples were drawn


def test_one_unfittable_group_does_not_sink_the_others(tmp_path):
    records = (synthetic_records(TrueLaw(), Grid(noise=0.01))
               + synthetic_records(TrueLaw(),
                                   Grid(architecture="relu", sparsity={}, sizes=(1024,))))
    report = fit_sweep(ScalingConfig(out=write_sweep(tmp_path, records), n_bootstrap=0))
    assert [g["group"] for g in report["groups"]] == ["topk k=32 d=64"]
    assert "single dictionary size" in report["failed"]["relu d=64"]


def test_the_memory_command_runs_as_printed(capsys):
    group = {"architecture": "batchtopk", "d_in": 64, "sparsity": {"k": 32.0}}
    line = memory_command(group, 173_894, 4096)
    assert line.endswith("--architecture topk --k 32")
    matryoshka = {"architecture": "matryoshka", "d_in": 64, "sparsity": {"k": 32.0}}
    assert memory_command(matryoshka, 173_894, 4096) == line
    assert cli.main(shlex.split(line)[1:]) == 0
    assert "173,894" in capsys.readouterr().out
