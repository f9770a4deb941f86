"""SAEs whose codes are exact in float32 whatever the GEMM (CPU chunks, narrow blocks, GPU)."""

from __future__ import annotations

import torch

from monosemantic.sae import SAEConfig, create_sae

D, F = 8, 12


def dyadic_sae(architecture: str, seed: int = 0):
    """An SAE whose weights are multiples of 1/8 (and inputs multiples of 1/2): every
    pre-activation is exact in float32 whatever order a GEMM sums in, so the restricted
    computation (narrow blocks, row chunks) must give the very same floats."""
    gen = torch.Generator().manual_seed(seed)
    sae = create_sae(SAEConfig(architecture=architecture, d_in=D, n_features=F, k=3))
    with torch.no_grad():
        for p in (sae.W_enc, sae.b_enc, sae.b_dec):
            p.copy_(torch.randint(-8, 9, p.shape, generator=gen) / 8)
        if architecture == "jumprelu":
            sae.log_threshold.copy_(torch.log(torch.rand(F, generator=gen) * 2))
        if architecture in ("batchtopk", "matryoshka"):
            sae.threshold.copy_(torch.rand(F, generator=gen) * 2)
            sae.threshold_count.fill_(1)
    return sae, torch.randint(-4, 5, (200, D), generator=gen) / 2
