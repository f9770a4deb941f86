"""`monosemantic hooks`: list a model's hook points with their widths and HF module paths."""

from __future__ import annotations

from dataclasses import dataclass

from monosemantic.console import say
from monosemantic.errors import UserError
from monosemantic.models.hook_points import HookPoint
from monosemantic.models.loading import DEFAULT_MODEL, load_model


@dataclass
class HooksConfig:
    """Options of `monosemantic hooks`."""

    model: str = DEFAULT_MODEL
    """Model: 'gemma-3-270m' (embedded default), a local HF directory, a .gguf file, or a hub id."""
    device: str = "cpu"
    """Torch device to load the model on (e.g. cpu, cuda)."""
    layer: int = -1
    """Only list the hook points of this block (-1: all blocks)."""
    modules: bool = False
    """Also list every raw HF module path (they are valid hook names too: their output is
    hooked)."""


def format_points(points: list[HookPoint]) -> str:
    """One aligned line per hook point: name, width, where it hooks."""
    name_w = max(len(p.name) for p in points)
    lines = [f"{'hook point':<{name_w}}  {'width':>6}  hooks"]
    for p in points:
        site = "input of" if p.reads_input else "output of"
        lines.append(f"{p.name:<{name_w}}  {p.width:>6}  {site} {p.module_path}")
    return "\n".join(lines)


def run_hooks(cfg: HooksConfig) -> list[HookPoint]:
    """Print the hook points of `cfg.model` (activations are [batch, seq, width])."""
    lm = load_model(cfg.model, device=cfg.device)
    if cfg.layer >= lm.n_layers:
        raise UserError(f"--layer {cfg.layer}: this model has layers 0..{lm.n_layers - 1}")
    points = [p for p in lm.hook_points() if cfg.layer < 0 or p.layer == cfg.layer]
    say(f"{cfg.model}: family {lm.family}, {lm.n_layers} layers, d_model {lm.d_model}, "
        f"d_mlp {lm.d_mlp}; activations are [batch, seq, width]")
    if points:
        say(format_points(points))
    if cfg.modules:
        say("\nraw module paths (hook name = path; the module's output is hooked):")
        for path, module in lm.model.named_modules():
            if path:
                say(f"  {path}  ({type(module).__name__})")
    return points
