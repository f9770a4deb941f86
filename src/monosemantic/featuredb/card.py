"""`monosemantic feature RUN ID`: one feature's card in the terminal, read from the database.

Active tokens are highlighted with ANSI background colours whose strength follows the
activation (relative to the feature's maximum) when writing to a terminal; otherwise (pipes,
files, `--color never`) an active token is written `[[token]]`, with the peak `[[token|3.2]]`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO

from monosemantic.console import say
from monosemantic.featuredb.reader import Example, FeatureCard, FeatureDB
from monosemantic.runs import feature_db_path

# 256-colour backgrounds from faint to strong orange.
_SHADES = (230, 223, 216, 209, 202)


@dataclass
class FeatureCardConfig:
    """Print one feature's card: statistics, top examples, intervals, logit effects, neighbours."""

    run: Path = field(metadata={"positional": True})
    """Run directory holding features.sqlite, or its sae/ folder, or the database file
    itself."""
    id: int = field(metadata={"positional": True})
    """Feature id."""
    examples: int = 5
    """Top examples to show."""
    interval_examples: int = 1
    """Examples shown per activation interval."""
    color: Literal["auto", "always", "never"] = "auto"
    """Highlight active tokens with ANSI colours: auto = when writing to a terminal."""

    def __post_init__(self) -> None:
        self.run = Path(self.run)


def use_color(mode: str, stream: TextIO | None = None) -> bool:
    if mode == "always":
        return True
    if mode == "never" or os.environ.get("NO_COLOR"):
        return False
    stream = stream if stream is not None else sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


def _clean(text: str) -> str:
    return text.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def render_example(ex: Example, max_act: float, color: bool) -> str:
    """The window on one line with active tokens marked, then the peak activation."""
    parts = []
    for i, (tok, act) in enumerate(zip(ex.tokens, ex.acts)):
        text = _clean(tok)
        if act <= 0:
            parts.append(text)
        elif color:
            level = min(int(act / max_act * len(_SHADES)), len(_SHADES) - 1) if max_act > 0 else 0
            bold = "\x1b[1m" if i == ex.peak else ""
            parts.append(f"\x1b[48;5;{_SHADES[level]}m\x1b[30m{bold}{text}\x1b[0m")
        else:
            parts.append(f"[[{text}|{act:.3g}]]" if i == ex.peak else f"[[{text}]]")
    return f"{ex.activation:>9.4g}  " + "".join(parts)


def format_card(card: FeatureCard, examples: int = 5, interval_examples: int = 1,
                color: bool = False, analysed_tokens: int | None = None) -> str:
    """The card as text; `analysed_tokens`: the tokens the analysis read (the database's
    meta `n_tokens`), named when the feature never fired in them."""
    lines = [f"Feature {card.id}",
             (f"  max activation {card.max_act:.4g}   density {card.density:.3%} "
             f"({card.count:,} tokens)   mean when active {card.mean_act:.4g}")]
    if card.explanations:
        lines.append(f"  explanation: {card.explanations[-1]['text']}")
    if card.count == 0:
        over = f"{analysed_tokens:,} " if analysed_tokens else ""
        lines.append(f"  never fired in the {over}analysed tokens")
    lines.append("")
    lines.append("Top activations")
    lines += [render_example(ex, card.max_act, color) for ex in card.top[:examples]]
    if card.intervals and card.count > 0:
        lines += ["", "Activation intervals (share of all activations)"]
        for iv in reversed(card.intervals):
            close = "]" if iv.idx == len(card.intervals) - 1 else ")"  # the top one holds max
            lines.append(f"  [{iv.lo:>9.4g}, {iv.hi:>9.4g}{close}  {iv.share:7.2%}  "
                         f"({iv.count:,})")
            lines += ["    " + render_example(ex, card.max_act, color)
                      for ex in iv.examples[:interval_examples]]
    if card.random:
        lines += ["", "Random active examples"]
        lines += [render_example(ex, card.max_act, color) for ex in card.random[:2]]
    if card.logits_up:
        lines += ["", "Logit effects",
                  "  up:   " + "  ".join(f"{_clean(t)!r} {v:+.3f}" for t, v in card.logits_up),
                  "  down: " + "  ".join(f"{_clean(t)!r} {v:+.3f}" for t, v in card.logits_down)]
    for kind, items in card.neighbours.items():
        label = {"decoder_cosine": "Nearest features (decoder cosine)",
                 "cooccurrence": "Co-occurring features (Ochiai: shared tokens / "
                                 "sqrt(product of counts))"}.get(kind, kind)
        lines += ["", label, "  " + "  ".join(f"#{o} {s:.3f}" for o, s in items)]
    return "\n".join(lines)


def show_feature(cfg: FeatureCardConfig) -> FeatureCard:
    """Print the card of feature `cfg.id` of `cfg.run` and return it."""
    with FeatureDB(feature_db_path(cfg.run)) as db:
        card = db.feature(cfg.id)
        n_tokens = db.meta.get("n_tokens")
    say(format_card(card, cfg.examples, cfg.interval_examples, use_color(cfg.color),
                    analysed_tokens=n_tokens))
    return card
