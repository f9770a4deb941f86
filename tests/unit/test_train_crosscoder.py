"""Training a crosscoder from aligned stores (a multi-hook harvest, or one store per model),
its refusals, and `crosscoder-eval` on synthetic stores."""

from __future__ import annotations

import json

import pytest
import torch

from helpers.crosscoder import planted_acts, write_harvest, write_site_store
from monosemantic.cli import main
from monosemantic.config import ConfigError
from monosemantic.errors import UserError
from monosemantic.runs import RunDir
from monosemantic.sae.crosscoder import load_crosscoder
from monosemantic.train.config import TrainConfig
from monosemantic.train.trainer import train

HOOKS = ("blocks.0.hook_resid_post", "blocks.1.hook_resid_post")
WIDTHS = (8, 12)


@pytest.fixture(scope="module")
def harvest(tmp_path_factory):
    return write_harvest(tmp_path_factory.mktemp("xc") / "acts", HOOKS, WIDTHS, n_rows=2048)


def _args(run, *data, arch="topk", steps=60):
    return ["train", str(run), *data, "--architecture", arch, "--n-features", "32", "--k", "4",
            "--batch-size", "128", "--steps", str(steps), "--lr", "3e-3", "--log-every", "10",
            "--eval-every", "0", "--checkpoint-every", "0", "--holdout-fraction", "0.1",
            "--device", "cpu", "--l1-coefficient", "0.5"]


def _train_losses(run):
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["split"] == "train"], records


@pytest.mark.parametrize("arch", ["topk", "relu", "matryoshka"])
def test_training_on_a_harvest_reduces_the_loss(harvest, tmp_path, arch):
    run = tmp_path / arch
    assert main(_args(run, "--store", str(harvest), "--crosscoder", *HOOKS, arch=arch)) == 0
    train_recs, records = _train_losses(run)
    assert train_recs[-1]["loss_mse"] < 0.5 * train_recs[0]["loss_mse"]
    assert {"loss_mse_site0", "loss_mse_site1"} <= set(train_recs[-1])
    final_eval = [r for r in records if r["split"] == "eval"][-1]
    mse_sites = final_eval["mse_site0"] + final_eval["mse_site1"]
    assert mse_sites == pytest.approx(final_eval["mse"], rel=1e-6)  # Σ_s MSE_s
    cfg = json.loads((run / "cfg.json").read_text())
    assert cfg["crosscoder"] == list(HOOKS) and cfg["sae"]["site_widths"] == list(WIDTHS)
    xc = load_crosscoder(run)
    assert [s.hook for s in xc.sites] == list(HOOKS) and xc.sae.cfg.d_in == sum(WIDTHS)
    # One scale per site (planted_acts doubles site 1: s_0/s_1 ≈ 2·sqrt(8/12) ≈ 1.6).
    assert xc.sites[0].norm_scale > 1.3 * xc.sites[1].norm_scale

    assert main(["crosscoder-eval", str(run), "--n-contexts", "0", "--device", "cpu"]) == 0
    report = json.loads((run / "crosscoder_eval.json").read_text())
    per_site = report["reconstruction"]["sites"]
    assert list(per_site) == [f"tiny:{h}" for h in HOOKS]
    for s, metrics in enumerate(per_site.values()):
        assert metrics["variance_explained"] > 0.5
        # The saved (raw-scale) crosscoder on the trainer's held-out rows (normalised scale):
        # the per-site fold of the scales leaves the per-site figure unchanged.
        want = final_eval[f"variance_explained_site{s}"]
        assert metrics["variance_explained"] == pytest.approx(want, abs=1e-4)
    assert report["reconstruction"]["l0"] == pytest.approx(final_eval["l0"], rel=1e-3)
    diff = json.loads((run / "crosscoder_diff.json").read_text())
    assert diff["a_only"] + diff["b_only"] + diff["shared"] + diff["zero"] == 32
    assert len(diff["relative_norm"]) == 32 and diff["cosine"] is None  # widths differ


def test_two_stores_of_two_models_train_and_diff(tmp_path):
    acts = planted_acts(1024, (8, 8), seed=1)
    stores = [write_site_store(tmp_path / name, a, HOOKS[1], name)
              for name, a in zip(("model_a", "model_b"), acts)]
    run = tmp_path / "run"
    args = _args(run, "--stores", *map(str, stores), steps=20)
    assert main(args) == 0
    report_args = ["crosscoder-eval", str(run), "--n-contexts", "10", "--device", "cpu"]
    assert main(report_args) == 0  # two models: the spliced loss is skipped, not attempted
    report = json.loads((run / "crosscoder_eval.json").read_text())
    assert "spliced" not in report and "different models" in report["spliced_skipped"]
    diff = json.loads((run / "crosscoder_diff.json").read_text())
    assert diff["site_a"] == f"model_a:{HOOKS[1]}" and len(diff["cosine"]) == 32


def test_stores_with_different_tokens_are_refused_naming_the_row(tmp_path):
    acts = planted_acts(600, (8, 8))
    tokens_N = torch.arange(600) % 97
    tokens_N[345] += 1
    a = write_site_store(tmp_path / "a", acts[0], HOOKS[0], "A")
    b = write_site_store(tmp_path / "b", acts[1], HOOKS[0], "B", tokens_N=tokens_N)
    cfg = TrainConfig(out=tmp_path / "run", stores=(a, b), batch_size=64, steps=2,
                      device="cpu")
    with pytest.raises(UserError, match=r"differ at row 345: token 54 vs 55"):
        train(cfg)
    assert not (tmp_path / "run" / "sae").exists()


def test_bad_inputs_are_refused(harvest, tmp_path):
    with pytest.raises(UserError, match="holds no store of blocks.5.hook_resid_post"):
        train(TrainConfig(out=tmp_path / "r1", store=harvest, crosscoder=(HOOKS[0],
                          "blocks.5.hook_resid_post"), batch_size=64, steps=2, device="cpu"))
    with pytest.raises(ConfigError, match="at least two sites"):
        train(TrainConfig(out=tmp_path / "r2", store=harvest, crosscoder=(HOOKS[0],),
                          device="cpu"))
    with pytest.raises(ConfigError, match="not both"):
        train(TrainConfig(out=tmp_path / "r3", store=harvest, crosscoder=HOOKS,
                          stores=(harvest / HOOKS[0], harvest / HOOKS[1]), device="cpu"))
    with pytest.raises(UserError, match="is a harvest of several hooks"):
        train(TrainConfig(out=tmp_path / "r5", stores=(harvest, harvest / HOOKS[0]),
                          batch_size=64, steps=2, device="cpu"))
    short = write_site_store(tmp_path / "short", planted_acts(500, (8,))[0], HOOKS[0], "tiny")
    with pytest.raises(UserError, match="has 2,048 rows"):
        train(TrainConfig(out=tmp_path / "r4", stores=(harvest / HOOKS[0], short),
                          batch_size=64, steps=2, device="cpu"))


def test_eval_refuses_a_store_of_another_width(harvest, tmp_path):
    from monosemantic.evals.crosscoder import CrosscoderEvalConfig, run_crosscoder_eval

    run = tmp_path / "run"
    assert main(_args(run, "--store", str(harvest), "--crosscoder", *HOOKS, steps=5)) == 0
    with pytest.raises(UserError, match="crosscoder-eval"):
        RunDir.open(run / "sae")
    with pytest.raises(UserError, match="has width 12 but site"):
        run_crosscoder_eval(CrosscoderEvalConfig(
            run=run, stores=(harvest / HOOKS[1], harvest / HOOKS[1]), n_contexts=0,
            device="cpu"))
    with pytest.raises(UserError, match="--rows must look like"):
        run_crosscoder_eval(CrosscoderEvalConfig(run=run, rows="12", n_contexts=0,
                                                 device="cpu"))
    report = run_crosscoder_eval(CrosscoderEvalConfig(run=run, rows="0:100", n_contexts=0,
                                                      device="cpu"))
    assert report["rows"] == [0, 100] and report["reconstruction"]["rows"] == 100


def test_a_crashed_run_resumes_to_the_same_crosscoder(harvest, tmp_path):
    from monosemantic.sae import SAEConfig
    from monosemantic.train.sites import SiteData

    def cfg(out):
        return TrainConfig(out=out, store=harvest, crosscoder=HOOKS, batch_size=64, steps=20,
                           lr=3e-3, checkpoint_every=10, log_every=5, eval_every=0,
                           device="cpu", sae=SAEConfig(architecture="relu", n_features=16,
                                                       l1_coefficient=0.5))

    class Crashing(SiteData):
        def train_batches(self, start_step):
            for step, batch in enumerate(super().train_batches(start_step), start_step):
                if step == 15:
                    raise RuntimeError("simulated crash")
                yield batch

    train(cfg(tmp_path / "whole"))
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg(tmp_path / "resumed"), data=Crashing(cfg(tmp_path / "resumed")))
    assert not (tmp_path / "resumed" / "sae").exists()
    train(cfg(tmp_path / "resumed"))  # from the step-10 checkpoint
    whole, resumed = load_crosscoder(tmp_path / "whole"), load_crosscoder(tmp_path / "resumed")
    assert resumed.sites == whole.sites
    for name, t in whole.sae.inference_state().items():
        assert torch.equal(resumed.sae.inference_state()[name], t), name


def test_three_layers_report_decoder_shares_and_no_diff(tmp_path):
    hooks = tuple(f"blocks.{i}.hook_resid_post" for i in (2, 4, 6))
    acts = write_harvest(tmp_path / "acts", hooks, (8, 8, 8), n_rows=1024)
    run = tmp_path / "run"
    assert main(_args(run, "--store", str(acts), "--crosscoder", *hooks, steps=10)) == 0
    assert main(["crosscoder-eval", str(run), "--n-contexts", "0", "--device", "cpu"]) == 0
    report = json.loads((run / "crosscoder_eval.json").read_text())
    shares = report["decoder_shares"]
    assert list(shares["only"]) == [f"tiny:{h}" for h in hooks]
    assert sum(shares["features_by_sites_used"].values()) + shares["zero"] == 32
    assert sum(shares["mean_share"].values()) == pytest.approx(1.0)
    assert "diff" not in report and not (run / "crosscoder_diff.json").exists()
