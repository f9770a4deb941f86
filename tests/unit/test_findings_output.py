"""The commands the findings print reproduce their configs."""

import shlex
from pathlib import Path

from monosemantic.cli import build_parser
from monosemantic.config import dataclass_from_namespace
from monosemantic.findings.dead import DeadConfig, DeadOptions
from monosemantic.findings.holdout import HoldoutOptions
from monosemantic.findings.output import command_line
from monosemantic.findings.pairs import MatchOptions
from monosemantic.findings.report import FindingsConfig
from monosemantic.findings.splitting import SplittingConfig, TreeOptions


def _round_trip(command: str, cfg):
    argv = shlex.split(command_line(command, cfg))[1:]
    ns = build_parser(command).parse_args(argv)
    return dataclass_from_namespace(type(cfg), ns)


def test_dead_command_line_round_trips():
    cfg = DeadConfig(Path("runs/my sweep"), HoldoutOptions(n_tokens=30_000, device="cpu"),
                     DeadOptions(rare_threshold=1e-3, select="all"))
    assert _round_trip("findings dead", cfg) == cfg
    assert command_line("findings dead", DeadConfig(Path("x"))) == "monosemantic findings dead x"


def test_splitting_and_all_command_lines_round_trip():
    cfg = SplittingConfig(Path("out"), HoldoutOptions(store=Path("/a/acts")),
                          MatchOptions(pairs="all", child_threshold=0.4, max_dense_pairs=0),
                          TreeOptions(family_by="activation", max_html_trees=5))
    assert _round_trip("findings splitting", cfg) == cfg
    every = FindingsConfig(Path("out"), docs=Path("docs/findings.md"), note="2 shared cores",
                           match=MatchOptions(persist_threshold=0.9))
    assert _round_trip("findings all", every) == every
