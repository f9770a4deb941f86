"""How much of the graph the replacement explains (Ameisen et al. 2025, "Circuit Tracing").

With Â the row-normalised |A| and w the logit nodes' probabilities, B = Â + Â² + ... and
I = w·B each node's influence on the logits (`prune.influence`):

- replacement score = Σ_tokens I / (Σ_tokens I + Σ_errors I): of the influence that reaches
  the logits from the graph's sources (tokens and errors have no inputs), the share that
  starts at tokens, i.e. flows from the input through features only;
- completeness score = Σ_n (1 − Σ_{e error} Â[n, e]) (I_n + w_n) / Σ_n (I_n + w_n): each
  node's share of input not coming straight from an error node, averaged with the weight of
  the node's influence on the logits (logit nodes with their own weight).

Both are in [0, 1] and are 1 when every error node is zero.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from monosemantic.graph.prune import influence, normalise_rows


@dataclass
class GraphScores:
    replacement: float
    completeness: float


def graph_scores(adj: Tensor, weights: Tensor, kinds: list[str]) -> GraphScores:
    """Both scores of the graph `adj` (rows targets) with logit weights `weights`."""
    norm_adj = normalise_rows(adj)
    node_influence = influence(norm_adj, weights)
    is_error = Tensor([k == "error" for k in kinds]).bool()
    is_token = Tensor([k == "token" for k in kinds]).bool()
    from_tokens = float(node_influence[is_token].sum())
    from_errors = float(node_influence[is_error].sum())
    replacement = from_tokens / (from_tokens + from_errors) if from_tokens + from_errors else 0.0
    non_error = 1.0 - norm_adj[:, is_error].sum(dim=1)
    weight = node_influence + weights
    completeness = float((non_error * weight).sum() / weight.sum()) if weight.sum() else 0.0
    return GraphScores(replacement=replacement, completeness=completeness)
