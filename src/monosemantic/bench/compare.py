"""The comparison of the benchmarked runs: one row per run of every metric's summary figures
(the printed table and OUT/bench.md), and the seed-consistency pairs."""

from __future__ import annotations

from typing import Any


def summary_rows(results: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows): the run name, then every summary figure in metric order."""
    columns: list[str] = []
    for result in results.values():
        for metric in result["metrics"].values():
            columns += [c for c in (metric.get("summary") or {}) if c not in columns]
    rows = []
    for name, result in results.items():
        merged: dict[str, Any] = {}
        for metric in result["metrics"].values():
            merged.update(metric.get("summary") or {})
        rows.append([name, *(merged.get(c) for c in columns)])
    return ["run", *columns], rows


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3f}"
    return str(value)


def format_table(columns: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table (the printed comparison)."""
    cells = [columns, *[[cell(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                       enumerate(zip(row, widths))) for row in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def markdown_table(columns: list[str], rows: list[list[Any]]) -> str:
    head = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join([head, rule, *body])


def consistency_table(pairs: list[dict[str, Any]]) -> str:
    """Markdown lines of the seed-consistency pairs (empty without pairs)."""
    if not pairs:
        return ""
    lines = ["| run A | run B | mean matched cosine | share > 0.9 | method |",
             "|---|---|---|---|---|"]
    lines += [f"| {p['a']} | {p['b']} | {p['mean_cosine']:.3f} | {p['share_above_0.9']:.3f} "
              f"| {p['method']} |" for p in pairs]
    return "\n".join(lines)


def bench_markdown(report: dict[str, Any], columns: list[str], rows: list[list[Any]]) -> str:
    """OUT/bench.md: the table, where each figure came from, the consistency pairs."""
    parts = ["# SAE benchmark", "", f"Runs: {', '.join(report['runs'])}.", "",
             markdown_table(columns, rows), ""]
    sources = {name: r["metrics"].get("reconstruction", {}).get("source")
               for name, r in report["results"].items()}
    if any(sources.values()):
        parts += ["Sources of l0 / variance_explained / loss_recovered: "
                  + "; ".join(f"{n}: {', '.join(f'{k} from {v}' for k, v in s.items())}"
                              for n, s in sources.items() if s), ""]
    parts += ["Every other figure is measured on each run's sample of store rows (its held-out "
              "rows, or --rows; see each OUT/<run>/bench.json), except the absorption columns "
              "(the model's own first-letter prompts). Column meanings: docs/bench.md.", ""]
    table = consistency_table(report["consistency"])
    if table:
        parts += ["## Decoder consistency (seed pairs and --pair)", "", table, ""]
    return "\n".join(parts)
