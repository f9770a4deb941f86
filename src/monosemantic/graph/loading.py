"""Transcoder runs (or a transcoder-set folder), or one cross-layer transcoder run -> a
`Replacement` (`TranscoderSet` or `CLTReplacement`) and its model, checked.

A transcoder-set folder holds `transcoders.json` = {"version": 1, "model": SPEC, "layers":
{"6": "layer_06", ...}} with run folders relative to it. Every run must be a transcoder
reading `blocks.L.hook_mlp_in` and writing `blocks.L.hook_mlp_out` of the same L, one per
layer, all of one model. A CLT run (docs/clt.md) replaces all its layers at once: it is given
alone, never with per-layer transcoders or another CLT.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from monosemantic.errors import UserError
from monosemantic.graph.replacement import CLTReplacement, Replacement, TranscoderSet
from monosemantic.models import LoadedModel
from monosemantic.runs import RunDir

SET_FILE = "transcoders.json"
_MLP_IN = re.compile(r"^blocks\.(\d+)\.hook_mlp_in$")


@dataclass
class TranscoderRuns:
    """The runs of a replacement model, by layer, and the model spec they share; or one
    cross-layer transcoder run (`clt`, with `runs` empty)."""

    runs: dict[int, RunDir]
    model: str
    clt: RunDir | None = None


def _set_members(folder: Path) -> tuple[list[Path], str]:
    """The run folders a transcoder-set folder lists, and its model spec."""
    path = folder / SET_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != 1 \
            or not isinstance(data.get("layers"), dict) or "model" not in data:
        raise UserError(f"{path} is not a transcoder set (expected version 1 with 'model' and "
                        "'layers': {\"6\": \"layer_06\", ...})")
    members = [folder / str(rel) for _, rel in sorted(data["layers"].items(),
                                                        key=lambda kv: int(kv[0]))]
    return members, str(data["model"])


def _layer_of(run: RunDir) -> int:
    """The layer a transcoder run replaces; a UserError when it cannot replace an MLP."""
    hook_out = run.hook_out
    if hook_out is None:
        raise UserError(
            f"{run.path} is an SAE reading {run.hook}, not a transcoder: a replacement model "
            "needs per-layer transcoders that read blocks.L.hook_mlp_in and write "
            "blocks.L.hook_mlp_out (train one with --hook-in blocks.L.hook_mlp_in "
            "--hook-out blocks.L.hook_mlp_out; docs/transcoders.md)")
    match = _MLP_IN.match(run.hook)
    if match is None or hook_out != f"blocks.{match.group(1)}.hook_mlp_out":
        raise UserError(
            f"{run.path} is a transcoder from {run.hook} to {hook_out}: a replacement model "
            "needs transcoders from blocks.L.hook_mlp_in to blocks.L.hook_mlp_out of the same "
            "layer L (they replace that layer's MLP)")
    return int(match.group(1))


def find_runs(paths: list[Path], model: str | None = None) -> TranscoderRuns:
    """The runs named by `paths` (run folders or transcoder-set folders), one per layer.
    `model` replaces the recorded spec (a moved model) for every run."""
    if not paths:
        raise UserError("give at least one transcoder run (or a transcoder-set folder, or one "
                        "cross-layer transcoder run)")
    runs: dict[int, RunDir] = {}
    clts: list[RunDir] = []
    specs: dict[str, Path] = {}
    for path in paths:
        path = Path(path)
        members = [path]
        if (path / SET_FILE).is_file():
            members, spec = _set_members(path)
            specs.setdefault(spec, path)
        for member in members:
            run = RunDir.open(member)
            specs.setdefault(run.model, run.path)
            if run.is_clt:
                clts.append(run)
                continue
            layer = _layer_of(run)
            if layer in runs:
                raise UserError(f"two transcoders for layer {layer}: {runs[layer].path} and "
                                f"{run.path}; give one per layer")
            runs[layer] = run
    _check_one_clt(clts, runs)
    if len(specs) > 1 and model is None:
        listed = "; ".join(f"{spec!r} ({where})" for spec, where in specs.items())
        raise UserError(f"the transcoders are of different models: {listed}. A replacement "
                        "model needs transcoders of one model (give --model to override when "
                        "these name one model in two ways)")
    return TranscoderRuns(dict(sorted(runs.items())), model or next(iter(specs)),
                          clts[0] if clts else None)


def _check_one_clt(clts: list[RunDir], runs: dict[int, RunDir]) -> None:
    """A CLT replaces several MLPs at once: it must be the only run given."""
    if len(clts) > 1:
        raise UserError(f"two cross-layer transcoders: {clts[0].path} and {clts[1].path}; "
                        "give one CLT run (it replaces all its layers)")
    if clts and runs:
        listed = ", ".join(str(run.path) for run in runs.values())
        raise UserError(f"{clts[0].path} is a cross-layer transcoder; it cannot be mixed with "
                        f"per-layer transcoders ({listed}): give the CLT run alone, or only "
                        "per-layer transcoder runs")


def load_replacement(found: TranscoderRuns, device: str) -> tuple[LoadedModel, Replacement]:
    """The model (float32) and the frozen replacement (transcoders or one CLT) on `device`,
    widths checked."""
    if found.clt is not None:
        return _load_clt(found.clt, found.model, device)
    first = next(iter(found.runs.values()))
    lm = first.load_model(device, spec=found.model)
    transcoders = {}
    for layer, run in found.runs.items():
        if layer >= lm.n_layers:
            raise UserError(f"{run.path} replaces layer {layer}; {lm.spec} has layers "
                            f"0..{lm.n_layers - 1}")
        tc = run.load_sae(lm.device).requires_grad_(False)
        for hook, width, role in ((run.hook, tc.cfg.d_in, "reads"),
                                  (run.hook_out, tc.cfg.d_out, "writes")):
            assert hook is not None
            if lm.hook_point(hook).width != width:
                raise UserError(f"{run.path} {role} width {width} at {hook}; {lm.spec} has "
                                f"{lm.hook_point(hook).width} there: give the model it was "
                                "trained on")
        transcoders[layer] = tc
    sources = {layer: str(run.path.resolve()) for layer, run in found.runs.items()}
    return lm, TranscoderSet(transcoders, sources)


def _load_clt(run: RunDir, model: str, device: str) -> tuple[LoadedModel, CLTReplacement]:
    """The model (float32) and the run's frozen CLT, every layer's sites checked."""
    lm = run.load_model(device, spec=model)
    clt = run.load_clt(lm.device).requires_grad_(False)
    for layer in clt.layers:
        if layer >= lm.n_layers:
            raise UserError(f"{run.path} is a CLT over layers {list(clt.layers)}; {lm.spec} has "
                            f"layers 0..{lm.n_layers - 1}: give the model it was trained on")
        for hook, width, role in ((f"blocks.{layer}.hook_mlp_in", clt.d_in, "reads"),
                                  (f"blocks.{layer}.hook_mlp_out", clt.d_out, "writes")):
            if lm.hook_point(hook).width != width:
                raise UserError(f"{run.path} {role} width {width} at {hook}; {lm.spec} has "
                                f"{lm.hook_point(hook).width} there: give the model it was "
                                "trained on")
    return lm, CLTReplacement(clt, str(run.path.resolve()))
