"""Crosscoders (Lindsey et al. 2024, "Sparse Crosscoders for Cross-Layer Features and Model
Diffing"): one dictionary that reads and reconstructs several sites at once.

Sites s = 1..S of widths d_s (several hooks of one model, or the same hook of two models run
over the same tokens) are concatenated into x = [x_1, ..., x_S] of width D = Σ_s d_s, each
normalised by its own scale (E‖s_s·x_s‖² = d_s). A crosscoder is then the architecture's own
dictionary on width D:

    f = σ(Σ_s W_enc,s·x_s + b_enc)       (the encoder sums over sites: one matmul on x)
    x̂_s = W_dec,s·f + b_dec,s            (a decoder per site: the columns of W_dec of site s)
    loss = Σ_s ‖x_s − x̂_s‖² + sparsity   (= ‖x − x̂‖², the architecture's MSE)

What differs from an SAE on the concatenation is the decoder norm in relu's L1, which is the
*sum over sites* of the per-site norms, Σ_i f_i·Σ_s ‖W_dec,s[i]‖ (`penalty_norms_F`): the
paper's penalty, which lets a feature switch a site off. Unit-norm architectures (topk,
batchtopk, jumprelu, matryoshka) keep each feature's concatenated row at norm 1; the share of
each site in it is free. Any architecture becomes a crosscoder through `crosscoder_class`
(`create_sae` does it when `SAEConfig.site_widths` is set); its `forward` also reports each
site's MSE (`mse_site{s}`, detached) among the loss terms.

The folder format (`save_crosscoder` / `load_crosscoder`) is documented in docs/crosscoders.md.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from monosemantic.config import from_dict, to_dict
from monosemantic.errors import UserError
from monosemantic.sae.base import SAE, BatchGroup, SAEOutput
from monosemantic.sae.config import SAEConfig

CROSSCODER_JSON = "crosscoder.json"
CROSSCODER_WEIGHTS = "crosscoder_weights.safetensors"
CROSSCODER_FORMAT = "monosemantic-crosscoder"
CROSSCODER_FORMAT_VERSION = 1


class CrosscoderSAE(SAE):
    """What a crosscoder adds to an architecture (placed before it in the MRO)."""

    def site_bounds(self) -> list[tuple[int, int]]:
        """[lo, hi) of each site's columns in the concatenated width."""
        ends = torch.tensor(self.cfg.site_widths).cumsum(0).tolist()
        return list(zip([0, *ends[:-1]], ends))

    def split_sites(self, x_BD: torch.Tensor) -> list[torch.Tensor]:
        """The concatenated last dim of `x_BD` cut into its sites."""
        return list(torch.split(x_BD, list(self.cfg.site_widths), dim=-1))

    def site_decoder_norms_SF(self) -> torch.Tensor:
        """‖W_dec,s[i]‖ for each site s and feature i ([S, F])."""
        return torch.stack([self.W_dec[:, lo:hi].norm(dim=1) for lo, hi in self.site_bounds()])

    def penalty_norms_F(self) -> torch.Tensor:
        """Σ_s ‖W_dec,s[i]‖: the paper's decoder-norm weight of feature i's code."""
        return self.site_decoder_norms_SF().sum(0)

    def forward(self, x_BD: torch.Tensor, dead_mask_F: torch.Tensor | None = None,
                l1_scale: float = 1.0, group: BatchGroup | None = None,
                target_BD: torch.Tensor | None = None, **options: Any) -> SAEOutput:
        """The architecture's forward (`options`: its own, e.g. relu's `sparse`) plus the
        per-site MSEs."""
        out = super().forward(x_BD, dead_mask_F=dead_mask_F, l1_scale=l1_scale, group=group,
                              target_BD=target_BD, **options)
        with torch.no_grad():
            err_BD = (x_BD.float() - out.x_hat_BD.float()).pow(2)
            for s, part_BD in enumerate(self.split_sites(err_BD)):
                out.losses[f"mse_site{s}"] = part_BD.sum(-1).mean()
        return out


@functools.cache
def crosscoder_class(cls: type[SAE]) -> type[SAE]:
    """The crosscoder of architecture `cls`: the same class with `CrosscoderSAE` first."""
    if issubclass(cls, CrosscoderSAE):
        return cls
    return type(f"Crosscoder{cls.__name__}", (CrosscoderSAE, cls), {})


@dataclass
class Site:
    """One site of a crosscoder: where its activations come from."""

    hook: str
    """Hook point, e.g. blocks.6.hook_resid_post."""
    model: str
    """Model spec the activations were harvested from."""
    d: int
    """Width of the site."""
    norm_scale: float = 1.0
    """Scale s_s the trainer multiplied the site's activations by (E‖s_s·x_s‖² = d_s)."""
    store: str | None = None
    """The activation store the site was trained from."""

    @property
    def label(self) -> str:
        """`model:hook`."""
        return f"{self.model}:{self.hook}"


def site_scale_D(sites: list[Site]) -> torch.Tensor:
    """Each site's scale repeated over its columns ([D], float32)."""
    return torch.cat([torch.full((s.d,), float(s.norm_scale)) for s in sites])


@torch.no_grad()
def fold_site_scales(sae: SAE, sites: list[Site]) -> SAE:
    """A copy of the trained crosscoder that reads and reconstructs raw activations: the
    per-site scales folded in (`io.fold_for_inference`'s algebra with one scale per column).

    Decoder norms are not folded: with unequal site scales the raw rows have unequal norms,
    and moving them into the encoder would change which codes a top-k keeps."""
    from monosemantic.sae.factory import create_sae

    scale_D = site_scale_D(sites)
    if not bool(torch.all(scale_D > 0)) or not all(math.isfinite(s.norm_scale) for s in sites):
        raise UserError(f"site scales must be finite numbers > 0, got "
                        f"{[s.norm_scale for s in sites]}")
    state = {k: v.detach().to("cpu", torch.float32).clone()
             for k, v in sae.inference_state().items()}
    # z = (S·x − a·b_dec)·W_enc + b_enc = (x − a·S⁻¹b_dec)·(S·W_enc) + b_enc and
    # x̂ = S⁻¹(f·W_dec + b_dec), S = diag(scale_D)
    state["W_enc"] *= scale_D[:, None]
    state["W_dec"] /= scale_D[None, :]
    state["b_dec"] /= scale_D
    raw = create_sae(copy.deepcopy(sae.cfg))
    raw.load_inference_state(state)
    return raw.eval()


def save_crosscoder(sae: SAE, out_dir: str | Path, sites: list[Site],
                    extra_metadata: dict[str, Any] | None = None) -> Path:
    """Write the crosscoder (site scales folded in) as `out_dir/crosscoder.json` +
    `out_dir/crosscoder_weights.safetensors`, atomically (an earlier crosscoder there is
    replaced)."""
    _check_sites(sae.cfg, sites)
    out_dir = Path(out_dir)
    folded = fold_site_scales(sae, sites)
    tensors = {k: v.contiguous() for k, v in folded.inference_state().items()}
    meta = {"format": CROSSCODER_FORMAT, "format_version": CROSSCODER_FORMAT_VERSION,
            "architecture": sae.cfg.architecture, "sae_config": to_dict(sae.cfg),
            "sites": [asdict(s) for s in sites], "scales_folded": True,
            "decoder_norms_folded": False, "extra_metadata": dict(extra_metadata or {})}
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / CROSSCODER_JSON).is_file():
        raise UserError(f"{out_dir} is a non-empty folder that holds no crosscoder: choose an "
                        "empty or new folder")
    from monosemantic.sae.io import write_staged_folder  # io imports this module's users

    write_staged_folder(out_dir, CROSSCODER_WEIGHTS, tensors, {CROSSCODER_JSON: meta})
    return out_dir


@dataclass
class LoadedCrosscoder:
    """A saved crosscoder: the dictionary (raw activations in and out), its sites and the
    training metadata."""

    sae: SAE
    sites: list[Site]
    extra: dict[str, Any]
    path: Path


def is_crosscoder_dir(path: str | Path) -> bool:
    """Whether `path` holds a saved crosscoder."""
    return (Path(path) / CROSSCODER_JSON).is_file()


def load_crosscoder(path: str | Path, device: str | torch.device = "cpu") -> LoadedCrosscoder:
    """Load a folder written by `save_crosscoder` (or a run folder whose `sae/` is one)."""
    path = Path(path)
    if not is_crosscoder_dir(path) and is_crosscoder_dir(path / "sae"):
        path = path / "sae"
    if not is_crosscoder_dir(path):
        raise UserError(f"{path} holds no crosscoder ({CROSSCODER_JSON}): give a crosscoder "
                        "training run or its sae/ folder")
    meta = json.loads((path / CROSSCODER_JSON).read_text())
    if meta.get("format") != CROSSCODER_FORMAT or \
            int(meta.get("format_version", 0)) > CROSSCODER_FORMAT_VERSION:
        raise UserError(f"{path / CROSSCODER_JSON} is not a crosscoder this version reads "
                        f"(format {meta.get('format')!r} version {meta.get('format_version')})")
    from monosemantic.sae.factory import create_sae

    cfg = from_dict(SAEConfig, meta["sae_config"])
    sites = [Site(**s) for s in meta["sites"]]
    _check_sites(cfg, sites)
    sae = create_sae(cfg)
    weights = {k: v.float() for k, v in load_file(str(path / CROSSCODER_WEIGHTS)).items()}
    missing = set(sae.inference_state()) - set(weights)
    if missing:
        raise UserError(f"{path / CROSSCODER_WEIGHTS} lacks tensors {sorted(missing)}")
    sae.load_inference_state(weights)
    return LoadedCrosscoder(sae.to(device).eval(), sites, meta.get("extra_metadata", {}), path)


def _check_sites(cfg: SAEConfig, sites: list[Site]) -> None:
    widths = tuple(s.d for s in sites)
    if widths != tuple(cfg.site_widths):
        raise UserError(f"the sites' widths {widths} are not the crosscoder's site widths "
                        f"{tuple(cfg.site_widths)}")
