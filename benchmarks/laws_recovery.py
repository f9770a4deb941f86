"""How well `monosemantic scaling` recovers a known law: fit synthetic sweeps drawn from
L = E + A·F^−α + B·D^−β (tests/helpers/sweep_tables.py) over many noise seeds and print the
largest and mean error of each exponent and how often the bootstrap interval held the truth.
Accuracy, not speed: the figures in docs/scaling-laws.md and the tolerances of
tests/unit/test_laws_fit.py come from here.

    .venv/bin/python benchmarks/laws_recovery.py                 # 20 seeds, 6 × 6 grid, 1% noise
    .venv/bin/python benchmarks/laws_recovery.py --dense          # envelope on half-octave steps
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

# The synthetic tables live with the tests; the imports below need them on the path (E402).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers.sweep_tables import Grid, TrueLaw, synthetic_records  # noqa: E402
from monosemantic.laws.fit import fit_group  # noqa: E402
from monosemantic.laws.points import group_records  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--n-bootstrap", type=int, default=200)
    parser.add_argument("--method", choices=("parametric", "envelope"), default="parametric")
    parser.add_argument("--dense", action="store_true",
                        help="13 sizes × 21 token budgets in half-octave steps")
    args = parser.parse_args()
    law = TrueLaw()
    grid = Grid(noise=args.noise)
    if args.dense:
        grid.sizes = tuple(round(2 ** (8 + i / 2)) for i in range(13))
        grid.tokens = tuple(round(2 ** (17 + i / 2)) for i in range(21))
    truth = {"loss": law.loss_exponent, "features": law.features_exponent,
             "tokens": law.tokens_exponent}
    errors: dict[str, list[float]] = {k: [] for k in truth}
    covered = dict.fromkeys(truth, 0)
    for seed in range(args.seeds):
        grid.seed = seed
        (group,) = group_records(synthetic_records(law, grid), "train_loss")
        fit = fit_group(group, "train_loss", args.method, "auto", args.n_bootstrap, 0.95, seed)
        for key, true in truth.items():
            errors[key].append(fit[key]["exponent"] - true)
            iv = fit[key]["interval"]["exponent"]
            covered[key] += bool(iv and iv[0] <= true <= iv[1])
    print(f"{args.method}, {len(grid.sizes)} sizes × {len(grid.tokens)} token budgets, noise "
          f"{args.noise:g}, {args.seeds} seeds, {args.n_bootstrap} resamples")
    for key, true in truth.items():
        e = np.array(errors[key])
        print(f"  {key:<9} truth {true:+.4f}  max |error| {np.max(np.abs(e)):.4f}  mean error "
              f"{np.mean(e):+.4f}  95% interval held the truth {covered[key]}/{args.seeds}")


if __name__ == "__main__":
    main()
