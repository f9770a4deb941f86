"""Scaling laws of SAE training: fits over a sweep's runs (`monosemantic scaling`) and the
compute planner that reads them (`monosemantic plan`)."""
