"""Item 3's check: the graph's predicted effect of ablating each feature against the effect
measured in the real model with the replacement spliced in.

Predicted: in the graph's linear model each feature's activation moves one for one with its
pre-activation (slope 1 of ReLU / JumpReLU / TopK above their cut) and tokens and errors stay
fixed, so J[t, s] = A[t, s] / a_s is d input_t / d a_s, the total derivative of the target
logit node along every path is d = j_t + j_t·J + j_t·J² + ... (over feature nodes), and
ablating s (a_s -> 0) is predicted to change the target by −a_s·d_s. `predicted` uses the
pruned graph's kept edges, `predicted_full` every edge.

Measured: one forward per ablation, batched with an unablated row: every replaced layer's
`hook_mlp_out` is the replacement's output re-encoded from that forward's own `hook_mlp_in`
(attention and norms live, codes at special positions zeroed) plus the error node of the
clean prompt (kept constant); unreplaced layers' outputs are their clean outputs (their
error nodes). The ablated feature's code is set to 0 at its position after encoding (no
top-k reselection at its own layer; later layers re-encode). Effect = target(ablated) −
target(unablated row), the target being the logit node's logit minus the mean logit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from monosemantic.graph.frozen import CleanRun, freeze_hooks, head_path, module_hooks
from monosemantic.graph.nodes import NodeSet, valid_positions
from monosemantic.graph.replacement import Replacement
from monosemantic.models import HookPoint, LoadedModel, edit
from monosemantic.progress import progress
from monosemantic.steer.correlation import pearson


def total_derivative(adj: Tensor, nodes: NodeSet, target: int) -> Tensor:
    """d target input / d a_s for every feature s [n_features], along every path of `adj`."""
    n_f = nodes.n_features
    act_F = nodes.act_N  # active features: nonzero by definition
    jac_FF = adj[:n_f, :n_f] / act_F[None, :]
    term_F = adj[target, :n_f] / act_F
    total_F = term_F.clone()
    for _ in range(nodes.n_layers + 2):
        term_F = term_F @ jac_FF
        if not term_F.any():
            break
        total_F += term_F
    return total_F


def predicted_effects(adj: Tensor, nodes: NodeSet, target: int, features_M: Tensor) -> Tensor:
    """Predicted change of the target when each feature of `features_M` is ablated."""
    return -nodes.act_N[features_M] * total_derivative(adj, nodes, target)[features_M]


def _spliced_edits(lm: LoadedModel, replacement: Replacement, nodes: NodeSet, valid_S1: Tensor,
                   ablate: list[tuple[int, int, int]], batch: int
                   ) -> dict[str | HookPoint, Callable[[Tensor], Tensor]]:
    """Edits splicing the replacement in, row r + 1 ablating `ablate[r]` (layer, pos, id)."""
    seen: dict[int, Tensor] = {}
    codes: dict[int, Tensor] = {}

    def read_in(layer: int) -> Callable[[Tensor], Tensor]:
        def read(act: Tensor) -> Tensor:
            seen[layer] = act
            if layer in replacement.layers:
                codes_BSF = replacement.encode(layer, act) * valid_S1
                for row, (src, pos, feat) in enumerate(ablate, start=1):
                    if src == layer:
                        codes_BSF[row, pos, feat] = 0.0
                codes[layer] = codes_BSF
            return act

        return read

    def write_out(layer: int) -> Callable[[Tensor], Tensor]:
        error_1SD = nodes.values.errors[layer][None]

        def write(act: Tensor) -> Tensor:
            value = error_1SD.to(act.dtype).expand(batch, -1, -1)
            if layer in replacement.layers:
                value = replacement.output(layer, codes, seen[layer]).to(act.dtype) + value
            return value

        return write

    edits: dict[str | HookPoint, Callable[[Tensor], Tensor]] = {}
    for layer in range(lm.n_layers):
        edits[f"blocks.{layer}.hook_mlp_in"] = read_in(layer)
        edits[f"blocks.{layer}.hook_mlp_out"] = write_out(layer)
    return edits


@torch.no_grad()
def spliced_targets(lm: LoadedModel, clean: CleanRun, replacement: Replacement,
                    nodes: NodeSet, token_id: int, ablate: list[tuple[int, int, int]],
                    frozen: bool = False) -> Tensor:
    """Target (logit − mean logit at the last position) of the spliced model [1 + len]:
    row 0 unablated, row r + 1 with `ablate[r]` ablated. `frozen` also freezes attention
    patterns and norm denominators at the clean prompt (a test of the graph's arithmetic:
    then only the features' re-encoding is not linear)."""
    batch = len(ablate) + 1
    valid_S1 = valid_positions(lm, clean.ids_1S)[:, None].to(clean.emb_SD.device)
    seen: dict[str, Tensor] = {}

    def head_hook(_module, _args, output):
        seen["head"] = output

    hooks = freeze_hooks(lm, clean) if frozen else {}
    hooks[head_path(lm)] = head_hook
    with module_hooks(lm, hooks), \
            edit(lm, _spliced_edits(lm, replacement, nodes, valid_S1, ablate, batch)):
        lm.model(input_ids=clean.ids_1S.to(lm.device).expand(batch, -1), use_cache=False)
    last_BV = seen["head"][:, -1]
    last_BV = last_BV.to(torch.promote_types(last_BV.dtype, torch.float32))
    return (last_BV[:, token_id] - last_BV.mean(-1)).cpu()


def measured_effects(lm: LoadedModel, clean: CleanRun, replacement: Replacement,
                     nodes: NodeSet, token_id: int, features_M: Tensor,
                     batch_size: int = 16) -> Tensor:
    """Measured change of the target when each feature of `features_M` is ablated."""
    triples = [(int(nodes.layer_N[i]), int(nodes.pos_N[i]), int(nodes.feature_N[i]))
               for i in features_M.tolist()]
    out: list[Tensor] = []
    step = max(1, batch_size - 1)
    with progress(len(triples), desc="ablations", unit="feature") as bar:
        for start in range(0, len(triples), step):
            chunk = triples[start:start + step]
            target_B = spliced_targets(lm, clean, replacement, nodes, token_id, chunk)
            out.append(target_B[1:] - target_B[0])
            bar.update(len(chunk))
    return torch.cat(out) if out else torch.zeros(0)


@dataclass
class InterventionCheck:
    """Predicted against measured ablation effects on the target, over the pruned graph's
    feature nodes."""

    features_M: Tensor
    predicted_M: Tensor
    predicted_full_M: Tensor
    measured_M: Tensor
    pearson: float | None = field(init=False)
    pearson_full: float | None = field(init=False)

    def __post_init__(self) -> None:
        self.pearson = pearson(self.predicted_M, self.measured_M)
        self.pearson_full = pearson(self.predicted_full_M, self.measured_M)


def check_interventions(lm: LoadedModel, clean: CleanRun, replacement: Replacement,
                        nodes: NodeSet, adj: Tensor, kept_adj: Tensor, features_M: Tensor,
                        batch_size: int = 16) -> InterventionCheck:
    """Ablate every feature of `features_M`; predict with the pruned (`kept_adj`) and the
    whole (`adj`) graph. The target is the first logit node."""
    target = nodes.logit_start
    token_id = nodes.logits.token_ids[0]
    return InterventionCheck(
        features_M=features_M,
        predicted_M=predicted_effects(kept_adj, nodes, target, features_M),
        predicted_full_M=predicted_effects(adj, nodes, target, features_M),
        measured_M=measured_effects(lm, clean, replacement, nodes, token_id, features_M,
                                    batch_size))
