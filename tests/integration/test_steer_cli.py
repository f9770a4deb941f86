"""`monosemantic steer` and `monosemantic attribute` end to end on a tiny run folder.

The run holds a random topk SAE on a tiny Llama-family model and a minimal feature database
(only the `features` table: steering needs each feature's max activation, nothing else).
"""

from __future__ import annotations

import json
import sqlite3

import pytest
import torch

from monosemantic.cli import main
from monosemantic.featuredb.schema import DB_FILENAME, SCHEMA, SCHEMA_VERSION
from monosemantic.models import load_model
from monosemantic.sae import SAEConfig, create_sae, save_sae

HOOK = "blocks.1.hook_resid_post"
N_FEATURES = 32
PROMPT = "import numpy as np"


def write_max_acts(run, max_act_F):
    con = sqlite3.connect(run / DB_FILENAME)
    con.executescript(SCHEMA)
    con.executemany("INSERT INTO meta VALUES (?, ?)",
                    [("schema_version", json.dumps(SCHEMA_VERSION)),
                     ("n_features", json.dumps(len(max_act_F)))])
    con.executemany("INSERT INTO features VALUES (?, ?, 1, 0.1, ?)",
                    [(i, m, m / 2) for i, m in enumerate(max_act_F)])
    con.commit()
    con.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("steer_runs")
    torch.manual_seed(0)
    sae = create_sae(SAEConfig(architecture="topk", d_in=32, n_features=N_FEATURES, k=4))
    meta = {"model": str(tiny_model_dir), "hook": HOOK}
    with_db, without_db = root / "with_db", root / "without_db"
    for run in (with_db, without_db):
        save_sae(sae, run / "sae", meta)
    write_max_acts(with_db, [0.5 + 0.1 * i for i in range(N_FEATURES)])
    return with_db, without_db


def test_steer_cli(runs, tmp_path, capsys):
    run, _ = runs
    out = tmp_path / "steer.json"
    assert main(["steer", str(run), "--feature", "3=20x", "5=-2x", "--prompt", PROMPT,
                 "--max-new-tokens", "5", "--device", "cpu", "--json-out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "unsteered" in printed and "| steered" in printed
    assert "KL(clean || steered)" in printed and "neutral text" in printed
    data = json.loads(out.read_text())
    assert data["edits"] == ["3=20x", "5=-2x"] and data["mode"] == "clamp"
    assert data["kl_next_token"] > 0
    assert data["unsteered"] != data["steered"]


def test_steer_cli_add_mode_and_span(runs, tmp_path):
    run, _ = runs
    out = tmp_path / "steer.json"
    assert main(["steer", str(run), "--feature", "3=1.5", "--prompt", PROMPT, "--mode", "add",
                 "--positions", "5:6", "--max-new-tokens", "3", "--temperature", "0.7",
                 "--top-p", "0.9", "--seed", "1", "--device", "cpu",
                 "--json-out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["mode"] == "add" and data["edits"] == ["3=1.5"]
    assert data["include_special"] is False


def test_steer_cli_include_special(runs, tmp_path, capsys):
    """Only the BOS position steered: a no-op by default, a change with --include-special."""
    run, _ = runs
    out = tmp_path / "steer.json"
    args = ["steer", str(run), "--feature", "3=20x", "--prompt", PROMPT, "--positions", "0:1",
            "--max-new-tokens", "3", "--device", "cpu", "--json-out", str(out)]
    assert main(args) == 0
    assert json.loads(out.read_text())["kl_next_token"] == 0.0
    assert "special tokens steered too" not in capsys.readouterr().out
    assert main([*args, "--include-special", "true"]) == 0
    data = json.loads(out.read_text())
    assert data["include_special"] is True and data["kl_next_token"] > 0
    assert "special tokens steered too" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--feature", "99=2x"], "does not exist"),
    (["--feature", "3=500x"], "exceeds the limit"),
    (["--feature", "3=ten"], "cannot read feature edit"),
    (["--feature", "3=2x", "--positions", "5"], "START:STOP"),
])
def test_steer_cli_user_errors(runs, capsys, args, message):
    run, _ = runs
    assert main(["steer", str(run), "--prompt", PROMPT, "--device", "cpu", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_steer_cli_without_database(runs, capsys):
    _, run = runs
    assert main(["steer", str(run), "--feature", "3=2x", "--prompt", PROMPT,
                 "--device", "cpu"]) == 2
    assert "monosemantic analyze" in capsys.readouterr().err
    assert main(["steer", str(run), "--feature", "3=2.0", "--prompt", PROMPT,
                 "--max-new-tokens", "2", "--device", "cpu"]) == 0


def test_attribute_cli(runs, tmp_path, capsys, tiny_model_dir):
    run, _ = runs
    lm = load_model(str(tiny_model_dir))
    tok = lm.tokenizer
    target, baseline = " np", " a"
    assert len(tok(target, add_special_tokens=False)["input_ids"]) >= 1
    out = tmp_path / "attr.json"
    assert main(["attribute", str(run), "--prompt", PROMPT, "--target", target,
                 "--baseline", baseline, "--top", "6", "--device", "cpu",
                 "--json-out", str(out)]) == 0
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    n = data["n_active"]
    assert "logit(" in printed and f"over all {n} active pairs, each ablated" in printed
    assert "Spearman" in printed and "not taken over it" in printed
    assert data["all_pairs"]["n_ablated"] == n and data["all_pairs"]["sampled"] is False
    assert len(data["rows"]) == 6
    assert all(r["ablation_effect"] is not None for r in data["rows"])
    header = next(i for i, line in enumerate(printed.splitlines())
                  if line.strip().startswith("feature"))
    assert len(printed.splitlines()) >= header + 1 + 6
    assert main(["attribute", str(run), "--prompt", PROMPT, "--target", target, "--top", "3",
                 "--ablate", "false", "--device", "cpu", "--json-out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["baseline"] is None and data["all_pairs"] is None
    assert all(r["ablation_effect"] is None for r in data["rows"])
    assert "correlation" not in capsys.readouterr().out.lower()
    assert main(["attribute", str(run), "--prompt", PROMPT, "--target", target, "--top", "3",
                 "--max-ablations", "5", "--sample-seed", "2", "--device", "cpu",
                 "--json-out", str(out)]) == 0
    assert f"over a uniform sample of 5 of {n} active pairs (seed 2)" in capsys.readouterr().out
    data = json.loads(out.read_text())["all_pairs"]
    assert (data["n_ablated"], data["n_pairs"], data["sample_seed"]) == (5, n, 2)


def test_help_mentions_first_token(capsys):
    with pytest.raises(SystemExit):
        main(["attribute", "--help"])
    assert "first token" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit):
        main(["steer", "--help"])
    assert "max activation" in " ".join(capsys.readouterr().out.split())
