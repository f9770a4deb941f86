"""The model-diffing figures on constructed decoders: relative norm, cosine, the counts and
their thresholds, the histogram PNG."""

from __future__ import annotations

import json
import math

import pytest
import torch

from monosemantic.errors import UserError
from monosemantic.evals.crosscoder_diff import (
    diff_summary,
    model_diff,
    plot_diff,
    relative_norms,
    site_shares,
)
from monosemantic.evals.plots import have_matplotlib
from monosemantic.sae import SAEConfig, create_sae
from monosemantic.sae.crosscoder import LoadedCrosscoder, Site


def _constructed(scale_a: float = 1.0, scale_b: float = 1.0) -> LoadedCrosscoder:
    """Five features over two 4-wide sites: A-only, B-only, shared alike, shared opposite, zero
    (decoder columns as saved: raw = normalised / site scale)."""
    sae = create_sae(SAEConfig(architecture="topk", d_in=8, n_features=5, k=1,
                               site_widths=(4, 4)))
    e = torch.eye(4)
    rows = [torch.cat([e[0], 0 * e[0]]), torch.cat([0 * e[1], 2 * e[1]]),
            torch.cat([e[2], e[2]]), torch.cat([3 * e[3], -1 * e[3]]), torch.zeros(8)]
    W_dec_FD = torch.stack(rows)
    W_dec_FD[:, :4] /= scale_a
    W_dec_FD[:, 4:] /= scale_b
    with torch.no_grad():
        sae.W_dec.copy_(W_dec_FD)
    sites = [Site("blocks.3.hook_resid_post", "A", 4, scale_a),
             Site("blocks.3.hook_resid_post", "B", 4, scale_b)]
    return LoadedCrosscoder(sae, sites, {}, None)  # type: ignore[arg-type]


@pytest.mark.parametrize("scales", [(1.0, 1.0), (0.25, 4.0)])
def test_relative_norm_and_cosine_of_constructed_features(scales):
    diff = model_diff(_constructed(*scales), exclusive_threshold=0.1)
    # In the normalised space: the site scales are undone before the norms are compared.
    assert diff["relative_norm"][:4] == pytest.approx([1.0, 0.0, 0.5, 0.75])
    assert diff["relative_norm"][4] is None
    assert diff["cosine"][2] == pytest.approx(1.0) and diff["cosine"][3] == pytest.approx(-1.0)
    assert diff["cosine"][0] is None  # a zero part has no direction
    assert (diff["a_only"], diff["b_only"], diff["shared"], diff["zero"]) == (1, 1, 2, 1)
    assert diff["thresholds"]["a_only"] == "relative_norm >= 0.9"
    assert sum(diff["relative_norm_histogram"]["counts"]) == 4
    assert sum(diff["shared_cosine_histogram"]["counts"]) == 2


def test_site_shares_of_constructed_features():
    shares = site_shares(_constructed(0.5, 3.0))
    labels = [s.label for s in _constructed().sites]
    assert shares["only"] == {labels[0]: 1, labels[1]: 1}
    assert shares["features_by_sites_used"] == {"1": 2, "2": 2} and shares["zero"] == 1
    assert shares["mean_share"][labels[0]] == pytest.approx((1 + 0 + 0.5 + 0.75) / 4)


def test_thresholds_move_the_counts():
    rel_F = torch.tensor([0.95, 0.85, 0.5, 0.15, 0.05])
    assert (diff_summary(rel_F, None, 0.1)["a_only"], diff_summary(rel_F, None, 0.2)["a_only"]) \
        == (1, 2)
    with pytest.raises(UserError, match="exclusive-threshold"):
        diff_summary(rel_F, None, 0.6)


def test_sites_of_different_widths_have_no_cosine():
    rel_F, cos_F = relative_norms(torch.ones(3, 2), torch.ones(3, 8))
    assert cos_F is None and rel_F.tolist() == pytest.approx([1 / 3] * 3)
    assert math.isnan(float(relative_norms(torch.zeros(1, 2), torch.zeros(1, 2))[0][0]))


@pytest.mark.skipif(not have_matplotlib(), reason="matplotlib not installed")
def test_histogram_png(tmp_path):
    path = plot_diff(model_diff(_constructed()), tmp_path / "diff.png")
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"


def test_features_planted_in_model_a_alone_come_out_a_only(tmp_path):
    """Two "models" (stores of the same tokens): 12 features write in both, 4 in A alone; a
    relu crosscoder of 16 features finds the 4 as A-only (relative norm 1, measured: 1.00)
    along the planted directions, and none B-only."""
    from helpers.crosscoder import planted_features, write_site_store
    from monosemantic.cli import main
    from monosemantic.evals.crosscoder_diff import decoder_parts
    from monosemantic.sae.crosscoder import load_crosscoder

    acts, dirs = planted_features(4096, (8, 8), n_shared=12, only_first=4, seed=3)
    stores = [write_site_store(tmp_path / name, a, "blocks.1.hook_resid_post", name)
              for name, a in zip(("A", "B"), acts)]
    run = tmp_path / "run"
    assert main(["train", str(run), "--stores", *map(str, stores), "--architecture", "relu",
                 "--n-features", "16", "--batch-size", "128", "--steps", "400", "--lr", "1e-2",
                 "--l1-coefficient", "0.3", "--log-every", "100", "--eval-every", "0",
                 "--checkpoint-every", "0", "--device", "cpu"]) == 0
    assert main(["crosscoder-eval", str(run), "--n-contexts", "0", "--device", "cpu"]) == 0
    diff = json.loads((run / "crosscoder_diff.json").read_text())
    assert (diff["a_only"], diff["b_only"], diff["shared"]) == (4, 0, 12)
    a_only_F = torch.tensor([r is not None and r >= 0.9 for r in diff["relative_norm"]])
    dec_a_FD, _ = decoder_parts(load_crosscoder(run))
    learned_KD = torch.nn.functional.normalize(dec_a_FD[a_only_F], dim=1)
    planted_KD = dirs[0][12:]
    # Each planted A-only direction is matched by one A-only feature.
    assert (learned_KD @ planted_KD.T).abs().max(dim=0).values.min() > 0.9
