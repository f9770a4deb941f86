"""Per-word absorption scores of one letter (SAEBench's definitions) and their per-letter summary.

For a test word that starts with the letter and that the ground-truth probe calls right, let
p̂ be the probe's unit direction, `a = (x − b_dec)·p̂` the activation's projection onto it, and
`proj_i = f_i · (W_dec[i]·p̂)` each feature's share of the reconstruction's projection.

- absorption fraction: the part of `a` carried by up to `max_absorbers` non-main features with
  decoder cosine ≥ `absorber_cos` and positive projection, rather than by the main features
  (0 when the main features carry all of `a`, or the absorbers carry less than
  `projection_share` of it; 1 when the main features' projection is ≤ 0);
- full absorption: no main feature fires, and the feature of the largest projection has decoder
  cosine ≥ `full_cos` and carries at least `projection_share` of `a`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

FIRES_EPS = 1e-8
"""A code at or below this is "does not fire" (SAEBench's EPS)."""


@dataclass(frozen=True)
class Thresholds:
    """SAEBench's thresholds of the two absorption scores."""

    absorber_cos: float
    full_cos: float
    projection_share: float
    max_absorbers: int


@dataclass
class WordScore:
    """The absorption of one word."""

    word: str
    fraction: float
    """Absorption fraction in [0, 1]."""
    full: bool
    """Full absorption by one feature."""
    absorbers: list[int]
    """The features that carry the absorbed part (the top feature for full absorption)."""


def score_word(word: str, codes_F: np.ndarray, proj_F: np.ndarray, act_proj: float,
               cos_F: np.ndarray, main: list[int], th: Thresholds) -> WordScore:
    """Absorption fraction and full absorption of one word (definitions in the module doc)."""
    if act_proj <= 0:  # the probe direction is not in the activation: nothing to absorb
        return WordScore(word, 0.0, False, [])
    main_proj = float(proj_F[main].sum())
    candidate_F = (cos_F >= th.absorber_cos) & (proj_F > 0)
    candidate_F[main] = False
    ids = np.flatnonzero(candidate_F)
    top = ids[np.argsort(-proj_F[ids], kind="stable")[:th.max_absorbers]]
    absorbed = float(proj_F[top].sum())
    if main_proj >= act_proj or absorbed / act_proj < th.projection_share:
        fraction = 0.0
    elif main_proj <= 0:
        fraction = 1.0
    else:
        absorbed = min(absorbed, act_proj - main_proj)
        fraction = float(np.clip(absorbed / (absorbed + main_proj), 0.0, 1.0))
    leader = int(np.argmax(proj_F))
    full = bool(np.all(codes_F[main] <= FIRES_EPS) and cos_F[leader] >= th.full_cos
                and proj_F[leader] / act_proj >= th.projection_share)
    absorbers = [leader] if full else [int(i) for i in top] if fraction > 0 else []
    return WordScore(word, fraction, full, absorbers)


def summarize_letter(scores: list[WordScore], cos_F: np.ndarray, n_examples: int
                     ) -> dict[str, Any]:
    """Rates over the letter's probe true positives and the absorbing features, most frequent
    first, each with example words."""
    n = len(scores)
    absorbed = [s for s in scores if s.fraction > 0 or s.full]
    words_of: dict[int, list[str]] = defaultdict(list)
    for s in absorbed:
        for f in s.absorbers:
            words_of[f].append(s.word)
    ranked = sorted(words_of, key=lambda f: (-len(words_of[f]), f))
    return {
        "mean_absorption_fraction": sum(s.fraction for s in scores) / n if n else None,
        "full_absorption_rate": sum(s.full for s in scores) / n if n else None,
        "absorption_rate": len(absorbed) / n if n else None,
        "n_full_absorption": sum(s.full for s in scores),
        "n_absorbed": len(absorbed),
        "absorbers": [{"feature": f, "probe_cos": round(float(cos_F[f]), 4),
                       "n_words": len(words_of[f]), "examples": words_of[f][:n_examples]}
                      for f in ranked[:n_examples]],
        "absorbed_examples": [{"word": s.word, "absorption_fraction": round(s.fraction, 4),
                               "full": s.full, "absorbers": s.absorbers}
                              for s in sorted(absorbed, key=lambda s: -s.fraction)[:n_examples]],
    }
