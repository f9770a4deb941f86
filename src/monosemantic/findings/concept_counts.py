"""How well each feature of an SAE picks out each concept, counted over a stream of sparse codes.

A feature *fires* on a token when its code is above `threshold`. For concept c (occurring on
n_c tokens) and feature f (firing on m_f tokens), with tp[c, f] the tokens where both hold,

    precision = tp / m_f,   recall = tp / n_c,   F1 = 2·tp / (n_c + m_f).

The pass keeps tp for every pair as a dense int64 [C, F] matrix (memory 8·C·F bytes, nothing
that grows with the tokens): each batch multiplies the concepts' sparse incidence [C, B] into
the batch's firing indicators [B, F] (densified for B rows only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from monosemantic.findings.concepts import Concept
from monosemantic.sae.kernels import SparseCodes


class Incidence:
    """Which concepts occur on which tokens, as (token, concept) pairs sorted by token."""

    def __init__(self, concepts: list[Concept], n_tokens: int):
        rows = [c.rows_K for c in concepts]
        ids = [np.full(len(r), i, dtype=np.int64) for i, r in enumerate(rows)]
        row_M = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        concept_M = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
        if len(row_M) and (row_M.min() < 0 or row_M.max() >= n_tokens):
            raise ValueError(f"concept occurrences outside the {n_tokens} tokens")
        order = np.argsort(row_M, kind="stable")
        self.row_M = torch.from_numpy(row_M[order])
        self.concept_M = torch.from_numpy(concept_M[order])
        self.n_concepts = len(concepts)
        self.n_tokens = n_tokens
        self.counts_C = np.array([len(r) for r in rows], dtype=np.int64)

    def batch(self, lo: int, hi: int) -> torch.Tensor:
        """The concepts of tokens [lo, hi) as a sparse float [C, hi - lo] matrix of ones."""
        a, b = torch.searchsorted(self.row_M, torch.tensor([lo, hi])).tolist()
        index = torch.stack([self.concept_M[a:b], self.row_M[a:b] - lo])
        return torch.sparse_coo_tensor(index, torch.ones(b - a), (self.n_concepts, hi - lo),
                                       check_invariants=False)


class ConceptCounts:
    """tp[c, f], the firings m_f and the concept counts n_c, accumulated batch by batch over
    the tokens in order."""

    def __init__(self, incidence: Incidence, n_features: int, threshold: float = 0.0):
        self.incidence = incidence
        self.threshold = threshold
        self.tp_CF = torch.zeros(incidence.n_concepts, n_features, dtype=torch.int64)
        self.fires_F = torch.zeros(n_features, dtype=torch.int64)
        self.n = 0

    def update(self, codes: SparseCodes) -> None:
        """Add the codes of the next `codes.n_rows` tokens."""
        if self.n + codes.n_rows > self.incidence.n_tokens:
            raise ValueError(f"more than the {self.incidence.n_tokens} tokens of the concepts")
        keep = codes.vals_N > self.threshold
        row_N, idx_N = codes.row_N[keep].cpu(), codes.idx_N[keep].cpu()
        fired_BF = torch.zeros(codes.n_rows, codes.n_features)
        fired_BF[row_N, idx_N] = 1.0  # a (row, feature) listed twice still fires once
        self.fires_F += fired_BF.sum(dim=0).long()
        concepts_CB = self.incidence.batch(self.n, self.n + codes.n_rows)
        # float32 sums of at most B ones per entry are exact
        self.tp_CF += torch.sparse.mm(concepts_CB, fired_BF).round().long()
        self.n += codes.n_rows

    def best(self) -> BestFeatures:
        """Each concept's feature of highest F1 (ties: the lowest index)."""
        if self.n != self.incidence.n_tokens:
            raise ValueError(f"counted {self.n} of {self.incidence.n_tokens} tokens")
        tp = self.tp_CF.double()
        n_C = torch.from_numpy(self.incidence.counts_C).double()
        m_F = self.fires_F.double()
        f1_CF = 2 * tp / (n_C[:, None] + m_F[None, :]).clamp_min(1)
        f1_C, feature_C = f1_CF.max(dim=1)
        tp_C = tp.gather(1, feature_C[:, None]).squeeze(1)
        m_C = m_F[feature_C]
        precision_C = torch.where(m_C > 0, tp_C / m_C.clamp_min(1), torch.zeros_like(tp_C))
        recall_C = tp_C / n_C.clamp_min(1)
        return BestFeatures(feature_C.numpy(), f1_C.numpy(), precision_C.numpy(),
                            recall_C.numpy())


@dataclass
class BestFeatures:
    """Per concept: the best feature by F1, and its F1, precision and recall."""

    feature_C: np.ndarray
    f1_C: np.ndarray
    precision_C: np.ndarray
    recall_C: np.ndarray
