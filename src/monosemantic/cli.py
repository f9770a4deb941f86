"""`monosemantic` command line: one subcommand per config dataclass.

Each entry names a module, its config dataclass and the function that runs it. Modules are
imported only when their subcommand is used, so `monosemantic --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass

from monosemantic.config import add_dataclass_arguments, dataclass_from_namespace
from monosemantic.errors import UserError


@dataclass(frozen=True)
class Command:
    module: str
    config: str
    function: str
    summary: str


COMMANDS: dict[str, Command] = {
    "demo": Command(
        "monosemantic.demo", "DemoConfig", "run_demo",
        "End to end on the embedded default: corpus, harvest, train, evaluate.",
    ),
    "hooks": Command(
        "monosemantic.models.hooks_cli", "HooksConfig", "run_hooks",
        "List a model's hook points with their shapes.",
    ),
    "harvest": Command(
        "monosemantic.activations.harvest", "HarvestConfig", "harvest",
        "Run a model over a corpus and store activations at hook points.",
    ),
    "train": Command(
        "monosemantic.train.trainer", "TrainConfig", "train",
        "Train a sparse autoencoder on stored (or streamed) activations.",
    ),
    "eval": Command(
        "monosemantic.evals.report", "EvalConfig", "run_eval",
        "Evaluate a trained SAE: reconstruction, sparsity, spliced-in model loss.",
    ),
    "crosscoder-eval": Command(
        "monosemantic.evals.crosscoder", "CrosscoderEvalConfig", "run_crosscoder_eval",
        "Evaluate a crosscoder per site; diff its two models (docs/crosscoders.md).",
    ),
    "transcoders": Command(
        "monosemantic.transcoders.run", "TranscoderSetConfig", "run_transcoders",
        "Train one transcoder per layer and splice them all in at once.",
    ),
    "sweep": Command(
        "monosemantic.sweep.run", "SweepConfig", "run_sweep",
        "Train a grid of SAEs (sizes x tokens x lr x sparsity) and tabulate them.",
    ),
    "bench": Command(
        "monosemantic.bench.run", "BenchConfig", "run_bench",
        "Benchmark trained SAEs (RUN ... --out OUT) or architectures (--synthetic).",
    ),
    "import-sae": Command(
        "monosemantic.pretrained.commands", "ImportSAEConfig", "run_import_sae",
        "Write a pretrained SAE (SAELens, Gemma Scope, hf:...) as a run folder.",
    ),
    "analyze": Command(
        "monosemantic.analysis.run", "AnalyzeConfig", "analyze",
        "Analyse every feature of a trained SAE into RUN/features.sqlite.",
    ),
    "feature": Command(
        "monosemantic.featuredb.card", "FeatureCardConfig", "show_feature",
        "Print one feature's card from the feature database.",
    ),
    "inspect": Command(
        "monosemantic.analysis.inspect", "InspectConfig", "inspect_text",
        "Show the features that fire on each token of a text.",
    ),
    "serve": Command(
        "monosemantic.web.server", "ServeConfig", "serve",
        "Serve the feature browser of a run (web pages + JSON API).",
    ),
    "steer": Command(
        "monosemantic.steer.commands", "SteerConfig", "run_steer",
        "Continue a prompt with and without feature steering, side by side.",
    ),
    "attribute": Command(
        "monosemantic.steer.commands", "AttributeConfig", "run_attribute",
        "Attribute a next-token logit difference to features; check by ablation.",
    ),
    "graph": Command(
        "monosemantic.graph.command", "GraphConfig", "run_graph",
        "Attribution graph of a prompt's next token through per-layer transcoders.",
    ),
    "filter": Command(
        "monosemantic.analysis.search", "FilterConfig", "run_filter",
        "Features active on all positive prompts and on no negative prompt.",
    ),
    "classify": Command(
        "monosemantic.analysis.classify", "ClassifyConfig", "run_classify",
        "Features carrying a sparse logistic regression on labelled texts.",
    ),
    "explain": Command(
        "monosemantic.interp.explain", "ExplainConfig", "explain",
        "Explain features with an LLM (local, OpenAI-compatible, Anthropic).",
    ),
    "score": Command(
        "monosemantic.interp.score", "ScoreConfig", "score",
        "Score explanations: specificity rubric, detection, fuzzing, simulation.",
    ),
    "neurons": Command(
        "monosemantic.interp.neurons", "NeuronsConfig", "build_neuron_db",
        "Build a feature database of MLP neurons (the autointerp baseline).",
    ),
    "plan-memory": Command(
        "monosemantic.scale.plan_cli", "PlanMemoryConfig", "run_plan_memory",
        "Per-device memory and traffic of training an SAE on N GPUs (a planning model).",
    ),
    "scaling": Command(
        "monosemantic.laws.scaling_cli", "ScalingConfig", "run_scaling",
        "Fit a sweep's scaling laws against compute into OUT/scaling.json.",
    ),
    "plan": Command(
        "monosemantic.laws.plan_cli", "PlanConfig", "run_plan",
        "Compute-optimal size, tokens and loss at a FLOP budget, from a fit.",
    ),
    "findings dead": Command(
        "monosemantic.findings.dead", "DeadConfig", "run_dead",
        "Dead and ultra-rare feature fractions against a sweep's dictionary sizes.",
    ),
    "findings splitting": Command(
        "monosemantic.findings.splitting", "SplittingConfig", "run_splitting",
        "Feature splitting across a sweep's sizes: matches, shares, family trees.",
    ),
    "findings concepts": Command(
        "monosemantic.findings.coverage", "ConceptsConfig", "run_concepts",
        "Which concepts each size has a feature for, against their frequency.",
    ),
    "findings neurons": Command(
        "monosemantic.findings.neurons", "NeuronFindingsConfig", "run_neurons",
        "Features against MLP neurons: each feature's max correlation with a neuron.",
    ),
    "findings all": Command(
        "monosemantic.findings.report", "FindingsConfig", "run_findings",
        "Every finding of a sweep, collected into one generated markdown file.",
    ),
}
"""A name of two words ("findings dead") is a subcommand of a command group ("findings")."""

GROUPS: dict[str, str] = {
    "findings": "The paper's findings across the dictionary sizes of a sweep.",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Top-level parser; only `command`'s module is imported to build its options."""
    parser = argparse.ArgumentParser(
        prog="monosemantic",
        description="Sparse dictionary learning on language-model activations.",
    )
    sub = parser.add_subparsers(dest="_command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for name, spec in COMMANDS.items():
        group, _, member = name.partition(" ")
        if member:
            if group not in groups:
                gp = sub.add_parser(group, help=GROUPS[group], description=GROUPS[group])
                groups[group] = gp.add_subparsers(dest="_member", metavar="WHAT")
            sp = groups[group].add_parser(member, help=spec.summary, description=spec.summary)
        else:
            sp = sub.add_parser(name, help=spec.summary, description=spec.summary)
        if name == command:
            cls = getattr(importlib.import_module(spec.module), spec.config)
            add_dataclass_arguments(sp, cls)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_named(argv)
    parser = build_parser(command)
    ns = parser.parse_args(argv)
    if ns._command is None:
        parser.print_help()
        return 2
    name = ns._command
    if name in GROUPS:
        if getattr(ns, "_member", None) is None:
            try:
                parser.parse_args([name, "--help"])  # prints the group's commands
            except SystemExit:
                return 2
        name = f"{name} {ns._member}"
    spec = COMMANDS[name]
    module = importlib.import_module(spec.module)
    try:
        cfg = dataclass_from_namespace(getattr(module, spec.config), ns)
        getattr(module, spec.function)(cfg)
    except UserError as err:
        print(f"monosemantic {name}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def _command_named(argv: list[str]) -> str | None:
    """The command `argv` names: the first word that is one, or a group and its member."""
    for word, after in zip(argv, [*argv[1:], None]):
        if word in GROUPS and after is not None and f"{word} {after}" in COMMANDS:
            return f"{word} {after}"
        if word in COMMANDS:
            return word
    return None


if __name__ == "__main__":
    sys.exit(main())
