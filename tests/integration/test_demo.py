"""The README's main job, end to end on a tiny local model (the real default runs in the demo)."""

import json

from monosemantic.cli import main


def test_demo_runs_every_step_and_writes_the_summary(tiny_model_dir, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(40):
        (corpus / f"doc{i}.txt").write_text(f"Document {i}: the quick brown fox {i * 7} jumps. " * 6)
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--model", str(tiny_model_dir),
                 "--hook", "blocks.1.hook_resid_post", "--corpus", str(corpus),
                 "--tokens", "3000", "--n-features", "64", "--steps", "30",
                 "--batch-size", "256", "--eval-contexts", "2", "--device", "cpu"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "variance explained" in printed and "loss recovered" in printed
    summary = json.loads((out / "eval.json").read_text())
    metrics = summary["metrics"]
    for key in ("l0", "variance_explained", "dead_fraction", "dead_window_tokens",
                "silent_fraction", "silent_tokens", "loss_recovered", "kl"):
        assert key in metrics
    analysis = summary["analysis"]
    assert analysis["tokens"] > 0 and 0 <= analysis["never_fired_fraction"] <= 1
    assert "training tokens)" in printed
    assert f"never fired in the analysis ({analysis['tokens']:,} tokens)" in printed
    assert f"on the {metrics['silent_tokens']:,} held-out tokens" in printed
    assert 0 < metrics["l0"] <= 64
    assert summary["demo"]["config"]["n_features"] == 64
    assert (out / "sae" / "sae" / "sae_weights.safetensors").exists()
    assert (out / "acts" / "manifest.json").exists()
    assert (out / "demo_cfg.json").exists()
    assert (out / "sae" / "features.sqlite").exists()
    assert "analyze_s" in summary["demo"]["timings_s"]


def test_demo_rerun_reuses_finished_steps(tiny_model_dir, tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    for i in range(60):
        (corpus / f"p{i}.txt").write_text(f"Paragraph {i} about bridges and rivers. " * 5)
    args = ["demo", "--out", str(tmp_path / "d"), "--model", str(tiny_model_dir),
            "--hook", "blocks.0.hook_resid_post", "--corpus", str(corpus), "--tokens", "2000",
            "--n-features", "32", "--steps", "10", "--batch-size", "128",
            "--eval-contexts", "1", "--device", "cpu"]
    assert main(args) == 0
    weights = (tmp_path / "d" / "sae" / "sae" / "sae_weights.safetensors").read_bytes()
    assert main(args) == 0  # finished harvest and training are reused, not redone
    assert (tmp_path / "d" / "sae" / "sae" / "sae_weights.safetensors").read_bytes() == weights
