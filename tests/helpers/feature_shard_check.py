"""Run under torchrun (gloo): every architecture's feature-sharded forward and backward against
the unsharded SAE on the same weights and batch (`test_sae_feature_sharded` launches it).

Every rank builds the whole SAE and computes the unsharded reference itself, then keeps its
slice of a copy and runs the sharded pass with the others. Checked per architecture: the set
of (row, feature) with a nonzero code, each loss term, x̂, the gradient of every parameter (the
slice's rows of the reference gradient; b_dec whole), the gradients after global-norm clipping
and batchtopk's updated threshold. Rank 0 prints one line per case with the largest deviations
found; a failed check raises.
"""

from __future__ import annotations

import copy
import os
import sys

import torch
import torch.distributed as dist

from monosemantic.distributed import Ranks
from monosemantic.sae import SAEConfig, create_sae
from monosemantic.train.feature_parallel import clip_grad_norm_, split_features

D, F, B = 12, 64, 32
CASES = {
    "relu": dict(l1_coefficient=0.3),
    "relu_sparse": dict(l1_coefficient=0.3),
    "topk": dict(k=4, aux_k=8),
    "batchtopk": dict(k=4, aux_k=8),
    "jumprelu": dict(l0_coefficient=0.1, jumprelu_init_threshold=0.3,
                     jumprelu_bandwidth=0.5),
}
RTOL = 1e-4
"""Relative bound on every compared tensor (norm of the difference / norm of the reference):
the sharded pass sums the partial decodes in another order, which moves float32 results by
about 1e-7 relative."""


def _setup(name: str) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    arch = name.split("_")[0]
    sae = create_sae(SAEConfig(arch, d_in=D, n_features=F, **CASES[name])).train()
    with torch.no_grad():  # nonzero biases: b_dec reaches the encoder in topk/batchtopk
        sae.b_dec.copy_(0.3 * torch.randn(D))
        sae.b_enc.copy_(0.1 * torch.randn(F))
    x_BD = torch.randn(B, D)
    dead_F = torch.zeros(F, dtype=torch.bool)
    dead_F[torch.randperm(F)[:20]] = True  # AuxK runs: 20 dead features > aux_k
    return sae, x_BD, dead_F


def _run(sae, x_BD, dead_F, name):
    kwargs = {"sparse": name.endswith("sparse")} if name.startswith("relu") else {}
    mask = dead_F if sae.needs_dead_mask else None
    out = sae(x_BD, dead_mask_F=mask, **kwargs)
    out.loss.backward()
    return out


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def check(name: str, ranks: Ranks) -> str:
    full, x_BD, dead_F = _setup(name)
    part = copy.deepcopy(full)
    ref = _run(full, x_BD, dead_F, name)
    shard = split_features(ranks, F)
    part.keep_features_(shard)
    out = _run(part, x_BD, dead_F[shard.lo:shard.hi], name)

    f_ref = ref.f_BF.detach()
    # The union over the shards of their nonzero codes, in whole-dictionary feature ids.
    mine = torch.zeros(B, F, dtype=torch.int64)
    mine[:, shard.lo:shard.hi] = (out.f_BF.detach() != 0).long()
    ranks.sum_(mine)
    assert torch.equal(mine.bool(), f_ref != 0), f"{name}: selected codes differ"
    assert int(mine.max()) == 1
    worst = {"x_hat": _rel(out.x_hat_BD.detach(), ref.x_hat_BD.detach())}
    for term, value in ref.losses.items():
        got, want = float(out.losses[term].detach()), float(value.detach())
        worst[term] = abs(got - want) / max(abs(want), 1e-12)
    dims = full.feature_dims
    for pname, p in full.named_parameters():
        want = p.grad if pname not in dims else p.grad.narrow(dims[pname], shard.lo,
                                                               shard.hi - shard.lo)
        worst[f"grad_{pname}"] = _rel(getattr(part, pname).grad, want)
    # Global-norm clipping (a bound far below the norm, so it scales): the same gradients.
    torch.nn.utils.clip_grad_norm_(list(full.parameters()), 1e-3)
    clip_grad_norm_(part, shard, 1e-3)
    for pname, p in full.named_parameters():
        want = p.grad if pname not in dims else p.grad.narrow(dims[pname], shard.lo,
                                                               shard.hi - shard.lo)
        worst[f"clipped_{pname}"] = _rel(getattr(part, pname).grad, want)
    if name == "batchtopk":
        worst["threshold"] = _rel(part.threshold, full.threshold[shard.lo:shard.hi])
    if "aux" in ref.losses:
        assert float(ref.losses["aux"].detach()) > 0, "AuxK did not run"
    for key, value in worst.items():
        assert value <= RTOL, f"{name}: {key} differs by {value:.3g} relative"
    return f"{name}: " + " ".join(f"{k}={v:.1e}" for k, v in worst.items())


def main() -> int:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        ranks = Ranks(rank=dist.get_rank(), world=dist.get_world_size())
        for name in CASES:
            line = check(name, ranks)
            if ranks.is_main:
                print(line, flush=True)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MONOSEMANTIC_QUIET", "1")
    sys.exit(main())
