"""Features against neurons for SAEs of one hook: the library functions.

For every feature of an SAE at a hook of layer L, its largest |Pearson r| with any MLP neuron
(`blocks.L.mlp.hook_post`; the layer rule is in `replay.mlp_hook_for`) over the measured
tokens, and for every neuron its largest |r| with another neuron of that layer (the baseline:
how alike the neurons are among themselves). The paper finds most features correlate weakly
(max |r| < 0.3) with every neuron. A feature that never fires on the tokens (silent), or fires
with one constant value, and a constant neuron have no correlation: they are counted apart,
and the shares are over the measured ones (the counts say how many that is of all).

- `feature_neuron_correlations(run, n_tokens, ...)`: one run, on its store's rows (the model
  runs again over them to read the neurons; `replay`).
- `measure_store(lm, saes, hook, store, rows)`: several SAEs of one hook on the same rows, one
  forward per batch of rows (what `findings neurons` does for a sweep's series).
- `neuron_summary(run_model, input_ids_batches)`: one run on token batches the caller has
  (the bench); a flat dict of numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from monosemantic.activations.model_rows import special_token_ids
from monosemantic.activations.reader import ActivationStore
from monosemantic.findings.neuron_moments import (
    BestMatch,
    FeatureNeuronMoments,
    NeuronGram,
    best_matches,
)
from monosemantic.findings.replay import (
    ReplayCheck,
    mlp_hook_for,
    replay_rows,
    replay_settings,
)
from monosemantic.models import LoadedModel, capture
from monosemantic.progress import progress
from monosemantic.runs import RunDir, RunModel
from monosemantic.sae import SAE

WEAK_R = 0.3
"""The paper's line: a feature whose max |r| with every neuron is below it is 'not a neuron'."""
MIN_FIRES = 10
"""A feature that fired on fewer tokens is 'rare': its r rests on a handful of tokens and is
inflated by chance, so the shares are also given without the rare ones."""
Rows = Literal["holdout", "train", "all"]


@dataclass
class NeuronCorrelations:
    """One SAE's features against the neurons of one layer, over `n_tokens` tokens."""

    hook: str
    mlp_hook: str
    n_tokens: int
    weak_r: float
    features: BestMatch
    """Per feature: max |r| with any neuron, the signed r there, the neuron (-1: excluded)."""
    fires_F: np.ndarray
    """Tokens each feature fired on (code > 0), int64 [F]."""
    neurons: BestMatch
    """Per neuron: max |r| with any other neuron of the layer (-1: excluded)."""
    replay: dict[str, float | int] | None = None
    """How well the store's rows were reproduced (`replay.ReplayCheck.describe`); None when
    the tokens came from the caller."""

    @property
    def n_features(self) -> int:
        return len(self.fires_F)

    def feature_summary(self) -> dict[str, Any]:
        """Counts and statistics of the features' max |r| (flat, JSON-ready)."""
        measured = ~np.isnan(self.features.max_abs_r)
        silent = self.fires_F == 0
        common = measured & (self.fires_F >= MIN_FIRES)
        out = {"n_features": self.n_features, "features_measured": int(measured.sum()),
               "features_silent": int(silent.sum()),
               "features_constant": int((~measured & ~silent).sum()),
               "features_rare": int((measured & ~common).sum()), "min_fires": MIN_FIRES}
        common_r = self.features.max_abs_r[common]
        return {**out, **_stats("feature", self.features.max_abs_r[measured], self.weak_r),
                "feature_share_weak_common": (float((common_r < self.weak_r).mean())
                                              if common_r.size else None),
                "feature_median_max_abs_r_common": (float(np.median(common_r))
                                                    if common_r.size else None)}

    def neuron_summary(self) -> dict[str, Any]:
        """Counts and statistics of the neurons' max |r| with another neuron (flat)."""
        measured = ~np.isnan(self.neurons.max_abs_r)
        out = {"n_neurons": len(measured), "neurons_measured": int(measured.sum()),
               "neurons_constant": int((~measured).sum())}
        return {**out, **_stats("neuron", self.neurons.max_abs_r[measured], self.weak_r)}

    def summary(self) -> dict[str, Any]:
        """Everything but the per-feature arrays, one flat dict."""
        return {"hook": self.hook, "mlp_hook": self.mlp_hook, "n_tokens": self.n_tokens,
                "weak_r": self.weak_r, **self.feature_summary(), **self.neuron_summary(),
                **({} if self.replay is None else {f"replay_{k}": v
                                                   for k, v in self.replay.items()})}

    def per_feature(self) -> dict[str, list]:
        """max |r|, signed r and neuron of every feature (None where excluded), for JSON."""
        return _per_row(self.features) | {"fires": self.fires_F.tolist()}


def _stats(prefix: str, values: np.ndarray, weak_r: float) -> dict[str, float | None]:
    if values.size == 0:
        return {f"{prefix}_share_weak": None, f"{prefix}_median_max_abs_r": None,
                f"{prefix}_mean_max_abs_r": None, f"{prefix}_p90_max_abs_r": None}
    return {f"{prefix}_share_weak": float((values < weak_r).mean()),
            f"{prefix}_median_max_abs_r": float(np.median(values)),
            f"{prefix}_mean_max_abs_r": float(values.mean()),
            f"{prefix}_p90_max_abs_r": float(np.quantile(values, 0.9))}


def _per_row(match: BestMatch) -> dict[str, list]:
    def rounded(a: np.ndarray) -> list:
        return [None if np.isnan(v) else round(float(v), 4) for v in a]

    return {"max_abs_r": rounded(match.max_abs_r), "r": rounded(match.r_at_max),
            "neuron": match.best.tolist()}


class Accumulator:
    """The sums of several SAEs' features against one layer's neurons, batch by batch."""

    def __init__(self, saes: Sequence[SAE], n_neurons: int):
        self.saes = list(saes)
        self.features = [FeatureNeuronMoments(s.cfg.n_features, n_neurons) for s in self.saes]
        self.gram = NeuronGram(n_neurons)

    def add(self, x_ND: Tensor, y_NM: Tensor) -> None:
        """Rows of the SAEs' hook `x_ND` (raw, as the saved SAEs read) and the neurons."""
        if x_ND.shape[0] == 0:
            return  # an empty batch would fix the neurons' shift at NaN
        with torch.no_grad():
            self.gram.update(y_NM)
            for sae, moments in zip(self.saes, self.features):
                x = x_ND.to(sae.W_dec_FD.device, sae.W_dec_FD.dtype)
                moments.update(sae.encode_sparse(x), y_NM)

    def results(self, hook: str, mlp_hook: str, weak_r: float) -> list[NeuronCorrelations]:
        neurons = best_matches(self.gram.correlations, self.gram.gram_MM.shape[0])
        return [NeuronCorrelations(hook, mlp_hook, m.n, weak_r,
                                   best_matches(m.correlations, m.cross_FM.shape[0]),
                                   m.fires_F.numpy().copy(), neurons)
                for m in self.features]


def measure_store(lm: LoadedModel, saes: Sequence[SAE], hook: str, store: ActivationStore,
                  rows: range, mlp_layer: int | None = None, weak_r: float = WEAK_R,
                  desc: str = "features vs neurons") -> list[NeuronCorrelations]:
    """Every SAE (all reading `hook`) against the MLP neurons beside `hook`, over the store's
    rows `rows` computed again by `lm` (load it in `replay_settings(store).torch_dtype`)."""
    mlp_hook = mlp_hook_for(lm, hook, mlp_layer)
    acc = Accumulator(saes, lm.hook_point(mlp_hook).width)
    hooks = list(dict.fromkeys([hook, mlp_hook]))
    check = ReplayCheck()
    with progress(total=len(rows), desc=desc, unit="tok") as bar:
        for batch in replay_rows(lm, store, rows, hooks, check):
            acc.add(batch.acts[hook], batch.acts[mlp_hook])
            bar.update(len(batch.tokens_N))
    results = acc.results(hook, mlp_hook, weak_r)
    for res in results:
        res.replay = check.describe()
    return results


def run_rows(run: RunDir, store: ActivationStore, which: Rows, n_tokens: int) -> range:
    """The store rows measured for one run: its held-out rows, its training rows or all, the
    first `n_tokens` of them."""
    from monosemantic.analysis.sources import row_range

    return row_range(which, run.holdout_rows, store.n_rows, n_tokens)


def feature_neuron_correlations(run: RunDir, n_tokens: int, device: str = "auto",
                                rows: Rows = "holdout", store: Path | None = None,
                                mlp_layer: int | None = None,
                                weak_r: float = WEAK_R) -> NeuronCorrelations:
    """One run's features against the neurons beside its hook, over the first `n_tokens` of
    its store's `rows` (`store`: the store's new path when it moved)."""
    from monosemantic.devices import resolve_device

    dev = str(resolve_device(device))
    st = run.store(store)
    measured = run_rows(run, st, rows, n_tokens)
    replay_settings(st)  # a store that cannot be replayed is refused before the model loads
    lm = run.load_model(dev, dtype=replay_settings(st).torch_dtype)
    sae = run.load_sae(dev)
    (result,) = measure_store(lm, [sae], run.hook, st, measured, mlp_layer, weak_r, run.name)
    return result


def neuron_summary(run_model: RunModel, input_ids_batches: Iterable[Tensor],
                   mlp_layer: int | None = None, weak_r: float = WEAK_R,
                   exclude_special: bool = True) -> dict[str, Any]:
    """Features against neurons of one run on the caller's token batches (`[B, S]` ids, each
    a forward), special tokens (BOS, padding) left out as the harvest does: the flat
    `NeuronCorrelations.summary()` (counts, shares below `weak_r`, medians)."""
    lm, sae, hook = run_model
    mlp_hook = mlp_hook_for(lm, hook, mlp_layer)
    acc = Accumulator([sae], lm.hook_point(mlp_hook).width)
    special = torch.tensor(special_token_ids(lm.tokenizer) if exclude_special else [],
                           dtype=torch.long)
    hooks = list(dict.fromkeys([hook, mlp_hook]))
    for ids_BS in input_ids_batches:
        acts = capture(lm, ids_BS.to(lm.device), hooks)
        keep_BS = ~torch.isin(ids_BS.long().cpu(), special).to(lm.device)
        acc.add(acts[hook][keep_BS].float(), acts[mlp_hook][keep_BS].float())
    (result,) = acc.results(hook, mlp_hook, weak_r)
    return result.summary()
