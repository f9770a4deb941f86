"""Hook point names (TransformerLens style) -> HF module paths, per layout family.

Canonical names: `blocks.{L}.hook_resid_pre`, `blocks.{L}.hook_resid_post`,
`blocks.{L}.hook_attn_out`, `blocks.{L}.hook_mlp_in`, `blocks.{L}.mlp.hook_post`,
`blocks.{L}.hook_mlp_out`. `hook_mlp_in` is the MLP module's input (after the pre-MLP norm).
A raw HF module path (e.g. `model.layers.3.mlp`) is accepted too: its output is hooked
(the first element when the module returns a tuple).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from torch import nn

from monosemantic.errors import UserError
from monosemantic.models.families import Family

# kind -> suffix after `blocks.{L}.`, in forward order; resid_pre, mlp_in and mlp_post read a
# module's *input*.
KIND_SUFFIXES: dict[str, str] = {
    "resid_pre": "hook_resid_pre",
    "attn_out": "hook_attn_out",
    "mlp_in": "hook_mlp_in",
    "mlp_post": "mlp.hook_post",
    "mlp_out": "hook_mlp_out",
    "resid_post": "hook_resid_post",
}
INPUT_KINDS = frozenset({"resid_pre", "mlp_in", "mlp_post"})
_CANONICAL = re.compile(r"^blocks\.(\d+)\.(hook_resid_pre|hook_resid_post|hook_attn_out|"
                        r"hook_mlp_in|hook_mlp_out|mlp\.hook_post)$")


@dataclass(frozen=True)
class HookPoint:
    """One place in the forward pass where activations are read or edited."""

    name: str
    """Canonical name, e.g. `blocks.6.hook_resid_post` (or the module path for raw modules)."""
    module_path: str
    """Dotted path of the hooked HF module, as in `model.get_submodule(module_path)`."""
    layer: int
    """Block index; -1 for a raw module outside the blocks (embeddings, final norm, lm_head)."""
    kind: str
    """`resid_pre`, `resid_post`, `attn_out`, `mlp_in`, `mlp_out`, `mlp_post`, or `module`
    (raw path)."""
    width: int
    """Last dimension of the activation (d_model, or d_mlp for `mlp_post`)."""

    @property
    def reads_input(self) -> bool:
        """True when the activation is the module's first input rather than its output."""
        return self.kind in INPUT_KINDS


def canonical_point(family: Family, blocks: str, n_layers: int, d_model: int, d_mlp: int,
                    name: str) -> HookPoint | None:
    """The HookPoint for a canonical name, None if `name` is not canonical."""
    match = _CANONICAL.match(name)
    if match is None:
        return None
    layer = int(match.group(1))
    if layer >= n_layers:
        raise UserError(f"hook point {name!r}: layer {layer} does not exist, this model has "
                        f"layers 0..{n_layers - 1}")
    kind = next(k for k, suffix in KIND_SUFFIXES.items() if suffix == match.group(2))
    block = f"{blocks}.{layer}"
    module = {"resid_pre": block, "resid_post": block,
              "attn_out": f"{block}.{family.attn_out}", "mlp_in": f"{block}.{family.mlp}",
              "mlp_out": f"{block}.{family.mlp_out}",
              "mlp_post": f"{block}.{family.mlp_down}"}[kind]
    width = d_mlp if kind == "mlp_post" else d_model
    return HookPoint(name=name, module_path=module, layer=layer, kind=kind, width=width)


def all_canonical_names(n_layers: int) -> list[str]:
    """Every canonical hook name of a model, in forward order."""
    return [f"blocks.{layer}.{suffix}" for layer in range(n_layers)
            for suffix in KIND_SUFFIXES.values()]


def raw_module_layer(blocks: str, module_path: str) -> int:
    """Block index of a raw module path, -1 when it is not inside a block."""
    match = re.match(re.escape(blocks) + r"\.(\d+)(\.|$)", module_path)
    return int(match.group(1)) if match else -1


def unknown_hook_error(name: str, n_layers: int, model: nn.Module, blocks: str) -> UserError:
    """A UserError listing the valid names (canonical ones abbreviated over layers)."""
    suffixes = ", ".join(f"blocks.{{L}}.{s}" for s in KIND_SUFFIXES.values())
    close = [path for path, _ in model.named_modules() if path and name in path][:5]
    hint = f" Modules whose path contains {name!r}: {', '.join(close)}." if close else ""
    return UserError(
        f"unknown hook point {name!r}. Valid names: {suffixes} for L in 0..{n_layers - 1}, "
        f"or a module path of the HF model such as '{blocks}.0' "
        f"(`monosemantic hooks --model ...` lists them).{hint}"
    )


_PATTERN_NAME = re.compile(r"^blocks\.([^.]+)\.(.+)$")


def parse_layers(spec: str, n_layers: int, what: str = "layers") -> list[int]:
    """Layers from `all` / `*`, `6`, `0-5`, or a comma list of those (`0-5,8`), sorted, each
    checked against 0..n_layers-1."""
    text = spec.strip().lower()
    if text in ("all", "*"):
        return list(range(n_layers))
    layers: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None:
            raise UserError(f"{what} {spec!r}: give `all`, a layer (6), a range (0-5) or a "
                            "comma list of them (0-5,8)")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise UserError(f"{what} {spec!r}: the range {first}-{last} runs backwards")
        if last >= n_layers:
            raise UserError(f"{what} {spec!r}: layer {last} does not exist, this model has "
                            f"layers 0..{n_layers - 1}")
        layers.update(range(first, last + 1))
    return sorted(layers)


def is_hook_pattern(name: str) -> bool:
    """A name that stands for several hook points: a wildcard (`blocks.*.hook_mlp_in`) or a
    layer list in the layer's place (`blocks.0-5.hook_mlp_out`, `blocks.2,4.hook_mlp_in`)."""
    if any(c in name for c in "*?["):
        return True
    match = _PATTERN_NAME.match(name)
    return match is not None and re.fullmatch(r"[\d,\-\s]+", match.group(1)) is not None \
        and not match.group(1).isdigit()


def expand_hook_patterns(names: list[str] | tuple[str, ...], n_layers: int) -> list[str]:
    """`names` with every pattern (`is_hook_pattern`) replaced by the canonical hook points it
    matches, in forward order; plain names are kept as they are (checked when hooked). A name
    listed twice after expansion is kept once. A pattern that matches nothing is a UserError."""
    canonical = all_canonical_names(n_layers)
    out: list[str] = []
    for name in names:
        matched = _matches(name, canonical, n_layers) if is_hook_pattern(name) else [name]
        if not matched:
            raise UserError(f"hook pattern {name!r} matches no hook point of this model "
                            f"(layers 0..{n_layers - 1}); patterns look like "
                            "blocks.*.hook_mlp_in or blocks.0-5.hook_mlp_out "
                            "(`monosemantic hooks --model ...` lists the names)")
        out.extend(n for n in matched if n not in out)
    return out


def _matches(pattern: str, canonical: list[str], n_layers: int) -> list[str]:
    match = _PATTERN_NAME.match(pattern)
    if match is None:
        return [n for n in canonical if fnmatch.fnmatchcase(n, pattern)]
    layer_spec, suffix = match.groups()
    if layer_spec != "*" and any(c in layer_spec for c in "*?["):
        layers = list(range(n_layers))
        layer_ok = [str(layer) for layer in layers
                    if fnmatch.fnmatchcase(str(layer), layer_spec)]
    else:
        layer_ok = [str(layer) for layer in parse_layers(layer_spec, n_layers,
                                                         what=f"hook pattern {pattern!r}, layers")]
    return [n for n in canonical
            if (m := _PATTERN_NAME.match(n)) is not None and m.group(1) in layer_ok
            and fnmatch.fnmatchcase(m.group(2), suffix)]
