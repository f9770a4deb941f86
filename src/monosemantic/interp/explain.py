"""`monosemantic explain RUN`: an LLM writes a label and a one-sentence explanation for each
chosen feature, from examples across its activation intervals; stored in RUN/features.sqlite."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monosemantic.console import say
from monosemantic.featuredb.reader import FeatureCard, FeatureDB
from monosemantic.interp.backends import LLMOptions
from monosemantic.interp.cache import LLMClient
from monosemantic.interp.common import (
    CardReader,
    open_client,
    run_parallel,
    select_features,
)
from monosemantic.interp.examples import SplitOptions, split_examples
from monosemantic.interp.prompts import (
    PROMPT_VERSION,
    PromptOptions,
    explainer_messages,
)
from monosemantic.interp.results import ResultsDB
from monosemantic.interp.structured import (
    ParseError,
    StructuredError,
    complete_json,
    require,
)
from monosemantic.runs import feature_db_path

if TYPE_CHECKING:
    from monosemantic.models import LoadedModel


@dataclass(kw_only=True)
class ExplainConfig(LLMOptions, SplitOptions, PromptOptions):
    """Explain features with an LLM and store the explanations in RUN/features.sqlite."""

    run: Path = field(metadata={"positional": True})
    """Run directory holding features.sqlite, or its sae/ folder, or the database file
    itself."""
    features: tuple[int, ...] = ()
    """Feature ids to explain."""
    all: bool = False
    """Explain every feature that fired."""
    sample: int = 0
    """Explain this many random features that fired."""
    seed: int = 0
    """Seed of --sample."""
    max_tokens: int = 150
    """Most tokens the explainer may answer with."""
    parse_retries: int = 2
    """Retries when an answer is not the JSON asked for."""
    redo: bool = False
    """Explain again features this explainer (backend/model/prompt version) already explained."""

    def __post_init__(self) -> None:
        self.run = Path(self.run)


def explainer_id(backend: str, model: str) -> str:
    return f"{backend}/{model}/{PROMPT_VERSION}"


def _label_and_explanation(obj: Any) -> dict[str, str]:
    out = require(obj, {"label": str, "explanation": str})
    if not out["explanation"].strip():
        raise ParseError("'explanation' is empty")
    return {"label": out["label"].strip(), "explanation": out["explanation"].strip()}


def explain_card(client: LLMClient, card: FeatureCard, cfg: ExplainConfig) -> dict[str, Any]:
    """{"label", "explanation", "details"} for one feature."""
    split = split_examples(card, cfg, cfg.mark_fraction)
    got = complete_json(client, explainer_messages(card, split, cfg), _label_and_explanation,
                        max_tokens=cfg.max_tokens, retries=cfg.parse_retries)
    costs = [c.cost_usd for c in got.completions if not c.cached]
    known_costs = [c for c in costs if c is not None]
    details = {
        "label": got.value["label"], "backend": client.backend.name,
        "model": client.backend.model, "prompt_version": PROMPT_VERSION,
        "attempts": got.attempts,
        "input_tokens": sum(c.input_tokens for c in got.completions),
        "output_tokens": sum(c.output_tokens for c in got.completions),
        "cost_usd": sum(known_costs) if len(known_costs) == len(costs) else None,
        "cached": all(c.cached for c in got.completions),
        "shown_rows": sorted(ex.row for ex in split.shown()),
        "split": {"explain_top": cfg.explain_top,
                  "explain_per_interval": cfg.explain_per_interval,
                  "explain_random": cfg.explain_random},
        "prompt": {"mark_fraction": cfg.mark_fraction, "logit_tokens": cfg.logit_tokens,
                   "few_shot": cfg.few_shot}}
    return {**got.value, "details": details}


def explain(cfg: ExplainConfig, lm: LoadedModel | None = None) -> dict[str, Any]:
    """Explain the chosen features; returns a summary (counts, time, usage)."""
    path = feature_db_path(cfg.run)
    with FeatureDB(path) as db, ResultsDB(path) as out:
        features = select_features(db, cfg.features, cfg.all, cfg.sample, cfg.seed)
        client = open_client(cfg, path, lm=lm)
        who = explainer_id(client.backend.name, client.backend.model)
        if not cfg.redo:
            done = set(out.explanations(who))
            features = [f for f in features if f not in done]
        read = CardReader(db)
        failures: list[tuple[int, str]] = []

        def one(feature: int) -> int | None:
            card = read(feature)
            if card.count == 0:
                failures.append((feature, "never fired: nothing to explain"))
                return None
            try:
                got = explain_card(client, card, cfg)
            except StructuredError as err:
                failures.append((feature, str(err)))
                return None
            return out.add_explanation(feature, who, got["explanation"], got["details"])

        start = time.perf_counter()
        ids = run_parallel(one, features, cfg.concurrency, "explain")
        seconds = time.perf_counter() - start
    summary = {"explainer": who, "features": len(features),
               "explained": sum(i is not None for i in ids), "failures": failures,
               "seconds": seconds, "usage": asdict(client.usage)}
    say(f"explained {summary['explained']} of {len(features)} features with {who} in "
        f"{seconds:.1f} s; {client.usage.summary()}")
    for feature, why in failures[:10]:
        say(f"  feature {feature}: {why}")
    return summary
