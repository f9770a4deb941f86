"""`monosemantic steer` and `monosemantic attribute`: configs and printing."""

from __future__ import annotations

import json
import shutil
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from monosemantic.console import say
from monosemantic.errors import UserError
from monosemantic.fsutil import atomic_write_text
from monosemantic.runs import ModelOptions
from monosemantic.steer.attribution import (
    DEFAULT_MAX_ABLATIONS,
    AttributionResult,
    PairCorrelations,
    attribute,
)
from monosemantic.steer.compare import SteerResult, steer_compare
from monosemantic.steer.edits import DEFAULT_MAX_MULTIPLIER, parse_edit


@dataclass
class SteerConfig:
    """Continue a prompt with and without feature steering, side by side, with side effects."""

    run: Path = field(metadata={"positional": True})
    """Training run directory or its sae/ folder (features.sqlite for `x` multipliers), or a
    pretrained SAE folder / hf:OWNER/REPO/FOLDER (docs/pretrained.md)."""
    feature: list[str]
    """Edits FEATURE=VALUEx (multiples of the feature's max activation, e.g. 123=10x 7=-3x) or
    FEATURE=VALUE (raw code units); several after one --feature."""
    prompt: str
    """The prompt to continue."""
    mode: Literal["clamp", "add"] = "clamp"
    """clamp: set the codes inside SAE(x) and keep the error term; add: add value × W_dec[i]."""
    positions: str | None = None
    """Token span START:STOP to steer (BOS = 0; absolute, so a span over the prompt stays put
    during generation); default every position, generated ones included (special tokens
    only with --include-special)."""
    include_special: bool = False
    """Also steer BOS and other special-token positions (the SAE never saw them; off by
    default)."""
    max_new_tokens: int = 40
    """Tokens to generate for each continuation."""
    temperature: float = 0.0
    """Sampling temperature; 0 = greedy."""
    top_p: float = 1.0
    """Nucleus sampling threshold (with temperature > 0)."""
    seed: int = 0
    """Random seed, the same for both continuations."""
    neutral_text: str | None = None
    """Text for the loss-change side effect (default: a few sentences of plain prose)."""
    max_multiplier: float = DEFAULT_MAX_MULTIPLIER
    """Refuse multipliers beyond ± this many times the max activation."""
    device: str = "auto"
    """Torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:1, mps."""
    model_options: ModelOptions = field(default_factory=ModelOptions,
                                        metadata={"short_flags": True})
    """The model to load instead of the run's, and a pretrained SAE folder's hooks (also
    spelled without `model-options.`: --model, --hook, --hook-out)."""
    json_out: Path | None = None
    """Also write the result as JSON to this file."""

    def __post_init__(self) -> None:
        self.run = Path(self.run)
        self.feature = [self.feature] if isinstance(self.feature, str) else list(self.feature)


@dataclass
class AttributeConfig:
    """Attribute a next-token metric to SAE features and check every active one by ablation."""

    run: Path = field(metadata={"positional": True})
    """Training run directory (or its sae/ folder), or a pretrained SAE folder /
    hf:OWNER/REPO/FOLDER (docs/pretrained.md)."""
    prompt: str
    """The prompt whose next token is scored."""
    target: str
    """The expected next token (with its leading space, e.g. ' Sacramento'); a multi-token
    target is scored by its first token."""
    baseline: str | None = None
    """Contrasting token: metric = logit(target) - logit(baseline); without one the metric is
    log p(target). Multi-token: first token."""
    top: int = 20
    """Rows listed: (feature, position) pairs with the largest |attribution| (a view; the
    correlations are not computed over them)."""
    ablate: bool = True
    """Also ablate every active (feature, position) pair (feature set to 0 there, error kept)
    and correlate attribution and activation with the ablation effect over all of them."""
    max_ablations: int = DEFAULT_MAX_ABLATIONS
    """Most pairs ablated for the correlations; with more active pairs a uniform random sample
    of this many (chosen without looking at attribution or activation) is ablated instead."""
    sample_seed: int = 0
    """Seed of that sample (used only above max_ablations)."""
    batch_size: int = 32
    """Ablations per batched forward."""
    device: str = "auto"
    """Torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:1, mps."""
    model_options: ModelOptions = field(default_factory=ModelOptions,
                                        metadata={"short_flags": True})
    """The model to load instead of the run's, and a pretrained SAE folder's hooks (also
    spelled without `model-options.`: --model, --hook, --hook-out)."""
    json_out: Path | None = None
    """Also write the result as JSON to this file."""

    def __post_init__(self) -> None:
        self.run = Path(self.run)


def parse_span(text: str | None) -> slice | None:
    """`"3:10"` -> slice(3, 10), `"3:"` -> slice(3, None), None -> None."""
    if text is None:
        return None
    start, sep, stop = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return slice(int(start) if start.strip() else 0, int(stop) if stop.strip() else None)
    except ValueError:
        raise UserError(
            f"positions must look like START:STOP (e.g. 1:6 or 4:), got {text!r}") from None


def side_by_side(left: str, right: str, titles: tuple[str, str], width: int | None = None) -> str:
    """Two texts in columns (wrapped; newlines shown as ⏎ so the columns stay aligned)."""
    total = width or shutil.get_terminal_size((120, 24)).columns
    col = max(20, (total - 3) // 2)

    def lines(text: str) -> list[str]:
        return textwrap.wrap(text.replace("\n", "⏎"), col, drop_whitespace=False) or [""]

    a, b = lines(left), lines(right)
    a += [""] * (len(b) - len(a))
    b += [""] * (len(a) - len(b))
    out = [f"{titles[0]:<{col}} | {titles[1]}", f"{'-' * col}-+-{'-' * col}"]
    out += [f"{x:<{col}} | {y}" for x, y in zip(a, b)]
    return "\n".join(out)


def format_steer(result: SteerResult) -> str:
    special = ", special tokens steered too" if result.include_special else ""
    head = (f"prompt: {result.prompt!r}\n"
            f"edits: {' '.join(result.edits)} ({result.mode}{special})\n")
    figures = (f"KL(clean || steered) of next-token distributions, mean over the prompt: "
               f"{result.kl_next_token:.4f} nats\n"
               f"loss on the neutral text: {result.neutral_loss_clean:.4f} -> "
               f"{result.neutral_loss_clean + result.neutral_loss_delta:.4f} nats "
               f"({result.neutral_loss_delta:+.4f})")
    return head + side_by_side(result.unsteered, result.steered, ("unsteered", "steered")) + \
        "\n" + figures


def format_attribution(result: AttributionResult) -> str:
    lines = [f"prompt: {result.prompt!r}", f"metric: {result.metric_name} = {result.metric:.4f}"]
    if result.target_tokens > 1:
        lines.append(f"note: the target has {result.target_tokens} tokens; only the first is "
                     "scored")
    view = ("" if result.all_pairs is None else
            " (a view; the correlations below are not taken over it)")
    lines.append(f"top {len(result.rows)} of {result.n_active} active (feature, position) pairs "
                 f"by |attribution|{view}:")
    lines.append(f"{'feature':>8} {'pos':>4} {'token':<14} {'activation':>10} {'attribution':>11} "
                 f"{'ablation':>9}")
    for r in result.rows:
        effect = "-" if r.ablation_effect is None else f"{r.ablation_effect:.4f}"
        lines.append(f"{r.feature:>8} {r.position:>4} {r.token!r:<14.14} {r.activation:>10.3f} "
                     f"{r.attribution:>11.4f} {effect:>9}")
    if result.all_pairs is not None:
        lines.append(format_correlations(result.all_pairs))
    return "\n".join(lines)


def format_correlations(c: PairCorrelations) -> str:
    def corr(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    return (f"correlation with the ablation effect over {c.population}, each ablated:\n"
            f"  attribution: Pearson {corr(c.pearson_attribution)}, Spearman "
            f"{corr(c.spearman_attribution)}\n"
            f"  activation:  Pearson {corr(c.pearson_activation)}, Spearman "
            f"{corr(c.spearman_activation)}")


def _write_json(path: Path | None, data: dict) -> None:
    if path is not None:
        atomic_write_text(Path(path), json.dumps(data, indent=2) + "\n")


def run_steer(cfg: SteerConfig) -> SteerResult:
    """CLI entry of `monosemantic steer`."""
    edits = [parse_edit(text) for text in cfg.feature]
    span = parse_span(cfg.positions)
    run = cfg.model_options.open(cfg.run)
    lm, sae, hook = run.load(cfg.device, cfg.model_options.model)
    max_act_F = run.max_act_F()
    result = steer_compare(lm, sae, hook, cfg.prompt, edits, mode=cfg.mode, max_act_F=max_act_F,
                           max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                           top_p=cfg.top_p, seed=cfg.seed, neutral_text=cfg.neutral_text,
                           positions=span, include_special=cfg.include_special,
                           max_multiplier=cfg.max_multiplier, hook_out=run.hook_out)
    say(format_steer(result))
    _write_json(cfg.json_out, result.to_dict())
    return result


def run_attribute(cfg: AttributeConfig) -> AttributionResult:
    """CLI entry of `monosemantic attribute`."""
    run = cfg.model_options.open(cfg.run)
    lm, sae, hook = run.load(cfg.device, cfg.model_options.model)
    result = attribute(lm, sae, hook, cfg.prompt, cfg.target, cfg.baseline, top=cfg.top,
                       ablate=cfg.ablate, batch_size=cfg.batch_size,
                       max_ablations=cfg.max_ablations, sample_seed=cfg.sample_seed,
                       hook_out=run.hook_out)
    say(format_attribution(result))
    _write_json(cfg.json_out, result.to_dict())
    return result
