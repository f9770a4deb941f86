"""Model diffing with a two-site crosscoder (Lindsey et al. 2024): per feature, how much of its
decoder lives at site A (model A) and how much at site B, and whether the two parts point alike.

With d_A, d_B feature i's decoder parts at the two sites, measured in the *normalised* space the
crosscoder trained in (each site scaled to E‖s·x‖² = d; a saved crosscoder's raw decoder columns
are multiplied back by their site's scale):

    relative norm r_i = ‖d_A‖ / (‖d_A‖ + ‖d_B‖)      (1: A only, 0: B only, 1/2: both alike)
    cosine c_i        = d_A·d_B / (‖d_A‖‖d_B‖)         (only when the sites have equal widths)

A feature is *A-only* when r ≥ 1 − t, *B-only* when r ≤ t, *shared* otherwise (t =
`exclusive_threshold`, 0.1 by default); a feature whose decoder is zero at both sites is
counted apart (`zero`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from monosemantic.errors import UserError
from monosemantic.fsutil import save_figure
from monosemantic.sae.crosscoder import LoadedCrosscoder, site_scale_D

DIFF_FORMULAS = {
    "relative_norm": "||d_A|| / (||d_A|| + ||d_B||) of each feature's decoder parts, in the "
                     "normalised space of training (each site scaled so E||s x||^2 = d)",
    "cosine": "d_A . d_B / (||d_A|| ||d_B||) (sites of equal width only)",
    "a_only": "relative_norm >= 1 - exclusive_threshold",
    "b_only": "relative_norm <= exclusive_threshold",
    "shared": "exclusive_threshold < relative_norm < 1 - exclusive_threshold",
    "zero": "features whose decoder is 0 at both sites (no relative norm)",
}
HIST_BINS = 50


@torch.no_grad()
def decoder_parts(xc: LoadedCrosscoder) -> tuple[torch.Tensor, torch.Tensor]:
    """Each feature's decoder at site A and at site B ([F, d_A], [F, d_B]), normalised space."""
    if len(xc.sites) != 2:
        raise UserError(f"model diffing compares two sites; this crosscoder has "
                        f"{len(xc.sites)} ({', '.join(s.label for s in xc.sites)})")
    W_dec_FD = xc.sae.W_dec.detach().float().cpu() * site_scale_D(xc.sites)[None, :]
    d_a = xc.sites[0].d
    return W_dec_FD[:, :d_a], W_dec_FD[:, d_a:]


def relative_norms(dec_a_FD: torch.Tensor, dec_b_FD: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(r_F, c_F): relative norm (NaN where both parts are 0) and cosine (None for sites of
    different widths; NaN where a part is 0)."""
    norm_a_F, norm_b_F = dec_a_FD.norm(dim=1), dec_b_FD.norm(dim=1)
    total_F = norm_a_F + norm_b_F
    rel_F = torch.where(total_F > 0, norm_a_F / total_F.clamp_min(1e-30),
                        torch.full_like(total_F, float("nan")))
    if dec_a_FD.shape[1] != dec_b_FD.shape[1]:
        return rel_F, None
    both_F = (norm_a_F > 0) & (norm_b_F > 0)
    cos_F = (dec_a_FD * dec_b_FD).sum(1) / (norm_a_F * norm_b_F).clamp_min(1e-30)
    return rel_F, torch.where(both_F, cos_F, torch.full_like(cos_F, float("nan")))


def diff_summary(rel_F: torch.Tensor, cos_F: torch.Tensor | None,
                 exclusive_threshold: float = 0.1) -> dict[str, Any]:
    """Counts of A-only, B-only, shared and zero features, the thresholds that define them,
    and histograms of the relative norm (and of the cosine of shared features)."""
    t = float(exclusive_threshold)
    if not 0 < t < 0.5:
        raise UserError(f"--exclusive-threshold must be in (0, 0.5), got {t}")
    known_F = ~torch.isnan(rel_F)
    a_only_F = known_F & (rel_F >= 1 - t)
    b_only_F = known_F & (rel_F <= t)
    shared_F = known_F & ~a_only_F & ~b_only_F
    counts, edges = torch.histogram(rel_F[known_F].double(), bins=HIST_BINS, range=(0.0, 1.0))
    out: dict[str, Any] = {
        "n_features": int(rel_F.numel()), "a_only": int(a_only_F.sum()),
        "b_only": int(b_only_F.sum()), "shared": int(shared_F.sum()),
        "zero": int((~known_F).sum()),
        "thresholds": {"exclusive_threshold": t, "a_only": f"relative_norm >= {1 - t:g}",
                       "b_only": f"relative_norm <= {t:g}",
                       "shared": f"{t:g} < relative_norm < {1 - t:g}"},
        "relative_norm_histogram": {"bin_edges": edges.tolist(),
                                    "counts": [int(c) for c in counts.tolist()]},
    }
    if cos_F is not None:
        shared_cos = cos_F[shared_F & ~torch.isnan(cos_F)]
        c_counts, c_edges = torch.histogram(shared_cos.double(), bins=HIST_BINS,
                                            range=(-1.0, 1.0))
        out["shared_cosine_histogram"] = {"bin_edges": c_edges.tolist(),
                                          "counts": [int(c) for c in c_counts.tolist()]}
        out["shared_cosine_median"] = (float(shared_cos.median()) if shared_cos.numel()
                                       else None)
    return out


def model_diff(xc: LoadedCrosscoder, exclusive_threshold: float = 0.1) -> dict[str, Any]:
    """The diff of a two-site crosscoder: summary, per-feature values, sites and formulas."""
    rel_F, cos_F = relative_norms(*decoder_parts(xc))
    return {"site_a": xc.sites[0].label, "site_b": xc.sites[1].label,
            **diff_summary(rel_F, cos_F, exclusive_threshold),
            "relative_norm": [None if v != v else v for v in rel_F.tolist()],
            "cosine": (None if cos_F is None
                       else [None if v != v else v for v in cos_F.tolist()]),
            "formulas": DIFF_FORMULAS}


@torch.no_grad()
def site_shares(xc: LoadedCrosscoder, exclusive_threshold: float = 0.1) -> dict[str, Any]:
    """Where features write, for any number of sites: share_s(i) = ‖d_s[i]‖ / Σ_r ‖d_r[i]‖
    (normalised space). Per site, the features with share >= 1 − t (`only`); and how many
    features have a share > t at exactly n sites (`features_by_sites_used`)."""
    t = float(exclusive_threshold)
    W_dec_FD = xc.sae.W_dec.detach().float().cpu() * site_scale_D(xc.sites)[None, :]
    norms_SF = torch.stack([part.norm(dim=1) for part in
                            torch.split(W_dec_FD, [s.d for s in xc.sites], dim=1)])
    total_F = norms_SF.sum(0)
    live_F = total_F > 0
    shares_SF = norms_SF[:, live_F] / total_F[live_F]
    used_F = (shares_SF > t).sum(0)
    return {
        "exclusive_threshold": t,
        "only": {site.label: int((shares_SF[s] >= 1 - t).sum())
                 for s, site in enumerate(xc.sites)},
        "mean_share": {site.label: float(shares_SF[s].mean()) if shares_SF.numel() else None
                       for s, site in enumerate(xc.sites)},
        "features_by_sites_used": {str(n): int((used_F == n).sum())
                                   for n in range(1, len(xc.sites) + 1)},
        "zero": int((~live_F).sum()),
        "formula": "share_s = ||d_s|| / sum_r ||d_r|| (normalised space); only: share >= "
                   "1 - exclusive_threshold; a site is used when share > exclusive_threshold",
    }


def plot_diff(diff: dict[str, Any], path: Path) -> Path | None:
    """Histogram of the relative norm (and of the shared features' cosine) as a PNG; None
    (nothing written) without matplotlib."""
    from monosemantic.evals.plots import have_matplotlib

    if not have_matplotlib():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("relative_norm_histogram", "relative decoder norm ||d_A|| / (||d_A|| + ||d_B||)")]
    if "shared_cosine_histogram" in diff:
        panels.append(("shared_cosine_histogram", "cosine(d_A, d_B) of shared features"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.0 * len(panels), 3.8), squeeze=False)
    try:
        for ax, (key, label) in zip(axes[0], panels):
            edges, counts = diff[key]["bin_edges"], diff[key]["counts"]
            ax.bar(edges[:-1], counts, width=edges[1] - edges[0], align="edge",
                   color="#4878a8", edgecolor="white")
            ax.set_xlabel(label, fontsize=9)
            ax.set_ylabel("features")
        t = diff["thresholds"]["exclusive_threshold"]
        fig.suptitle(f"A = {diff['site_a']}, B = {diff['site_b']}\n"
                     f"A-only {diff['a_only']:,}, B-only {diff['b_only']:,}, shared "
                     f"{diff['shared']:,}, zero {diff['zero']:,} (threshold {t:g})", fontsize=9)
        fig.tight_layout()
        save_figure(fig, path, dpi=120)
    finally:
        plt.close(fig)
    return path
