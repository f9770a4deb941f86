"""The README's main job, end to end on a tiny local model (the real default runs in the demo),
and every command it prints, run exactly as printed."""

import contextlib
import io
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import monosemantic
from monosemantic.cli import main
from monosemantic.runs import RunDir
from monosemantic.sae import load_sae

# Printed as `monosemantic COMMAND ARGS`, ended by two spaces, a backtick or the line's end.
COMMAND = re.compile(r"(monosemantic [a-z]+(?: ?[^ `\n])*)")
SUMMARY_PATHS = ("run", "activations", "SAE (SAELens dir)", "summary")


def _corpus(root: Path) -> Path:
    corpus = root / "corpus"
    corpus.mkdir()
    for i in range(40):
        text = f"Document {i}: the quick brown fox {i * 7} jumps. "
        (corpus / f"doc{i}.txt").write_text(text * 6)
    return corpus


@pytest.fixture(scope="module")
def demo(tmp_path_factory, tiny_model_dir):
    """(folder the demo ran in, its stdout): `--out runs/demo`, relative, as the default."""
    root = tmp_path_factory.mktemp("demo")
    corpus = _corpus(root)
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(root)
    try:
        with contextlib.redirect_stdout(out):
            code = main(["demo", "--out", "runs/demo", "--model", str(tiny_model_dir),
                         "--hook", "blocks.1.hook_resid_post", "--corpus", str(corpus),
                         "--tokens", "3000", "--n-features", "64", "--steps", "30",
                         "--batch-size", "256", "--eval-contexts", "2", "--device", "cpu"])
    finally:
        os.chdir(cwd)
    assert code == 0
    return root, out.getvalue()


def test_demo_runs_every_step_and_writes_the_summary(demo):
    root, printed = demo
    out = root / "runs" / "demo"
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
    # One run folder with its store: no nested run.
    assert (out / "sae" / "sae_weights.safetensors").exists()
    assert (out / "cfg.json").exists() and (out / "metrics.jsonl").exists()
    assert (out / "acts" / "manifest.json").exists()
    assert (out / "demo_cfg.json").exists()
    assert (out / "features.sqlite").exists()
    assert not (out / "sae" / "sae").exists()
    assert "analyze_s" in summary["demo"]["timings_s"]


def test_the_summary_names_files_that_exist(demo, monkeypatch):
    root, printed = demo
    monkeypatch.chdir(root)
    shown = {}
    for label in SUMMARY_PATHS:
        match = re.search(rf"^  {re.escape(label)} +(\S+)$", printed, re.M)
        assert match, f"no {label!r} line in the summary"
        shown[label] = Path(match.group(1))
    assert RunDir.open(shown["run"]).path == shown["run"]
    assert (shown["activations"] / "manifest.json").is_file()
    assert load_sae(shown["SAE (SAELens dir)"]).cfg.n_features == 64
    assert "metrics" in json.loads(shown["summary"].read_text())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, body: dict | None = None) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _serve(argv: list[str], cwd: Path) -> None:
    """Start `monosemantic serve ...` as printed (plus a free port), check that the pages and
    the model-backed endpoints answer 200, stop it."""
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(monosemantic.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "monosemantic.cli", *argv, "--port",
                             str(port), "--log-level", "warning"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        while True:  # until it answers or exits (the test run's own timeout bounds this)
            if proc.poll() is not None:
                pytest.fail(f"{' '.join(argv)} exited: {proc.stdout.read()}")
            try:
                if _request(f"{base}/api/status")[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        for page in ("/", "/search", "/inspect", "/steer", "/map", "/docs", "/feature/0"):
            assert _request(base + page)[0] == 200, page
        for api in ("/api/overview", "/api/features/0", "/api/map", "/api/search?q=fox"):
            assert _request(base + api)[0] == 200, api
        status, text = _request(f"{base}/api/inspect", {"text": "the quick brown fox", "top": 3})
        assert status == 200, text
        assert json.loads(text)["tokens"]
        status, text = _request(f"{base}/api/steer", {
            "prompt": "Document 3:", "edits": [{"feature": 0, "value": 2.0, "unit": "raw"}],
            "max_new_tokens": 3})
        assert status == 200, text
        assert "steered" in json.loads(text)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        proc.stdout.close()


def test_every_command_the_demo_prints_works_as_printed(demo, monkeypatch):
    root, printed = demo
    monkeypatch.chdir(root)
    commands = COMMAND.findall(printed)
    assert any(c.startswith("monosemantic serve ") for c in commands), printed[-2000:]
    for command in commands:
        argv = shlex.split(command)[1:]
        if argv[0] == "serve":
            _serve(argv, root)
        else:
            assert main(argv) == 0, command


def test_commands_take_the_demo_folder_or_its_sae_folder(demo, monkeypatch, capsys):
    root, _ = demo
    monkeypatch.chdir(root)
    for run in ("runs/demo", "runs/demo/sae"):
        assert main(["inspect", run, "the quick brown fox", "--device", "cpu"]) == 0
        assert main(["feature", run, "0", "--color", "never"]) == 0
        assert main(["steer", run, "--feature", "0=2", "--prompt", "Document 3:",
                     "--max-new-tokens", "2", "--device", "cpu"]) == 0
    assert "Feature 0" in capsys.readouterr().out


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
    weights = (tmp_path / "d" / "sae" / "sae_weights.safetensors").read_bytes()
    assert main(args) == 0  # finished harvest and training are reused, not redone
    assert (tmp_path / "d" / "sae" / "sae_weights.safetensors").read_bytes() == weights


def test_an_older_nested_demo_folder_is_refused_before_any_work(tmp_path, capsys):
    old = tmp_path / "demo"
    (old / "sae" / "sae").mkdir(parents=True)  # the layout before: the run OUT/sae, SAE OUT/sae/sae
    (old / "sae" / "cfg.json").write_text("{}")
    assert main(["demo", "--out", str(old), "--model", "nowhere", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "older monosemantic" in err and f"serve {old / 'sae'}" in err
    assert not (old / "acts").exists() and not (old / "demo_cfg.json").exists()


def test_a_folder_that_is_not_a_run_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["demo", "--out", str(tmp_path), "--model", "nowhere", "--device", "cpu"]) == 2
    assert "holds notes.txt" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
