"""Where the findings are written, and how."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import MISSING, Field, fields, is_dataclass
from pathlib import Path
from typing import Any

from monosemantic.console import say
from monosemantic.fsutil import atomic_write_text, json_ready

FINDINGS_DIR = "findings"
"""Sub-folder of the sweep folder the findings are written to."""
FORMAT_VERSION = 1


def findings_dir(out: Path) -> Path:
    path = Path(out) / FINDINGS_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def percent(value: float | None) -> str:
    """A share as a percentage with one decimal; "n/a" when it could not be measured."""
    return "n/a" if value is None else f"{value:.1%}"


def publish(folder: Path, json_name: str, png_name: str, report: dict[str, Any],
            plot: Callable[[dict[str, Any], Path], Path | None], lines: list[str]) -> Path:
    """Write a finding's report as `folder/json_name` and its figure as `folder/png_name`,
    print its table (`lines`) and what was written; the JSON's path."""
    path = write_json(folder / json_name, report)
    png = plot(report, folder / png_name)
    say("\n".join(lines))
    say(f"wrote {path}")
    say(f"wrote {png}" if png else "no PNG: matplotlib is not installed")
    return path


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Strict JSON (NaN and inf become null), atomically."""
    atomic_write_text(Path(path), json.dumps(json_ready(data), indent=1) + "\n")
    return Path(path)



def command_line(command: str, cfg: Any) -> str:
    """`monosemantic COMMAND OUT --option value ...` that reproduces `cfg`: the positional
    field, then every option that differs from its default (nested options by their short
    name, as the findings commands accept them)."""
    parts = ["monosemantic", *command.split()]
    parts += _options(cfg)
    return " ".join(shlex.quote(p) for p in parts)


def _options(cfg: Any) -> list[str]:
    out: list[str] = []
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if f.metadata.get("positional"):
            out.insert(0, str(value))
            continue
        if is_dataclass(value):
            out += _options(value)
            continue
        if value == _default(f):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, (list, tuple)):
            out += [flag, *(str(v) for v in value)]
        else:
            out += [flag, str(value).lower() if isinstance(value, bool) else str(value)]
    return out


def _default(f: Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING
