"""`monosemantic train` on the command line: options come from TrainConfig, mistakes exit 2."""

import pytest

from monosemantic.cli import build_parser, main
from monosemantic.config import dataclass_from_namespace
from monosemantic.train.config import TrainConfig


def test_cli_builds_the_config(tmp_path):
    ns = build_parser("train").parse_args(
        ["train", str(tmp_path / "run"), "--store", "acts", "--architecture", "topk", "--k", "16",
         "--total-tokens", "2M", "--adam-betas", "0.8", "0.99", "--corpus.source", "x.txt"])
    cfg = dataclass_from_namespace(TrainConfig, ns)
    assert cfg.sae.architecture == "topk" and cfg.sae.k == 16 and cfg.total_tokens == 2_000_000
    assert cfg.adam_betas == (0.8, 0.99) and cfg.corpus.source == "x.txt"
    assert cfg.batch_size == 4096 and cfg.l1_warmup_fraction == 0.05
    assert cfg.sae.n_features == 16384 and cfg.sae.apply_b_dec_to_input is True  # topk's


def test_sae_options_have_a_nested_and_a_short_spelling(tmp_path):
    parser = build_parser("train")
    short = parser.parse_args(["train", "r", "--architecture", "batchtopk", "--n-features", "64",
                               "--k", "8", "--aux-k", "4"])
    nested = parser.parse_args(["train", "r", "--sae.architecture", "batchtopk",
                                "--sae.n-features", "64", "--sae.k", "8", "--sae.aux-k", "4"])
    cfg = dataclass_from_namespace(TrainConfig, short)
    assert cfg == dataclass_from_namespace(TrainConfig, nested)
    assert (cfg.sae.architecture, cfg.sae.n_features, cfg.sae.k, cfg.sae.aux_k) == \
        ("batchtopk", 64, 8, 4)
    with pytest.raises(SystemExit):  # d_in comes from the data, not the command line
        parser.parse_args(["train", "r", "--sae.d-in", "8"])


def test_help_shows_the_sae_options_with_their_docstrings(capsys):
    with pytest.raises(SystemExit):
        build_parser("train").parse_args(["train", "--help"])
    out = capsys.readouterr().out
    assert "--sae.k K, --k K" in out and "Active features per token" in out
    assert "--sae.l1-coefficient L1_COEFFICIENT, --l1-coefficient L1_COEFFICIENT" in out
    assert "{relu,topk,batchtopk,jumprelu,matryoshka}" in out and "d-in" not in out


@pytest.mark.parametrize("args, message", [
    (["--store", "{tmp}/missing"], "does not exist"),
    (["--store", "{tmp}", "--architecture", "topk", "--k", "100", "--n-features", "64"],
     "k = 100 must be between 1 and n_features = 64"),
    (["--store", "{tmp}", "--sae.l1-coefficient", "-1"], "l1_coefficient must be a finite"),
    (["--store", "{tmp}", "--steps", "0"], "--steps must be >= 1"),
])
def test_cli_mistakes_exit_2_with_a_message(tmp_path, capsys, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    assert main(["train", str(tmp_path / "run"), *args]) == 2
    err = capsys.readouterr().err
    assert "monosemantic train: error:" in err and message in err
    assert "Traceback" not in err
