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
    assert cfg.architecture == "topk" and cfg.k == 16 and cfg.total_tokens == 2_000_000
    assert cfg.adam_betas == (0.8, 0.99) and cfg.corpus.source == "x.txt"
    assert cfg.batch_size == 4096 and cfg.l1_warmup_fraction == 0.05


@pytest.mark.parametrize("args, message", [
    (["--store", "{tmp}/missing"], "does not exist"),
    (["--store", "{tmp}", "--architecture", "topk", "--k", "100", "--n-features", "64"],
     "exceeds --n-features"),
    (["--store", "{tmp}", "--l1-coefficient", "-1"], "--l1-coefficient must be >= 0"),
    (["--store", "{tmp}", "--steps", "0"], "--steps must be >= 1"),
])
def test_cli_mistakes_exit_2_with_a_message(tmp_path, capsys, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    assert main(["train", str(tmp_path / "run"), *args]) == 2
    err = capsys.readouterr().err
    assert "monosemantic train: error:" in err and message in err
    assert "Traceback" not in err
