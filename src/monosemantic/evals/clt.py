"""Evaluate a cross-layer transcoder (`sae/clt.py`; CLI `eval RUN` on a CLT run).

- Reconstruction on held-out store rows, per target site: the CLT's prediction of
  `blocks.L'.hook_mlp_out` from the MLP inputs of the same row at every CLT layer L ≤ L'
  (variance explained, NMSE, MSE), and each layer's L0.
- Spliced-in loss on fresh contexts: in one forward, every CLT layer's `hook_mlp_in` is read
  (unchanged) and encoded, and every CLT layer's `hook_mlp_out` is replaced by the prediction
  from the codes of that layer and the earlier ones *of the same forward* (so later layers read
  inputs shaped by the earlier replacements: the CLT replaces all those MLPs at once).
  Zero-ablated: all those `hook_mlp_out` set to 0. Both at spliced positions only (not BOS /
  special tokens), scored as `evals.spliced.spliced_loss` scores a single site.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from monosemantic.config import to_dict
from monosemantic.console import say
from monosemantic.errors import UserError
from monosemantic.evals.evaluate import fresh_contexts, unspliced_ids
from monosemantic.evals.loss import LOSS_FORMULAS
from monosemantic.evals.metrics import (
    FVE_FORMULA,
    L0_FORMULA,
    NMSE_FORMULA,
    ReconstructionAccumulator,
)
from monosemantic.evals.spliced import _replace_at, spliced_loss_with
from monosemantic.sae.clt_io import HOOK_IN_TEMPLATE, HOOK_OUT_TEMPLATE

if TYPE_CHECKING:
    from monosemantic.activations import ActivationStore
    from monosemantic.data import ContextBatch
    from monosemantic.evals.report import EvalConfig
    from monosemantic.models import HookPoint, LoadedModel
    from monosemantic.runs import RunDir
    from monosemantic.sae.clt import CrossLayerTranscoder

Edits = dict["str | HookPoint", Callable[[torch.Tensor], torch.Tensor]]


def clt_hook_points(lm: LoadedModel, layers: Sequence[int]) -> list[tuple[HookPoint, HookPoint]]:
    """(hook_mlp_in, hook_mlp_out) of each layer in `lm`; a UserError for a layer the model
    lacks or a layout without an MLP module where the hook should be."""
    points = []
    for layer in layers:
        pair = []
        for template in (HOOK_IN_TEMPLATE, HOOK_OUT_TEMPLATE):
            point = lm.hook_point(template.format(layer=layer))  # UserError past the last layer
            try:
                lm.model.get_submodule(point.module_path)
            except AttributeError:
                raise UserError(f"{point.name}: the {lm.family} layout maps it to "
                                f"{point.module_path!r}, which this model does not have, so a "
                                "CLT cannot be read or spliced here (models/families.py "
                                "names each family's MLP module)") from None
            pair.append(point)
        points.append((pair[0], pair[1]))
    return points


def clt_splice_edits(lm: LoadedModel, clt: CrossLayerTranscoder, splice_BS: torch.Tensor
                     ) -> Edits:
    """Edits that read every CLT layer's MLP input and replace its MLP output (where
    `splice_BS`) by the CLT's prediction from the codes of the same forward."""
    acts: dict[int, torch.Tensor] = {}
    param = next(iter(clt.parameters()), None)
    dtype = torch.float32 if param is None else param.dtype

    def reader(layer: int) -> Callable[[torch.Tensor], torch.Tensor]:
        def read(x_BSD: torch.Tensor) -> torch.Tensor:
            acts[layer] = clt.encode(layer, x_BSD.to(dtype))
            return x_BSD
        return read

    def writer(target: int) -> Callable[[torch.Tensor], torch.Tensor]:
        def predicted(y_BSD: torch.Tensor) -> torch.Tensor:
            sources = [s for s in clt.layers if s <= target]
            if any(s not in acts for s in sources):
                raise RuntimeError(f"layer {target}'s MLP output fired before an MLP input "
                                   "it is predicted from")
            y_hat_BSD = sum((clt.decode_to(s, target, acts[s]) for s in sources[1:]),
                            clt.decode_to(sources[0], target, acts[sources[0]]))
            return (y_hat_BSD + clt.bias(target).to(dtype)).to(y_BSD.dtype)
        return _replace_at(splice_BS, predicted)

    edits: Edits = {}
    for layer, (point_in, point_out) in zip(clt.layers, clt_hook_points(lm, clt.layers)):
        edits[point_in] = reader(layer)
        edits[point_out] = writer(layer)
    return edits


def clt_spliced_loss(lm: LoadedModel, clt: CrossLayerTranscoder,
                     batches: Iterable[ContextBatch | torch.Tensor],
                     keep_token_ids: Sequence[int] | None = None,
                     on_batch: Callable[[int], object] | None = None) -> dict[str, float | int]:
    """CE clean / spliced (every CLT layer's MLP output replaced at once) / zero-ablated (all
    of them 0), loss recovered, KL and ΔCE over `batches`."""
    points = clt_hook_points(lm, clt.layers)

    def zero(splice_BS: torch.Tensor) -> Edits:
        return {out: _replace_at(splice_BS, torch.zeros_like) for _, out in points}

    return spliced_loss_with(lm, batches, zero,
                             lambda splice_BS: clt_splice_edits(lm, clt, splice_BS),
                             keep_token_ids, on_batch)


@torch.no_grad()
def clt_reconstruction(clt: CrossLayerTranscoder, inputs: Sequence[ActivationStore],
                       targets: Sequence[ActivationStore], rows: range,
                       row_batch_size: int = 4096) -> dict[str, Any]:
    """Per target layer `variance_explained`, `nmse`, `mse`; per source layer `l0`; and the
    mean variance explained over the sites, on store `rows` (raw activations)."""
    if len(rows) == 0:
        raise UserError("no held-out rows to evaluate on: train with --holdout-fraction > 0")
    device = clt.b_dec.device
    per_site = {layer: ReconstructionAccumulator() for layer in clt.layers}
    active = dict.fromkeys(clt.layers, 0.0)
    readers = [s.iter_batches(row_batch_size, shuffle=False, rows=rows)
               for s in (*inputs, *targets)]
    n = len(clt.layers)
    for batches in zip(*readers):
        x = {layer: b.to(device) for layer, b in zip(clt.layers, batches[:n])}
        for layer, f_NF in ((layer, clt.encode(layer, x[layer])) for layer in clt.layers):
            active[layer] += float((f_NF != 0).sum())
        for (layer, y_hat_ND), y_ND in zip(clt.predict(x).items(), batches[n:]):
            per_site[layer].update(y_ND.to(device), y_hat_ND)
    sites = {layer: acc.result() for layer, acc in per_site.items()}
    n_rows = next(iter(sites.values()))["n_tokens"]
    return {
        "per_layer": {str(layer): {**{k: v for k, v in r.items() if k != "l0"},
                                   "l0": active[layer] / n_rows}
                      for layer, r in sites.items()},
        "variance_explained_mean": sum(r["variance_explained"] for r in sites.values()) / n,
        "l0_total": sum(active.values()) / n_rows,
        "n_tokens": n_rows,
    }


def run_clt_eval(cfg: EvalConfig, run: RunDir, lm: LoadedModel | None = None) -> dict[str, Any]:
    """`eval` of a CLT run: held-out reconstruction per site, the spliced-in loss with all its
    MLP outputs replaced; writes RUN/eval.json."""
    from monosemantic.activations import ActivationStore
    from monosemantic.data import batch_contexts
    from monosemantic.devices import resolve_device
    from monosemantic.evals.report import write_json
    from monosemantic.progress import progress
    from monosemantic.train.clt_data import clt_store_paths

    if cfg.rows is not None:
        raise UserError("--rows is not implemented for cross-layer transcoders: they are "
                        "scored on their held-out rows (--n-tokens limits them)")
    device = str(resolve_device(cfg.device))
    clt = run.load_clt(device)
    harvest = cfg.store if cfg.store is not None else run.store_path
    if harvest is None:
        raise UserError(f"{run.path} records no harvest folder: give it with --store")
    paths_in, paths_out = clt_store_paths(harvest, clt.layers)
    inputs = [ActivationStore(p) for p in paths_in]
    targets = [ActivationStore(p) for p in paths_out]
    rows = run.holdout_rows if run.holdout_rows is not None else range(inputs[0].n_rows)
    if cfg.n_tokens > 0:
        rows = range(rows.start, min(rows.stop, rows.start + cfg.n_tokens))
    metrics = clt_reconstruction(clt, inputs, targets, rows, cfg.row_batch_size)
    sizes: dict[str, Any] = {"reconstruction_rows": [rows.start, rows.stop]}
    if cfg.n_contexts > 0:
        if lm is None:
            lm = run.load_model(device, dtype=inputs[0].model_dtype,
                                spec=cfg.model_options.model)
        contexts = list(itertools.islice(fresh_contexts(inputs[0], lm.tokenizer,
                                                        cfg.n_contexts), cfg.n_contexts))
        if not contexts:
            raise UserError("the store's corpus has no text left after the harvested "
                            "documents: evaluate with --n-contexts 0")
        n_tokens = sum(int(c.tokens.numel()) for c in contexts)
        with progress(total=n_tokens, desc="spliced loss", unit="tok") as bar:
            loss = clt_spliced_loss(lm, clt, batch_contexts(contexts, cfg.batch_size),
                                    unspliced_ids(inputs[0], lm), bar.update)
        metrics.update(loss)
        sizes.update(spliced_contexts=len(contexts), spliced_tokens=n_tokens)
    result = {"kind": "cross_layer_transcoder", "layers": list(clt.layers),
              "architecture": clt.cfg.architecture, "n_features_per_layer": clt.n_features,
              "model": cfg.model_options.model or run.model, "store": str(harvest),
              "sae": str(run.sae_dir),
              "metrics": metrics, "sizes": sizes, "config": to_dict(cfg),
              "formulas": {"nmse": NMSE_FORMULA, "variance_explained": FVE_FORMULA,
                           "l0": L0_FORMULA, **LOSS_FORMULAS,
                           "zero_ablated": "every CLT layer's hook_mlp_out set to 0"}}
    write_json(run.eval_path, result)
    say(format_clt_table(metrics))
    say(f"wrote {run.eval_path}")
    return result


def format_clt_table(metrics: dict[str, Any]) -> str:
    """One line per layer (variance explained, L0), then the spliced-loss figures."""
    lines = [f"layer {layer:>3}: variance explained {m['variance_explained']:.4f}, "
             f"L0 {m['l0']:.2f}" for layer, m in metrics["per_layer"].items()]
    for key in ("ce_clean", "ce_spliced", "ce_zero", "loss_recovered", "kl"):
        if key in metrics:
            lines.append(f"{key}: {metrics[key]:.4f}")
    return "\n".join(lines)
