"""A tiny but complete run for the browser tests: harvest -> train -> eval -> analyze on a tiny
random model, then a copy whose database also holds explanations, scores and map coordinates
(what the interp and map passes add)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import torch

from monosemantic.cli import main

HOOK = "blocks.1.hook_resid_post"
N_FEATURES = 64
WORDS = ["golden", "gate", "bridge", "san", "francisco", "sparse", "autoencoder", "feature",
         "token", "model", "import", "numpy", "return", "value", "def", "class", "the", "fox"]
EXPLAINED = {3: "commas inside Python function signatures",
             7: "the Golden Gate Bridge and other bridges",
             11: "numbers written as digits"}


def build_tiny_run(root: Path, model_dir: Path) -> Path:
    """The training run directory (RUN with sae/, metrics.jsonl, eval.json, features.sqlite)."""
    corpus = root / "corpus"
    corpus.mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    lines = [" ".join(WORDS[int(i)] for i in torch.randint(0, len(WORDS), (12,), generator=gen))
             for _ in range(300)]
    (corpus / "text.txt").write_text("\n".join(lines) + "\n")
    run = root / "run"
    steps = [["harvest", "--out", str(root / "acts"), "--model", str(model_dir), "--hooks", HOOK,
              "--tokens", "3000", "--corpus.source", str(corpus), "--corpus.txt-unit", "line",
              "--ctx-len", "32", "--batch-size", "8", "--dtype", "float32",
              "--shard-rows", "1024", "--device", "cpu"],
             ["train", str(run), "--store", str(root / "acts"), "--architecture", "topk",
              "--n-features", str(N_FEATURES), "--k", "4", "--batch-size", "256",
              "--steps", "40", "--lr", "0.003", "--log-every", "10", "--eval-every", "20",
              "--checkpoint-every", "0", "--device", "cpu"],
             ["eval", str(run), "--n-contexts", "2", "--plot", "false", "--device", "cpu"],
             ["analyze", str(run), "--batch-size", "512", "--top-k", "6", "--logit-tokens", "5",
              "--neighbours", "4", "--feature-map", "false", "--device", "cpu"]]
    for argv in steps:
        assert main(argv) == 0, argv
    return run


def annotate_copy(run: Path, dest: Path) -> Path:
    """A copy of `run` whose database has explanations, scores, co-occurrence neighbours and
    UMAP-style map coordinates with cluster labels."""
    shutil.copytree(run, dest)
    con = sqlite3.connect(dest / "features.sqlite")
    with con:
        for feature, text in EXPLAINED.items():
            cur = con.execute("INSERT INTO explanations (feature, explainer, text, created, "
                              "details) VALUES (?, 'test', ?, '2026-01-01T00:00:00', ?)",
                              (feature, text, json.dumps({"examples": 5})))
            con.execute("INSERT INTO scores (feature, explanation, scorer, score, created) "
                        "VALUES (?, ?, 'detection', 0.75, '2026-01-01T00:00:00')",
                        (feature, cur.lastrowid))
        con.execute("DELETE FROM map_coords")
        for f in range(N_FEATURES):
            # A ring: feature f at angle f, cluster f // 16.
            angle = 2 * torch.pi * f / N_FEATURES
            con.execute("INSERT INTO map_coords (feature, x, y, cluster) VALUES (?, ?, ?, ?)",
                        (f, float(torch.cos(torch.tensor(angle))),
                         float(torch.sin(torch.tensor(angle))), f // 16))
        con.execute("DELETE FROM neighbours WHERE feature = 7 AND kind = 'cooccurrence'")
        con.execute("INSERT INTO neighbours (feature, kind, rank, other, score) "
                    "VALUES (7, 'cooccurrence', 0, 3, 0.5)")
        con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('clusters', ?)",
                    (json.dumps([{"id": c, "size": 16, "label": f"cluster label {c}",
                                  "tokens": []} for c in range(4)]),))
    con.close()
    return dest
