"""The chain a user follows: `sweep` prints the `scaling` command, which prints the `plan`
command; each printed line is run exactly as printed and does what it says."""

import json
import shlex
from pathlib import Path

import pytest

from helpers.train_data import sparse_activations, write_store
from monosemantic.cli import main


def _next_command(output: str) -> list[str]:
    lines = [line for line in output.splitlines() if line.startswith("next: monosemantic ")]
    assert len(lines) == 1, output[-2000:]
    return shlex.split(lines[0].removeprefix("next: monosemantic "))


def test_sweep_then_scaling_then_plan_as_printed(tmp_path, capsys):
    x_ND = sparse_activations(n_rows=8000, d=16, n_true=64, active=3, seed=3)[0] * 30.0
    store = write_store(tmp_path / "acts", x_ND)
    out = tmp_path / "sweep"
    # 3 sizes × 3 budgets: the least the parametric fit accepts.
    assert main(["sweep", str(out), "--store", str(store), "--n-features", "16", "32", "64",
                 "--tokens", "1280", "2560", "5120", "--architecture", "topk", "--k", "4",
                 "--batch-size", "128", "--device", "cpu", "--log-every", "5",
                 "--eval-every", "0", "--loss-recovered", "false"]) == 0
    scaling = _next_command(capsys.readouterr().out)
    assert scaling[0] == "scaling"
    assert main(scaling) == 0
    fitted = json.loads((out / "scaling.json").read_text())
    assert (out / "scaling.html").is_file()
    plan = _next_command(capsys.readouterr().out)
    assert plan[0] == "plan" and Path(plan[plan.index("--fit") + 1]) == out
    assert main(plan) == 0
    answer = capsys.readouterr().out
    values = {line.split()[0]: line.split()[1] for line in answer.splitlines()[1:]
              if line.startswith("  ") and len(line.split()) > 1}
    n_feat, tokens = int(values["n_features"]), int(values["tokens"].replace(",", ""))
    # The recommendation spends the planned budget under the sweep's own FLOPs formula.
    budget = float(plan[plan.index("--compute") + 1])
    assert 12 * 16 * n_feat * tokens == pytest.approx(budget, rel=0.05)
    assert len(fitted["groups"]) == 1 and not fitted["failed"]
    with pytest.raises(SystemExit):  # the planner's own --help works as documented
        main(["plan", "--help"])
