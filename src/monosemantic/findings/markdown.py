"""The generated markdown of `monosemantic findings all`."""

from __future__ import annotations

from typing import Any

from monosemantic.findings.coverage import fit_lines
from monosemantic.findings.families import descendants
from monosemantic.findings.matching import SMALL_CLASSES
from monosemantic.findings.neurons import replay_line
from monosemantic.findings.output import percent
from monosemantic.findings.pairs import MEASURES

FAMILIES_SHOWN = 5
"""Largest families written out in the markdown (all are in splitting.json and the page)."""
CHILDREN_SHOWN = 4
"""Children listed per node in the markdown's families."""


def render(dead: dict[str, Any], splitting: dict[str, Any], commands: dict[str, str | None],
           images: dict[str, str], note: str, generated: str, html_page: str,
           concepts: dict[str, Any] | str | None = None,
           neurons: dict[str, Any] | str | None = None) -> str:
    """The whole file: provenance, scale, commands, dead features, splitting, concept coverage
    and features against neurons (each: its report, or why it was not measured), what is
    missing."""
    lines = ["# Findings across dictionary sizes", "",
             f"> **Generated** by `{commands['all']}` on {generated}. Do not edit by hand: run "
             "the commands below again to regenerate it.", ""]
    lines += _scale(dead, splitting, note)
    lines += ["## Commands", "", "```bash"]
    if commands.get("sweep"):
        lines.append(f"{commands['sweep']}  # from the sweep's sweep_cfg.json")
    lines += [str(commands["dead"]), str(commands["splitting"])]
    if commands.get("concepts"):
        lines.append(str(commands["concepts"]))
    lines += [str(commands["neurons"])] if commands.get("neurons") else []
    lines += ["```", "", f"`{commands['all']}` runs them and writes this file.", ""]
    lines += _dead(dead, images.get("dead"))
    lines += _splitting(splitting, images.get("splitting"), html_page)
    if concepts is not None:
        lines += concept_lines(concepts, images.get("concepts"))
    if neurons is not None:
        lines += _neurons(neurons, images.get("neurons"))
    lines += ["## Not built yet", "",
              "- how much more interpretable features are than neurons by automated "
              "interpretability scores, across sizes (`monosemantic neurons` builds the "
              "neurons' database; the comparison is not part of this report).", ""]
    return "\n".join(lines)


def _scale(dead: dict[str, Any], splitting: dict[str, Any], note: str) -> list[str]:
    out = ["## Scale", ""]
    for s in dead["series"]:
        pts = s["points"]
        h = s["holdout"]
        sizes = sorted({p["n_features"] for p in pts})
        tokens = sorted({p["tokens"] for p in pts})
        out.append(f"- **{s['series']}**: dictionary sizes {', '.join(f'{n:,}' for n in sizes)};"
                   f" training tokens per run {', '.join(f'{t:,}' for t in tokens)}; measured "
                   f"on {h['n_tokens']:,} held-out tokens (rows {h['rows'][0]:,} to "
                   f"{h['rows'][1]:,} of the store `{h['store']}`), the same for every size.")
    out.append("- This is a small measurement: the paper's dictionaries have 1M to 34M features "
               "and were trained on far more tokens of a far larger model.")
    if note:
        out.append(f"- {note}")
    return out + [""]



def _dead(report: dict[str, Any], image: str | None) -> list[str]:
    out = ["## Dead and ultra-rare features", ""]
    d = report["definitions"]
    out += [f"- **dead**: {d['dead_fraction']};", f"- **silent**: {d['silent_fraction']};",
            f"- **ultra-rare**: {d['ultra_rare_fraction']}.", ""]
    for s in report["series"]:
        out += [f"**{s['series']}** (ultra-rare below {s['rare_threshold']:g}):", "",
                "| run | features | training tokens | dead | dead window (tokens) | silent "
                "| ultra-rare |", "|---|---:|---:|---:|---:|---:|---:|"]
        for p in s["points"]:
            window = "n/a" if p["dead_window_tokens"] is None else f"{p['dead_window_tokens']:,}"
            out.append(f"| {p['run']} | {p['n_features']:,} | {p['tokens']:,} | "
                       f"{percent(p['dead_fraction'])} | {window} | "
                       f"{percent(p['silent_fraction'])} | "
                       f"{percent(p['ultra_rare_fraction'])} |")
        out += [f"| *paper, {p['quoted']} features* | {p['n_features']:,} | | "
                f"{percent(p['dead_fraction'])} | | | |" for p in report["paper"]]
        out.append("")
    out += [report["caveat"], ""]
    if image:
        out += [f"![dead and ultra-rare fractions against dictionary size]({image})", ""]
    return out


def _splitting(report: dict[str, Any], image: str | None, html_page: str) -> list[str]:
    m = report["config"]["match"]
    out = ["## Feature splitting", "",
           f"Each feature of the larger SAE of a pair gets as parent its most similar feature "
           f"of the smaller SAE, by decoder cosine and, separately, by activation correlation on "
           f"the held-out tokens; it is a child when the similarity is at least "
           f"{m['child_threshold']:g}. A smaller-SAE feature **splits** with 2 or more children, "
           f"**persists** with one child at {m['persist_threshold']:g} or more, **drifts** with "
           f"one child below that, **vanishes** with none; a larger-SAE feature **appears** "
           "without a parent. Shares are over the features that fire on the held-out tokens. "
           "*Same index*: the share of children that have their parent's feature index (high when "
           "the sizes started from the same initial directions).",
           ""]
    for s in report["series"]:
        out += [f"**{s['series']}**:", "",
                "| pair | measure | correlated pairs | " + " | ".join(SMALL_CLASSES)
                + " | appear | same index |",
                "|---|---|---|" + "---:|" * (len(SMALL_CLASSES) + 2)]
        for p in s["pairs"]:
            for measure in MEASURES:
                by = p["by"][measure]
                cells = " | ".join(percent(by["small"]["shares"][c]) for c in SMALL_CLASSES)
                out.append(f"| {p['small']['n_features']:,} → {p['large']['n_features']:,} | "
                           f"{measure} | {p['correlation_pairs']} | {cells} | "
                           f"{percent(by['large']['shares']['appear'])} | "
                           f"{percent(p['same_index'][measure])} |")
        out.append("")
        out += [f"**Warning**: {w}." for w in s["warnings"]] + ([""] if s["warnings"] else [])
        out += _families(s)
    for label, message in report["failed"].items():
        out += [f"{label}: not measured: {message}", ""]
    out += [report["note"], ""]
    if image:
        out += [f"![split, persist and appear shares against dictionary size]({image})", ""]
    out += [f"Browse every family in [{html_page}]({html_page}) (self-contained; open the "
            "file in a browser).", ""]
    return out


def _families(series: dict[str, Any]) -> list[str]:
    fams = series["families"]
    trees = sorted(fams["trees"], key=lambda t: (-descendants(t), t["feature"]))
    if not trees:
        return []
    out = [f"Largest families (parent links by {fams['by']}; at most {CHILDREN_SHOWN} children "
           "per feature listed; *then* is the feature's class in the next size):", ""]
    for tree in trees[:FAMILIES_SHOWN]:
        out += _tree_lines(tree, 0)
    return out + [""]


def _tree_lines(node: dict[str, Any], depth: int) -> list[str]:
    bits = [f"F={node['n_features']:,} #{node['feature']}"]
    if "decoder_cosine" in node:
        cos, r = node["decoder_cosine"], node["correlation"]
        bits.append(f"to parent cos {'n/a' if cos is None else f'{cos:.2f}'}, "
                    f"r {'n/a' if r is None else f'{r:.2f}'}")
    bits.append(f"freq {node['frequency']:.1e}")
    if node.get("top_tokens"):
        bits.append(" ".join(f"`{t!r}`" for t in node["top_tokens"]))
    if node.get("class"):
        bits.append(f"then **{node['class']}**")
    lines = ["  " * depth + "- " + ", ".join(bits)]
    children = node.get("children") or []
    for child in children[:CHILDREN_SHOWN]:
        lines += _tree_lines(child, depth + 1)
    if len(children) > CHILDREN_SHOWN:
        lines.append("  " * (depth + 1) + f"- … {len(children) - CHILDREN_SHOWN} more")
    return lines


def concept_lines(report: dict[str, Any] | str, image: str | None) -> list[str]:
    """The concept coverage section: definitions, per series the covered share by frequency
    bin and size, by kind, the fits, the figure (with the series it shows)."""
    out = ["## Concept frequency against coverage", ""]
    if isinstance(report, str):
        return out + [f"Not measured: {report}", ""]
    cov, con = report["config"]["coverage"], report["config"]["concepts"]
    out += [f"Concepts are defined from the decoded held-out tokens (every token id, Python "
            "keywords, capitalised and other whole words by their last token, every token of "
            "imported library names, and the classes keyword / capitalised / library), each "
            f"with at least {con['min_count']} occurrences; a concept on exactly the tokens of "
            "an earlier one is dropped. For each size, a concept's best feature is the one of "
            "highest F1 between \"the feature fires\" (code > "
            f"{cov['act_threshold']:g}) and \"the concept occurs\" on the held-out tokens; the "
            f"concept is **covered** when that F1 is at least {cov['cover_threshold']:g}. "
            "Frequency: occurrences / held-out tokens. Fits: logistic regression of covered on "
            "log10 frequency per size, and pooled with log10 F (ridge "
            f"{cov['ridge']:g} on the slopes).", ""]
    for s in report["series"]:
        out += _concept_series(s)
    for label, message in report["failed"].items():
        out += [f"{label}: not measured: {message}", ""]
    out += [report["note"], ""]
    if image:
        shown = "; ".join(f"{s['series']} on {s['model']} `{s['hook']}`"
                          for s in report["series"])
        out += [f"![covered share of concepts against their frequency, per size]({image})", "",
                f"*Figure*: {shown}. Dots: covered share per frequency bin; dashed: the "
                "per-size logistic fit.", ""]
    return out


def _concept_series(s: dict[str, Any]) -> list[str]:
    h = s["holdout"]
    heads = " | ".join(f"F={n:,}" for n in s["sizes"])
    out = [f"**{s['series']}** ({s['model']}, `{s['hook']}`; runs {', '.join(s['runs'])}): "
           f"{s['n_concepts']:,} concepts on {h['n_tokens']:,} held-out tokens "
           f"({s['duplicates_dropped']:,} duplicates dropped), tokenizer of `{s['tokenizer']}`.",
           "", f"| frequency | concepts | {heads} |", "|---|---:|" + "---:|" * len(s["sizes"])]
    for b in s["curve"]:
        lo, hi = b["frequency_range"]
        out.append(f"| {lo:.1e} – {hi:.1e} | {b['n_concepts']:,} | "
                   + " | ".join(percent(v) for v in b["covered_share"]) + " |")
    out.append(f"| **all** | {s['n_concepts']:,} | "
               + " | ".join(percent(v) for v in s["covered_share"]) + " |")
    out += ["", f"| kind | concepts | {heads} |", "|---|---:|" + "---:|" * len(s["sizes"])]
    for kind, k in s["by_kind"].items():
        out.append(f"| {kind} | {k['n_concepts']:,} | "
                   + " | ".join(percent(v) for v in k["covered_share"]) + " |")
    out += [""] + [f"- {line}" for line in fit_lines(s["fits"])] + [""]
    return out


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _neurons(report: dict[str, Any] | str, image: str | None) -> list[str]:
    out = ["## Features against neurons", ""]
    if isinstance(report, str):
        return out + [f"Not measured: {report}", ""]
    d = report["definitions"]
    out += [f"- **feature max |r|**: {d['feature_max_abs_r']};",
            f"- **neuron max |r|**: {d['neuron_max_abs_r']};",
            f"- **weak**: {d['share_weak']};",
            f"- **silent**: {d['silent']}; **constant**: {d['constant']};",
            f"- **rare**: {d['rare']}.", ""]
    for s in report["series"]:
        nrn, h = s["neurons"], s["holdout"]
        out += [f"**{s['series']}**: `{s['hook']}` against the {nrn['n_neurons']:,} neurons of "
                f"`{s['mlp_hook']}`, on {s['n_tokens']:,} tokens (store rows {h['rows'][0]:,} "
                f"to {h['rows'][1]:,}); weak: max |r| < {s['weak_r']:g}; "
                f"{replay_line(s['replay'])}.", "",
                "| run | features | measured | silent | constant | weak (of measured) "
                "| median max \\|r\\| | 90th pct | rare | weak, rare left out "
                "| median, rare left out |", "|---|" + "---:|" * 10]
        for p in s["points"]:
            out.append(f"| {p['run']} | {p['n_features']:,} | {p['features_measured']:,} | "
                       f"{p['features_silent']:,} | {p['features_constant']:,} | "
                       f"{percent(p['feature_share_weak'])} | "
                       f"{_num(p['feature_median_max_abs_r'])} | "
                       f"{_num(p['feature_p90_max_abs_r'])} | {p['features_rare']:,} | "
                       f"{percent(p['feature_share_weak_common'])} | "
                       f"{_num(p['feature_median_max_abs_r_common'])} |")
        out += [f"| *neurons vs other neurons* | {nrn['n_neurons']:,} | "
                f"{nrn['neurons_measured']:,} | | {nrn['neurons_constant']:,} | "
                f"{percent(nrn['neuron_share_weak'])} | {_num(nrn['neuron_median_max_abs_r'])} | "
                f"{_num(nrn['neuron_p90_max_abs_r'])} | | | |", ""]
    out += [report["note"], ""]
    if image:
        out += [f"![features' and neurons' max |r| with a neuron]({image})", ""]
    return out
