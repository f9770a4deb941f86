"""The paper's qualitative scaling findings, set beside a group's fitted exponents."""

from __future__ import annotations

from typing import Any

from monosemantic.laws.lr import at_grid_edge, edge_text

PAPER_NOTE = ("Paper: Templeton et al. 2024, 'Scaling Monosemanticity'. It reports the shapes "
              "quoted beside each law; this project does not have its fitted exponent values, so "
              "no number of the paper's is quoted or compared.")

PAPER_SHAPES = {
    "loss": "loss at the compute-optimal frontier falls as a power law in compute",
    "features": ("compute-optimal number of features grows roughly as a power law in compute "
                 "(faster than the training steps at the budgets the paper tested)"),
    "tokens": "compute-optimal training steps grow roughly as a power law in compute",
    "lr": "optimal learning rate falls roughly as a power law in compute",
}
"""What the paper says of each law; the `tokens` law is its steps law (tokens = steps ×
batch size at a fixed batch size)."""


def _verdict(key: str, group: dict[str, Any]) -> str:
    """Whether the fitted exponent has the paper's sign (and order), judged on the interval."""
    law = group[key]
    if key == "lr" and at_grid_edge(law):
        return f"at the edge of the grid ({edge_text(law['edge'])}): widen --lr"
    lo_hi = law["interval"]["exponent"]
    lo, hi = lo_hi if lo_hi else (law["exponent"], law["exponent"])
    if key in ("loss", "lr"):
        return "same shape" if hi < 0 else "not shown here (interval reaches 0 or above)"
    if lo <= 0:
        return "not shown here (interval reaches 0 or below)"
    if key == "features":
        faster = law["exponent"] > group["tokens"]["exponent"]
        return "same shape" + ("; grows faster than tokens" if faster else
                               "; grows slower than tokens here")
    return "same shape"


def findings_rows(group: dict[str, Any]) -> list[list[str]]:
    """[law, fitted formula, exponent, interval, paper's shape — verdict] per fitted law."""
    rows = []
    for key, name in (("loss", "loss at the frontier"), ("features", "optimal features"),
                      ("tokens", "optimal tokens"), ("lr", "optimal lr")):
        law = group.get(key)
        if not law or "exponent" not in law:
            continue
        rows.append([name, law["formula"], f"{law['exponent']:+.3f}", _interval_text(law),
                     f"{PAPER_SHAPES[key]} — {_verdict(key, group)}"])
    return rows


def _interval_text(law: dict[str, Any]) -> str:
    if law.get("interval_note"):
        return law["interval_note"]
    iv = law["interval"]["exponent"]
    return f"[{iv[0]:+.3f}, {iv[1]:+.3f}]" if iv else "(no resamples)"

