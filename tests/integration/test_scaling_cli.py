"""`monosemantic scaling OUT` then `monosemantic plan`, end to end through the CLI."""

import json
import shlex

from helpers.sweep_tables import Grid, TrueLaw, synthetic_records, write_sweep
from monosemantic import cli


def test_scaling_writes_the_fit_figures_and_page_and_plan_reads_them(tmp_path, capsys):
    lrs = (1e-3, 3e-3, 1e-2)
    out = write_sweep(tmp_path / "sweep",
                      synthetic_records(TrueLaw(), Grid(lrs=lrs, noise=0.01,
                                                        lr_law=(1e-1, -0.1))))
    assert cli.main(["scaling", str(out), "--n-bootstrap", "60", "--seed", "3"]) == 0
    printed = capsys.readouterr().out

    report = json.loads((out / "scaling.json").read_text())
    (group,) = report["groups"]
    assert group["bootstrap"]["seed"] == 3 and group["bootstrap"]["requested"] == 60
    assert group["metric"] == "train_loss" and group["method"] == "parametric"
    assert {"loss", "features", "tokens", "parametric", "lr"} <= set(group)
    assert "exponent" in group["lr"]
    png = out / "scaling-topk-k32-d64.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "scaling.html").read_text()
    assert "data:image/png;base64," in page and "topk k=32 d=64" in page
    assert "Scaling Monosemanticity" in printed
    assert "optimal features" in printed and "optimal lr" in printed

    (next_line,) = [ln for ln in printed.splitlines() if ln.startswith("next: ")]
    argv = shlex.split(next_line.removeprefix("next: "))
    assert argv[:2] == ["monosemantic", "plan"]
    assert cli.main(argv[1:]) == 0
    planned = capsys.readouterr().out
    assert "n_features" in planned and "predicted loss" in planned and "lr" in planned
    assert "memory per GPU: monosemantic plan-memory --d-in 64" in planned


def test_scaling_errors_reach_the_user_without_a_traceback(tmp_path, capsys):
    out = write_sweep(tmp_path / "thin",
                      synthetic_records(TrueLaw(), Grid(sizes=(1024,))))
    assert cli.main(["scaling", str(out), "--n-bootstrap", "0"]) == 2
    err = capsys.readouterr().err
    assert "single dictionary size" in err and "Traceback" not in err
    assert not (out / "scaling.json").exists()
    assert cli.main(["plan", "--compute", "1e18", "--fit", str(out)]) == 2
    assert "monosemantic scaling" in capsys.readouterr().err
