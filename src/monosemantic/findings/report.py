"""`monosemantic findings all OUT [--docs docs/findings.md]`: every finding of a sweep, then one
generated markdown file (OUT/findings/findings.md, and a copy at --docs with its figures in a
folder beside it) with the figures, tables, image links and the commands that produced them.

Features against neurons are measured when the sweep's store can be computed again by its
model (`findings neurons`). A series whose concept coverage or neurons cannot be measured
(e.g. no tokenizer, or no context length recorded in its store) is reported as such in
the file instead of stopping the other findings.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monosemantic.console import say
from monosemantic.errors import UserError
from monosemantic.findings.concepts import ConceptOptions
from monosemantic.findings.coverage import (
    CONCEPTS_PNG,
    ConceptsConfig,
    CoverageOptions,
    run_concepts,
)
from monosemantic.findings.dead import DEAD_PNG, DeadConfig, DeadOptions, run_dead
from monosemantic.findings.holdout import HoldoutOptions
from monosemantic.findings.markdown import render
from monosemantic.findings.neurons import (
    NEURONS_PNG,
    NeuronFindingsConfig,
    NeuronOptions,
    run_neurons,
)
from monosemantic.findings.output import command_line, findings_dir
from monosemantic.findings.pairs import MatchOptions
from monosemantic.findings.splitting import (
    SPLITTING_HTML,
    SPLITTING_PNG,
    SplittingConfig,
    TreeOptions,
    run_splitting,
)
from monosemantic.fsutil import atomic_write_text
from monosemantic.sweep.config import SWEEP_CFG, RunOptions, SweepConfig

FINDINGS_MD = "findings.md"


@dataclass
class FindingsConfig:
    """Options of `monosemantic findings all`."""

    out: Path = field(metadata={"positional": True})
    """The sweep folder (holds sweep.jsonl); results go to OUT/findings/."""
    docs: Path | None = None
    """Also write the markdown here (e.g. docs/findings.md), its figures in a folder of the
    same name beside it (docs/findings/)."""
    note: str = ""
    """A sentence printed under the scale statement (e.g. the machine the runs were made on)."""
    holdout: HoldoutOptions = field(default_factory=HoldoutOptions,
                                    metadata={"short_flags": True})
    """The held-out tokens measured (also accepted without the `holdout.` prefix)."""
    dead: DeadOptions = field(default_factory=DeadOptions, metadata={"short_flags": True})
    """Dead and ultra-rare features (also without the `dead.` prefix)."""
    match: MatchOptions = field(default_factory=MatchOptions, metadata={"short_flags": True})
    """Feature splitting's matching (also without the `match.` prefix)."""
    trees: TreeOptions = field(default_factory=TreeOptions, metadata={"short_flags": True})
    """Family trees (also without the `trees.` prefix)."""
    concepts: ConceptOptions = field(default_factory=ConceptOptions,
                                     metadata={"short_flags": True})
    """Concepts of the coverage finding (also without the `concepts.` prefix)."""
    coverage: CoverageOptions = field(default_factory=CoverageOptions,
                                      metadata={"short_flags": True})
    """Concept coverage and its fits (also without the `coverage.` prefix)."""
    neurons: NeuronOptions = field(default_factory=NeuronOptions, metadata={"short_flags": True})
    """Features against neurons (also without the `neurons.` prefix)."""


def run_findings(cfg: FindingsConfig) -> Path:
    """Run `findings dead`, `splitting`, `concepts` and `neurons` (on the same runs as dead),
    then write the markdown; its path. A finding that cannot be measured on this sweep (a
    `UserError`) gets its reason in the markdown instead."""
    dead_cfg = DeadConfig(cfg.out, cfg.holdout, cfg.dead)
    split_cfg = SplittingConfig(cfg.out, cfg.holdout, cfg.match, cfg.trees)
    concepts_cfg = ConceptsConfig(cfg.out, cfg.holdout, cfg.concepts, cfg.coverage)
    neurons_cfg = NeuronFindingsConfig(cfg.out, cfg.holdout, cfg.neurons, cfg.dead.select)
    dead = run_dead(dead_cfg)
    splitting = run_splitting(split_cfg)
    concepts = _optional("concept coverage", lambda: run_concepts(concepts_cfg))
    neurons = _optional("features against neurons", lambda: run_neurons(neurons_cfg))
    commands: dict[str, str | None] = {"sweep": sweep_command(cfg.out),
                "dead": command_line("findings dead", dead_cfg),
                "splitting": command_line("findings splitting", split_cfg),
                "concepts": command_line("findings concepts", concepts_cfg),
                "neurons": command_line("findings neurons", neurons_cfg),
                "all": command_line("findings all", cfg)}
    folder = findings_dir(cfg.out)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    images = {"dead": DEAD_PNG, "splitting": SPLITTING_PNG, "concepts": CONCEPTS_PNG}
    if isinstance(neurons, dict):
        images["neurons"] = NEURONS_PNG
    text = render(dead, splitting, commands, images, cfg.note, generated,
                  html_page=str(Path(cfg.out) / "findings" / SPLITTING_HTML), concepts=concepts,
                  neurons=neurons)
    path = folder / FINDINGS_MD
    atomic_write_text(path, text)
    say(f"wrote {path}")
    if cfg.docs is not None:
        docs = write_docs(Path(cfg.docs), folder, dead, splitting, commands, cfg, generated,
                          concepts, neurons)
        say(f"wrote {docs}")
    return path


def write_docs(docs: Path, folder: Path, dead: dict[str, Any], splitting: dict[str, Any],
               commands: dict[str, str | None], cfg: FindingsConfig, generated: str,
               concepts: dict[str, Any] | str,
               neurons: dict[str, Any] | str | None = None) -> Path:
    """The markdown at `docs`, its figures and family page copied to docs' stem folder and
    linked there."""
    figures = docs.parent / docs.stem
    figures.mkdir(parents=True, exist_ok=True)
    images = {}
    shown = [("dead", DEAD_PNG), ("splitting", SPLITTING_PNG)]
    # a failed measurement leaves no figure of this run
    shown += [("concepts", CONCEPTS_PNG)] if isinstance(concepts, dict) else []
    shown += [("neurons", NEURONS_PNG)] if isinstance(neurons, dict) else []
    for key, name in shown:
        if (folder / name).is_file():
            shutil.copyfile(folder / name, figures / name)
            images[key] = f"{docs.stem}/{name}"
    shutil.copyfile(folder / SPLITTING_HTML, figures / SPLITTING_HTML)
    text = render(dead, splitting, commands, images, cfg.note, generated,
                  html_page=f"{docs.stem}/{SPLITTING_HTML}", concepts=concepts,
                  neurons=neurons)
    atomic_write_text(docs, text)
    return docs


def sweep_command(out: Path) -> str | None:
    """The `monosemantic sweep` command of OUT/sweep_cfg.json (the options of its last
    invocation; options at their defaults left out); None without the file."""
    path = Path(out) / SWEEP_CFG
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    parts = ["monosemantic", "sweep", str(out), "--store", str(saved["store"])]
    parts += ["--architecture", saved["architecture"]]
    for axis in ("n_features", "tokens", "lr", "l1_coefficient", "k", "l0_coefficient"):
        if saved.get(axis):
            parts += ["--" + axis.replace("_", "-"), *(str(v) for v in saved[axis])]
    defaults = {f.name: f.default for f in fields(SweepConfig)}
    for name in ("eval_tokens", "loss_recovered", "loss_contexts"):
        if name in saved and saved[name] != defaults[name]:
            parts += ["--" + name.replace("_", "-"), _text(saved[name])]
    run_defaults = RunOptions()
    for name, value in sorted((saved.get("train") or {}).items()):
        default = getattr(run_defaults, name, None)
        if isinstance(default, tuple):
            default = list(default)
        if value != default:
            values = value if isinstance(value, list) else [value]
            parts += ["--" + name.replace("_", "-"), *(_text(v) for v in values)]
    return " ".join(parts)


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _optional(name: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any] | str:
    """A finding's report, or why this sweep cannot give it (printed and kept for the file)."""
    try:
        return measure()
    except UserError as err:
        say(f"{name} not measured: {err}")
        return str(err)
