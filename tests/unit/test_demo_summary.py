"""The demo's closing summary: every dead figure names the tokens it covers."""

from monosemantic.demo import summary
from monosemantic.runs import RunDir

RESULT = {
    "metrics": {"l0": 32.0, "variance_explained": 0.97, "dead_fraction": 0.043,
                "dead_window_tokens": 122_880, "silent_fraction": 0.294, "silent_tokens": 6000,
                "loss_recovered": 0.98, "kl": 0.4},
    "analysis": {"tokens": 100_000, "n_never_fired": 414, "never_fired_fraction": 0.101},
}


def test_summary_gives_each_dead_figure_its_window():
    lines = summary(RESULT, RunDir("runs/demo"), {"train_s": 60.0}).splitlines()
    dead = [i for i, line in enumerate(lines) if line.startswith("  dead features")]
    assert len(dead) == 1
    assert lines[dead[0]].endswith("4.3% (no activation in the last 122,880 training tokens)")
    assert lines[dead[0] + 1].strip() == "10.1% never fired in the analysis (100,000 tokens)"
    silent = lines[dead[0] + 2]
    assert silent.startswith("  silent features") and "29.4% on the 6,000 held-out tokens" in silent


def test_summary_without_analysis_or_trainer_window():
    result = {"metrics": {k: v for k, v in RESULT["metrics"].items()
                          if not k.startswith("dead")}}
    text = summary(result, RunDir("runs/demo"), {"train_s": 60.0})
    assert "dead" not in text.replace("not dead", "")
    assert "29.4% on the 6,000 held-out tokens" in text
