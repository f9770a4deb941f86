"""Benchmarks of SAE architectures: synthetic ground truth (`monosemantic bench --synthetic`)."""
