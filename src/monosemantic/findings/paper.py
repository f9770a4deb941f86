"""What the paper reports, set beside this project's measurements."""

from __future__ import annotations

PAPER = "Templeton et al. 2024, 'Scaling Monosemanticity'"

PAPER_DEAD = ((1_000_000, 0.02, "1M"), (4_000_000, 0.35, "4M"), (34_000_000, 0.65, "34M"))
"""(features, dead fraction, size as quoted): the paper's dead features, about 2%, 35% and 65%
of its 1M, 4M and 34M-feature SAEs. Sizes as the paper quotes them (rounded)."""

DEAD_CAVEAT = (
    f"Paper ({PAPER}): about 2%, 35% and 65% of the features of its 1M, 4M and 34M-feature "
    "SAEs were dead, on a production model's residual stream. Measurements here come from "
    "far smaller dictionaries, a small model and few training tokens; the dead fraction "
    "depends on the architecture (topk with the AuxK loss revives features, the paper's relu "
    "with L1 does not), the training length and the window it is counted over, so compare "
    "the trend with size, not the values.")

SPLITTING_NOTE = (
    f"Paper ({PAPER}, and Bricken et al. 2023 before it): features of a small dictionary split "
    "into several more specific features in larger ones, and larger dictionaries also hold "
    "concepts the smaller ones miss. The shares here are this sweep's, with the thresholds "
    "stated; the paper gives no such shares to compare with.")

CONCEPTS_NOTE = (
    f"Paper ({PAPER}): whether a dictionary holds a feature for a concept rises with the "
    "concept's frequency in the training data, in a sigmoid-like curve that moves to rarer "
    "concepts as the dictionary grows (roughly: a concept seen once in N tokens needs a "
    "dictionary of order N alive features). The paper's concepts and its test for a feature "
    "differ from these: here a concept is covered when one feature's firing matches its "
    "token-level occurrences with F1 at or above the stated threshold, on concepts defined "
    "from the held-out text itself, measured on far smaller dictionaries, so compare the "
    "shape and its shift with size, not the frequencies.")

NEURONS_NOTE = (
    f"Paper ({PAPER}): most features correlate weakly with every neuron (max Pearson r below "
    "0.3), so they are not neurons in disguise. Here each feature is compared with the MLP "
    "neurons of one layer (the one its hook has seen last); more neurons (other layers) could "
    "only raise a feature's max |r|. The neurons' max |r| with another neuron of the layer is "
    "the baseline for what a high value is. Small model, small dictionaries, few tokens: "
    "compare the shape, not the values.")
