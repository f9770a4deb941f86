"""A cross-layer transcoder end to end on a tiny model: harvest every layer's hook_mlp_in and
hook_mlp_out, train through the CLI, evaluate per site and with all MLPs spliced at once;
the splice plumbing against a perfect stand-in; refusals of bad input."""

from __future__ import annotations

import copy
import json
import random
import shutil

import pytest
import torch

from helpers.tiny import tiny_model, tiny_tokenizer
from monosemantic.cli import main
from monosemantic.errors import UserError
from monosemantic.runs import RunDir
from monosemantic.sae import SAEConfig
from monosemantic.train.config import TrainConfig
from monosemantic.train.trainer import train

LAYERS = (0, 1, 2)
HOOKS = [f"blocks.{layer}.hook_mlp_{kind}" for layer in LAYERS for kind in ("in", "out")]
WORDS = ("golden gate bridge san francisco sparse autoencoder feature token model layer import "
         "numpy array return value def class function the quick brown fox").split()


def _harvest(root, model_dir, hooks, seed=0):
    corpus = root / f"corpus{seed}"
    corpus.mkdir()
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(WORDS) for _ in range(12)) + f" {n}." for n in range(400)]
    (corpus / "text.txt").write_text("\n".join(lines) + "\n")
    out = root / f"acts{seed}"
    assert main(["harvest", "--model", str(model_dir), "--corpus.source", str(corpus),
                 "--corpus.txt-unit", "line", "--out", str(out), "--hooks", *hooks,
                 "--tokens", "4000", "--ctx-len", "32", "--batch-size", "8", "--dtype",
                 "float32", "--shard-rows", "1024", "--device", "cpu"]) == 0
    return out


@pytest.fixture(scope="module")
def harvest(tmp_path_factory, tiny_model_dir):
    return _harvest(tmp_path_factory.mktemp("clt"), tiny_model_dir, HOOKS)


def _train_args(store, run, *extra):
    return ["train", str(run), "--store", str(store), "--clt-layers", "0-2",
            "--n-features", "64", "--batch-size", "128", "--steps", "60", "--lr", "3e-3",
            "--holdout-fraction", "0.2", "--eval-every", "0", "--checkpoint-every", "0",
            "--log-every", "20", "--device", "cpu", *extra]


@pytest.mark.parametrize("arch", ["topk", "relu"])
def test_train_and_eval_through_the_cli(harvest, tmp_path, arch, capsys):
    run = tmp_path / f"run_{arch}"
    extra = ["--architecture", arch, "--k", "8", "--l1-coefficient", "0.5"]
    assert main(_train_args(harvest, run, *extra)) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_losses = [r["loss"] for r in records if r["split"] == "train"]
    assert train_losses[-1] < 0.6 * train_losses[0]
    final_eval = [r for r in records if r["split"] == "eval"][-1]
    # Measured on this tiny random model: about 0.7 (topk) and 0.6 (relu) after 60 steps.
    assert final_eval["variance_explained"] > 0.4

    assert RunDir.open(run / "sae").path == run  # the run's sae/ folder names its run
    clt = RunDir.open(run).load_clt()
    assert clt.layers == LAYERS and clt.n_features == 64 and clt.cfg.architecture == arch
    cfg = json.loads((run / "sae" / "cfg.json").read_text())
    assert cfg["kind"] == "cross_layer_transcoder" and cfg["layers"] == list(LAYERS)

    capsys.readouterr()
    assert main(["eval", str(run), "--n-contexts", "4", "--batch-size", "2"]) == 0
    report = json.loads((run / "eval.json").read_text())
    m = report["metrics"]
    assert report["layers"] == list(LAYERS) and set(m["per_layer"]) == {"0", "1", "2"}
    for site in m["per_layer"].values():
        assert site["variance_explained"] > 0.3 and site["l0"] > 0
    for key in ("ce_clean", "ce_spliced", "ce_zero", "loss_recovered", "kl"):
        assert m[key] == m[key] and abs(m[key]) < float("inf")
    assert "layer   2: variance explained" in capsys.readouterr().out


class _ExactMLPs(torch.nn.Module):
    """A stand-in CLT whose codes are the MLP inputs and whose own-layer decoder is the MLP
    sublayer itself (gemma3: with its post-MLP norm): splicing it in changes nothing.
    `shift` wires each layer's output to the previous layer's codes instead."""

    def __init__(self, model: torch.nn.Module, family: str, shift: bool = False):
        super().__init__()
        blocks = model.gpt_neox.layers if family == "gpt_neox" else (
            model.transformer.h if family == "gpt2" else model.model.layers)
        self.layers, self.shift = LAYERS, shift
        self.mlps = torch.nn.ModuleList(
            torch.nn.Sequential(copy.deepcopy(b.mlp), copy.deepcopy(
                b.post_feedforward_layernorm) if family == "gemma3" else torch.nn.Identity())
            for b in blocks)

    def encode(self, layer, x_SD):
        return x_SD

    def bias(self, target):
        return torch.zeros(())

    def decode_to(self, source, target, acts_SF):
        wired = target - 1 if self.shift and target > 0 else target
        return self.mlps[target](acts_SF) if source == wired else torch.zeros_like(acts_SF)


@pytest.mark.parametrize("family", ["gpt2", "gemma3"])  # gemma3: the post-MLP norm
def test_spliced_loss_with_a_perfect_stand_in_is_the_clean_loss(family):
    from monosemantic.evals.clt import clt_spliced_loss
    from monosemantic.models import LoadedModel

    tokenizer = tiny_tokenizer()
    lm = LoadedModel.from_hf(tiny_model(family, len(tokenizer)), tokenizer)
    ids_BS = tokenizer(["The quick brown fox jumps over the lazy dog. 0123456789",
                        "def add(a, b): return a + b, the golden gate bridge"],
                       return_tensors="pt", padding=True).input_ids
    exact = clt_spliced_loss(lm, _ExactMLPs(lm.model, family), [ids_BS])
    assert exact["ce_spliced"] == pytest.approx(exact["ce_clean"], abs=1e-5)
    assert exact["kl"] == pytest.approx(0.0, abs=1e-6)
    # Wired to the wrong layer's codes, the same stand-in no longer reproduces the model (the
    # random tiny models' MLPs move the logits little: KL of order 1e-5).
    wrong = clt_spliced_loss(lm, _ExactMLPs(lm.model, family, shift=True), [ids_BS])
    assert wrong["kl"] > 1e-7 and wrong["kl"] > 100 * exact["kl"]


def test_missing_hooks_are_named(harvest, tmp_path):
    cfg = TrainConfig(out=tmp_path / "run", store=harvest, clt_layers="0-3", steps=2,
                      batch_size=64, device="cpu")
    with pytest.raises(UserError, match=r"blocks\.3\.hook_mlp_in, blocks\.3\.hook_mlp_out"):
        train(cfg)


def test_stores_of_two_harvests_are_refused(harvest, tmp_path, tiny_model_dir):
    other = _harvest(tmp_path, tiny_model_dir, ["blocks.2.hook_mlp_out"], seed=1)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for hook in HOOKS:  # a one-hook harvest is the store itself
        source = other if hook == "blocks.2.hook_mlp_out" else harvest / hook
        shutil.copytree(source, mixed / hook)
    cfg = TrainConfig(out=tmp_path / "run", store=mixed, clt_layers="0-2", steps=2,
                      batch_size=64, device="cpu")
    with pytest.raises(UserError, match="not one harvest|different tokens"):
        train(cfg)


def test_hook_points_out_of_range_or_unmapped(monkeypatch):
    from monosemantic.evals.clt import clt_hook_points
    from monosemantic.models import LoadedModel
    from monosemantic.models.hook_points import HookPoint

    tokenizer = tiny_tokenizer()
    lm = LoadedModel.from_hf(tiny_model("llama", len(tokenizer)), tokenizer)
    assert [p.name for p in clt_hook_points(lm, (2,))[0]] == HOOKS[4:]
    with pytest.raises(UserError, match="layer 3 does not exist"):
        clt_hook_points(lm, (1, 3))

    def no_mlp(name):
        return HookPoint(name=name, module_path="model.layers.0.feed_forward", layer=0,
                         kind="mlp_in", width=32)

    monkeypatch.setattr(lm, "hook_point", no_mlp)
    with pytest.raises(UserError, match="llama layout maps it to 'model.layers.0.feed_forward'"):
        clt_hook_points(lm, (0,))


def test_options_that_cannot_make_a_clt(tmp_path):
    from monosemantic.config import ConfigError

    base = {"out": tmp_path / "run", "store": tmp_path, "clt_layers": "0-1"}
    for extra, message in (({"hook_in": "blocks.0.hook_mlp_in",
                             "hook_out": "blocks.0.hook_mlp_out"}, "leave --hook-in"),
                           ({"store": None, "model": "m", "hook": "h"}, "stored activations"),
                           ({"clt_layers": "1-0"}, "clt-layers")):
        with pytest.raises(ConfigError, match=message):
            train(TrainConfig(**{**base, **extra}))


def test_resume_from_a_checkpoint_matches_the_uninterrupted_run(harvest, tmp_path):
    from safetensors.torch import load_file

    from monosemantic.train.checkpoint import list_checkpoints

    def cfg(out):
        return TrainConfig(out=out, store=harvest, clt_layers="0-2", steps=40, batch_size=128,
                           lr=3e-3, holdout_fraction=0.2, eval_every=0, checkpoint_every=20,
                           log_every=20, device="cpu", seed=3,
                           sae=SAEConfig(architecture="topk", k=4, n_features=32))

    whole = train(cfg(tmp_path / "whole"))
    cut = train(cfg(tmp_path / "cut"))
    step_40 = list_checkpoints(cut)[-1][1]
    assert step_40.name.endswith("40")
    shutil.rmtree(step_40)  # as if stopped after step 20's checkpoint
    shutil.rmtree(cut / "sae")
    train(cfg(cut))
    a = load_file(str(whole / "sae" / "clt_weights.safetensors"))
    b = load_file(str(cut / "sae" / "clt_weights.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
