"""Periodic evaluation on the held-out rows: NMSE, variance explained, L0 (split "eval")."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from monosemantic.sae.crosscoder import CrosscoderSAE
from monosemantic.train.data import check_finite, split_batch
from monosemantic.train.metrics import ReconstructionSums

if TYPE_CHECKING:
    from monosemantic.sae import SAE
    from monosemantic.sae.clt import CrossLayerTranscoder


@torch.no_grad()
def evaluate(sae: SAE | CrossLayerTranscoder, batches: Iterable[Tensor | tuple[Tensor, Tensor]],
             device: torch.device,
             autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
             ) -> dict[str, float]:
    """Reconstruction metrics of `sae` over `batches` (normalized activations, as in training;
    a transcoder's are (input, target) pairs and its metrics those of the target).

    Every batch is checked for NaN/Inf (evaluation syncs anyway). Returns {} when there are no
    held-out rows.
    """
    was_training = sae.training
    sae.eval()
    sums = ReconstructionSums(_width(sae), device)
    # A crosscoder's sites, each scored on its own (`variance_explained_site{s}`, ...).
    sites = sae.split_sites if isinstance(sae, CrosscoderSAE) else None
    site_sums = [ReconstructionSums(d, device) for d in sae.cfg.site_widths]
    try:
        for i, batch in enumerate(batches):
            x_BD, y_BD = split_batch(batch, device)
            check_finite(x_BD, f"held-out batch {i}")
            target = {}
            if y_BD is not None:  # a transcoder: metrics of its target site
                check_finite(y_BD, f"held-out batch {i} (target)")
                target = {"target_BD": y_BD}
            with autocast():
                out = sae(x_BD, **target)
            n_active = out.fires_F().sum()
            if sae.shard is not None:  # a feature shard's codes: L0 counts every shard's
                sae.shard.sum_(n_active)
            sums.add(x_BD if y_BD is None else y_BD, out.x_hat_BD.float(), n_active)
            if sites is not None:
                for acc, x_part, x_hat_part in zip(site_sums, sites(x_BD),
                                                   sites(out.x_hat_BD.float())):
                    acc.add(x_part, x_hat_part, n_active)
    finally:
        sae.train(was_training)
    result = sums.result()
    for s, acc in enumerate(site_sums if sites is not None else []):
        site = acc.result()
        for key in ("nmse", "variance_explained", "mse"):
            if key in site:
                result[f"{key}_site{s}"] = site[key]
    if result:
        result["rows"] = sums.rows
    return result


def _width(sae: SAE | CrossLayerTranscoder) -> int:
    """Width of the output (a CLT's: its n target sites side by side)."""
    return int(sae.b_dec.shape[0])
