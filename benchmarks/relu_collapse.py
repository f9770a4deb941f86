"""Whether trained SAEs collapsed onto a few directions: per run directory, the trainer's final
held-out VE and L0 and its dead fraction, then, over the features that fire on every third of
the store's held-out rows, the median nearest-twin decoder cosine (what `findings splitting`
reports as `decoder_twin_cosine`) and the median |cosine| of their decoder rows with the
training rows' mean and with the store's highest-variance coordinate. Not a timing.

    .venv/bin/python benchmarks/relu_collapse.py /tmp/relu/cli/before_f512 /tmp/relu/cli/after_f512
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from monosemantic.activations import ActivationStore
from monosemantic.findings.matching import nearest_twin_cosines
from monosemantic.sae.io import load_sae, read_metadata


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (with sae/)")
    parser.add_argument("--mean-every", type=int, default=27,
                        help="use every n-th training row for the mean (default 27: 10,000)")
    args = parser.parse_args()
    stores: dict[str, tuple] = {}
    for run in args.runs:
        meta = read_metadata(run / "sae")["extra_metadata"]
        if meta["store"] not in stores:
            stores[meta["store"]] = _store_rows(meta, args.mean_every)
        held_ND, mean_D, axis = stores[meta["store"]]
        print(json.dumps({"run": str(run), **_trainer_figures(run),
                          **_collapse(run, held_ND, mean_D, axis)}))


def _store_rows(meta: dict, mean_every: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Raw held-out rows (every third), the training rows' mean, the top-variance coordinate."""
    store = ActivationStore(meta["store"])
    lo, hi = meta["holdout_rows"]
    held_ND = store.take(np.arange(lo, hi, 3)).acts_ND.float()
    train_ND = store.take(np.arange(0, lo, mean_every)).acts_ND.float()
    return held_ND, train_ND.mean(0), int(train_ND.var(0).argmax())


def _trainer_figures(run: Path) -> dict:
    records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    final = [r for r in records if r["split"] == "eval"][-1]
    train = [r for r in records if r["split"] == "train"][-1]
    return {"ve": final["variance_explained"], "l0": final["l0"],
            "dead": train["dead_fraction"], "train_s": train["elapsed_s"]}


@torch.no_grad()
def _collapse(run: Path, held_ND: torch.Tensor, mean_D: torch.Tensor, axis: int) -> dict:
    sae = load_sae(run / "sae")  # folded: reads raw activations
    alive_F = (sae.encode(held_ND) > 0).any(0).numpy()
    W_FD = sae.W_dec.detach().float()
    unit_FD = torch.nn.functional.normalize(W_FD[torch.as_tensor(alive_F)], dim=1)
    mean_unit_D = torch.nn.functional.normalize(mean_D, dim=0)
    return {"silent": float(1 - alive_F.mean()),
            "twin": float(np.median(nearest_twin_cosines(W_FD, alive_F))),
            "cos_mean": float((unit_FD @ mean_unit_D).abs().median()),
            f"cos_axis{axis}": float(unit_FD[:, axis].abs().median())}


if __name__ == "__main__":
    main()
