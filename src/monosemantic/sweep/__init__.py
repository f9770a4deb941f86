"""Sweeps: grids of ordinary training runs and the one-line-per-run table `OUT/sweep.jsonl`
that the scaling-law fits (`monosemantic.laws`) read."""
