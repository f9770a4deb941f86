"""A transcoder set on a tiny 3-layer model: a harvest by hook patterns, one transcoder per
layer trained and evaluated as ordinary runs, resume, and every layer spliced in at once."""

from __future__ import annotations

import json
import random
import shlex
import shutil

import pytest
import torch

from helpers.tiny import FAMILIES, tiny_model, tiny_tokenizer
from helpers.transcoder import ExactMLP
from monosemantic.cli import main
from monosemantic.errors import UserError
from monosemantic.transcoders.config import TranscoderSetConfig
from monosemantic.transcoders.run import run_transcoders

WORDS = ("golden gate bridge san francisco sparse autoencoder feature token model layer import "
         "numpy array return value def class function the quick brown fox").split()


def _harvest(root, model_dir, out, *hooks):
    corpus = root / "corpus"
    if not corpus.is_dir():
        corpus.mkdir()
        rng = random.Random(0)
        lines = [" ".join(rng.choice(WORDS) for _ in range(12)) + f" {n}." for n in range(400)]
        (corpus / "text.txt").write_text("\n".join(lines) + "\n")
    assert main(["harvest", "--model", str(model_dir), "--corpus.source", str(corpus),
                 "--corpus.txt-unit", "line", "--out", str(out), "--hooks", *hooks,
                 "--tokens", "3000", "--ctx-len", "32", "--batch-size", "8", "--dtype",
                 "float32", "--shard-rows", "1024", "--device", "cpu"]) == 0
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("tcset")
    return _harvest(root, tiny_model_dir, root / "acts", "blocks.*.hook_mlp_in",
                    "blocks.*.hook_mlp_out")


def _set_args(store, out, *extra):
    return ["transcoders", str(out), "--store", str(store), "--n-features", "64", "--k", "4",
            "--steps", "15", "--batch-size", "128", "--holdout-fraction", "0.2", "--lr", "3e-3",
            "--eval-every", "0", "--log-every", "5", "--loss-contexts", "2", "--device", "cpu",
            *extra]


def test_the_harvest_pattern_expands_to_every_layer(store):
    assert sorted(p.name for p in store.iterdir() if p.is_dir()) == sorted(
        f"blocks.{layer}.hook_mlp_{site}" for layer in range(3) for site in ("in", "out"))


def test_a_set_end_to_end_with_resume(store, tmp_path, capsys):
    out = tmp_path / "set"
    assert main(_set_args(store, out)) == 0
    layout = json.loads((out / "transcoders.json").read_text())
    assert layout["version"] == 1 and layout["model"] == json.loads(
        (store / "blocks.0.hook_mlp_in" / "manifest.json").read_text())["model"]
    assert layout["layers"] == {"0": "layer_00", "1": "layer_01", "2": "layer_02"}
    for layer in range(3):
        cfg = json.loads((out / f"layer_0{layer}" / "cfg.json").read_text())
        assert (cfg["hook_in"], cfg["hook_out"]) == (f"blocks.{layer}.hook_mlp_in",
                                                     f"blocks.{layer}.hook_mlp_out")
    report = json.loads((out / "transcoders_eval.json").read_text())
    assert set(report["per_layer"]) == {"0", "1", "2"}
    alone = report["per_layer"]["1"]
    assert alone["variance_explained"] is not None and alone["l0"] <= 4 + 1e-6
    everything = report["all_replaced"]
    # Zeroing three MLP outputs and splicing three imperfect transcoders both move the loss.
    assert everything["ce_zero"] != pytest.approx(everything["ce_clean"], abs=1e-4)
    assert everything["kl"] > 0
    # Each layer alone and all at once are scored on the same fresh contexts.
    assert everything["ce_clean"] == pytest.approx(alone["ce_clean"], rel=1e-6)
    printed = capsys.readouterr().out
    assert "all 3 transcoders spliced in at once" in printed and "next: monosemantic" in printed
    # The printed graph command runs as printed.
    graph_line = next(line for line in printed.splitlines()
                      if line.startswith("next: monosemantic graph"))
    assert main(shlex.split(graph_line.removeprefix("next: monosemantic ").split("   (")[0])) == 0
    assert (out / "graphs").is_dir()
    capsys.readouterr()

    # A finished layer is skipped; one interrupted before its SAE was saved is resumed (from
    # its checkpoint) and evaluated.
    kept = (out / "layer_00" / "sae" / "sae_weights.safetensors").stat().st_mtime_ns
    shutil.rmtree(out / "layer_01" / "sae")
    (out / "layer_01" / "eval.json").unlink()
    assert main(_set_args(store, out)) == 0
    printed = capsys.readouterr().out
    assert "2 already finished" in printed and "layer 1: training" in printed
    assert "layer 0: training" not in printed
    assert (out / "layer_00" / "sae" / "sae_weights.safetensors").stat().st_mtime_ns == kept
    assert (out / "layer_01" / "sae").is_dir() and (out / "layer_01" / "eval.json").is_file()
    again = json.loads((out / "transcoders_eval.json").read_text())["all_replaced"]
    assert main(_set_args(store, out)) == 0
    assert "3 already finished" in capsys.readouterr().out
    assert json.loads((out / "transcoders_eval.json").read_text())["all_replaced"] == again
    # Other training options on the same folder are refused.
    with pytest.raises(UserError, match="other options.*n_features"):
        run_transcoders(TranscoderSetConfig(out=out, store=store, n_features="128"))


def test_a_store_lacking_a_layer_names_the_hook_and_the_harvest(tmp_path, tiny_model_dir):
    partial = _harvest(tmp_path, tiny_model_dir, tmp_path / "acts01", "blocks.0-1.hook_mlp_in",
                       "blocks.0-1.hook_mlp_out")
    with pytest.raises(UserError) as err:
        run_transcoders(TranscoderSetConfig(out=tmp_path / "set", store=partial, layers="all"))
    message = str(err.value)
    assert "blocks.2.hook_mlp_in, blocks.2.hook_mlp_out" in message
    assert "monosemantic harvest --model" in message and "'blocks.*.hook_mlp_in'" in message
    assert not (tmp_path / "set").exists()


@pytest.mark.parametrize("family", FAMILIES)
def test_all_replaced_by_perfect_stand_ins_is_the_clean_loss(family):
    """Every MLP sublayer replaced by an exact copy changes nothing. With layer 0's copy off
    by a factor, the others must read their input from that same (edited) forward: the loss
    equals editing layer 0 alone."""
    from monosemantic.evals.spliced import Splice, spliced_loss_all
    from monosemantic.models import LoadedModel, edit

    tokenizer = tiny_tokenizer()
    lm = LoadedModel.from_hf(tiny_model(family, len(tokenizer)), tokenizer)
    ids_BS = tokenizer(["The quick brown fox jumps over the lazy dog. 0123456789",
                        "def add(a, b): return a + b, the golden gate bridge"],
                       return_tensors="pt", padding=True).input_ids

    def splices(scale0: float) -> list[Splice]:
        out = []
        for layer in range(lm.n_layers):
            block = lm.model.get_submodule(
                lm.hook_point(f"blocks.{layer}.hook_resid_post").module_path)
            out.append(Splice(ExactMLP(block, family, scale0 if layer == 0 else 1.0),
                              f"blocks.{layer}.hook_mlp_out", f"blocks.{layer}.hook_mlp_in"))
        return out

    exact = spliced_loss_all(lm, splices(1.0), [ids_BS])
    assert exact["ce_spliced"] == pytest.approx(exact["ce_clean"], abs=1e-5)
    assert exact["kl"] == pytest.approx(0.0, abs=1e-6)
    assert exact["ce_zero"] != pytest.approx(exact["ce_clean"], abs=1e-4)

    off = spliced_loss_all(lm, splices(3.0), [ids_BS])
    assert off["kl"] > 1e-4
    keep = torch.tensor([tokenizer.pad_token_id, tokenizer.bos_token_id])
    mask_BS = ~torch.isin(ids_BS, keep)
    with torch.no_grad(), edit(lm, {"blocks.0.hook_mlp_out": lambda a: torch.where(
            mask_BS.unsqueeze(-1), 3.0 * a, a)}):
        logits_BSV = lm.model(input_ids=ids_BS).logits
    from monosemantic.evals.loss import ce_and_kl, next_token_targets

    targets_BS, score_BS = next_token_targets(ids_BS, mask_BS)
    score_BS[:, :-1] &= mask_BS[:, 1:]
    ce_BS, _, _ = ce_and_kl(logits_BSV, None, targets_BS)
    assert off["ce_spliced"] == pytest.approx(float(ce_BS[score_BS].mean()), abs=1e-5)
