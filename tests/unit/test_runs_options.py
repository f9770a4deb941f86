"""`ModelOptions`: one nested options dataclass behind `--model`, `--hook`, `--hook-out` of every
command that opens a run; the flags, the nested key of the saved config, and opening."""

from __future__ import annotations

import pytest
from test_activations_store import HEADER
from test_runs import make_run

from monosemantic.cli import build_parser
from monosemantic.config import dataclass_from_namespace, from_dict, to_dict
from monosemantic.errors import UserError
from monosemantic.runs import ModelOptions, RunDir

# Each command's required arguments besides RUN.
COMMANDS = {
    ("monosemantic.analysis.run", "AnalyzeConfig"): ("analyze", []),
    ("monosemantic.evals.report", "EvalConfig"): ("eval", []),
    ("monosemantic.steer.commands", "SteerConfig"): (
        "steer", ["--feature", "1=2x", "--prompt", "p"]),
    ("monosemantic.steer.commands", "AttributeConfig"): (
        "attribute", ["--prompt", "p", "--target", " t"]),
    ("monosemantic.web.server", "ServeConfig"): ("serve", []),
}
SHORT = ["--model", "m", "--hook", "blocks.1.hook_mlp_in", "--hook-out", "blocks.1.hook_mlp_out"]
LONG = ["--model-options.model", "m", "--model-options.hook", "blocks.1.hook_mlp_in",
        "--model-options.hook-out", "blocks.1.hook_mlp_out"]
EXPECTED = ModelOptions("m", "blocks.1.hook_mlp_in", "blocks.1.hook_mlp_out")


def _config_class(module: str, name: str) -> type:
    import importlib

    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("where", sorted(COMMANDS))
@pytest.mark.parametrize("flags", [SHORT, LONG], ids=["short", "long"])
def test_every_command_nests_the_same_flags(where, flags):
    command, required = COMMANDS[where]
    cls = _config_class(*where)
    ns = build_parser(command).parse_args([command, "RUN", *required, *flags])
    cfg = dataclass_from_namespace(cls, ns)
    assert cfg.model_options == EXPECTED
    saved = to_dict(cfg)
    assert saved["model_options"] == {"model": "m", "hook": "blocks.1.hook_mlp_in",
                                      "hook_out": "blocks.1.hook_mlp_out"}
    assert not {"model", "hook", "hook_out"} & set(saved)
    assert from_dict(cls, saved).model_options == EXPECTED


@pytest.mark.parametrize("where", sorted(COMMANDS))
def test_without_the_flags_nothing_is_overridden(where):
    command, required = COMMANDS[where]
    ns = build_parser(command).parse_args([command, "RUN", *required])
    assert dataclass_from_namespace(_config_class(*where), ns).model_options == ModelOptions()


def test_open_and_find_pass_the_options_to_rundir(tmp_path):
    run = make_run(tmp_path / "run")
    assert ModelOptions().open(run.path / "sae") == run
    assert ModelOptions(hook=HEADER["hook"]).open(run.path) == run
    assert ModelOptions().find(tmp_path / "run") == RunDir.find(tmp_path / "run")
    with pytest.raises(UserError, match="--hook is for a pretrained SAE folder"):
        ModelOptions(hook="blocks.0.hook_other").open(run.path)
    with pytest.raises(UserError, match="--hook-out is for a pretrained transcoder"):
        ModelOptions(hook_out="blocks.0.hook_mlp_out").open(run.path)
