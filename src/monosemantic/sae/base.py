"""`SAEOutput` and the `SAE` base class shared by every architecture.

Shapes: `W_enc [d, F]`, `b_enc [F]`, `W_dec [F, d]`, `b_dec [d]` (the parameter names SAELens
uses). The encoder computes pre-activations `z = (x - b_dec·a) @ W_enc + b_enc` where `a` is
`apply_b_dec_to_input` (False for relu/jumprelu as in their papers, True for topk/batchtopk as
in Gao et al.); the decoder computes `x̂ = f @ W_dec + b_dec`.

A *transcoder* (`cfg.d_out` set) is the same dictionary between two sites: it encodes the
input site's activations x (width d_in, never centred by b_dec, which lives at the output) and
decodes a prediction ŷ = f @ W_dec + b_dec (+ x @ W_skipᵀ with `cfg.skip`) of a target y of
width d_out; `forward` then takes `target_BD` and every loss compares ŷ to it. The sparsity
(activation function, penalty, AuxK) stays the architecture's.

An architecture is one subclass plus its entry in `factory.SAE_CLASSES`: the class attributes
and classmethods under "what the architecture is" are everything `SAEConfig`, the trainer and
save/load need to know about it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from monosemantic.config import ConfigError
from monosemantic.sae.bias_init import initial_b_dec
from monosemantic.sae.kernels import SparseCodes, sampled_pre_acts
from monosemantic.sae.outputs import (
    BatchGroup,
    SAEOutput,
    TrainCodes,
    check_non_negative,
    check_positive,
    check_positive_int,
)
from monosemantic.sae.sharded import FeatureGroup, copy_to_shards, randn_rows, sum_over_shards

if TYPE_CHECKING:
    from monosemantic.sae.config import SAEConfig

__all__ = ["SAE", "BatchGroup", "SAEOutput", "TrainCodes", "check_non_negative",
           "check_positive", "check_positive_int"]


class SAE(nn.Module):
    """Base class: parameters, dense encode/decode pieces, decoder-norm hooks, trainer hooks."""

    encode_block: int = 4096
    """`pre_acts_slice` computes whole aligned blocks of this many encoder columns. A dictionary
    of at most this many features is then computed by the very GEMM `pre_acts` runs, so a
    slice's codes are the same floats as the full ones whatever the BLAS; for larger ones the
    blocks are wide GEMMs, which MKL rounds as the full one (measured; GEMMs a few columns wide
    can round differently in the last bit)."""

    # ---- what the architecture is (read by SAEConfig, the trainer and save/load) ----
    default_apply_b_dec_to_input: ClassVar[bool] = False
    """`apply_b_dec_to_input` when the config leaves it None (the architecture's paper)."""
    default_b_dec_init: ClassVar[str] = "zero"
    """`b_dec_init` when the config leaves it None (`bias_init.B_DEC_INITS`)."""
    unit_norm_decoder: ClassVar[bool] = False
    """Decoder rows are kept at unit norm in training (the optimizer-step hooks below); they
    then start at norm 1 and `decoder_init_norm` must be 1."""
    default_decoder_init_norm: ClassVar[float] = 0.1
    """Initial decoder row norm of an architecture with free norms (Anthropic's 0.1)."""
    uses_k: ClassVar[bool] = False
    """Whether `k` (active features per token) is part of the recipe."""
    sparsity_coefficient_field: ClassVar[str | None] = None
    """The `SAEConfig` field weighting the sparsity penalty that the trainer's `l1_scale` warms
    up (relu: l1_coefficient, jumprelu: l0_coefficient); None: no penalty to warm up."""
    needs_dead_mask: ClassVar[bool] = False
    """Whether `forward` uses `dead_mask_F` (AuxK); the trainer builds the mask only then."""
    saelens_architecture: ClassVar[str] = "standard"
    """The `architecture` written to SAELens' cfg.json."""
    supports_feature_parallel: ClassVar[bool] = True
    """Whether `--parallel features` can train it (`keep_features_` and a sharded `forward`)."""
    supports_cross_layer: ClassVar[bool] = False
    """Whether a cross-layer transcoder (`sae/clt.py`) can use it per layer: it implements
    `train_codes` (and `aux_loss` where it has one) and its loss needs no decode of its own."""

    @classmethod
    def default_lr(cls, cfg: SAEConfig) -> float:
        """Adam learning rate when the trainer's --lr is not given."""
        raise NotImplementedError(f"{cls.__name__} declares no default learning rate")

    @classmethod
    def check_config(cls, cfg: SAEConfig) -> None:
        """Raise `ConfigError` for values of the architecture's own options that cannot work
        (`SAEConfig.validate` checks the shared ones first)."""
        if cls.unit_norm_decoder and cfg.decoder_init_norm != 1.0:
            raise ConfigError(f"{cfg.architecture} keeps unit-norm decoder rows: leave "
                              f"decoder_init_norm unset (got {cfg.decoder_init_norm})")

    @classmethod
    def saelens_fields(cls, cfg: SAEConfig) -> dict[str, Any]:
        """Architecture-specific keys of SAELens' cfg.json."""
        return {}

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        if cfg.d_in is None:
            raise ConfigError("the SAE's d_in is not set: give the width of its activations")
        self.cfg = cfg
        d, n_feat = cfg.d_in, cfg.n_features
        d_out = d if cfg.d_out is None else cfg.d_out
        self.W_enc = nn.Parameter(torch.empty(d, n_feat))
        self.b_enc = nn.Parameter(torch.zeros(n_feat))
        self.W_dec = nn.Parameter(torch.empty(n_feat, d_out))
        self.b_dec = nn.Parameter(torch.zeros(d_out))
        self.W_skip: nn.Parameter | None = (
            nn.Parameter(torch.zeros(d_out, d)) if cfg.skip else None)
        """Skip transcoders: [d_out, d_in] (SAELens' layout), ŷ += x @ W_skipᵀ; else None."""
        # Reused by `selection_pre_acts` (not a buffer: never saved, rebuilt on a new shape).
        self._workspace: torch.Tensor | None = None
        self.shard: FeatureGroup | None = None
        """Set by `keep_features_`: this module holds the features [lo, hi) of the group's
        dictionary, and `forward` computes the whole dictionary's output with the group."""
        self.reset_parameters()

    feature_dims: ClassVar[dict[str, int]] = {"W_enc": 1, "b_enc": 0, "W_dec": 0}
    """The dimension along which each per-feature tensor of `state_dict()` runs over the F
    features (a feature-sharded rank holds a contiguous slice of it); every other entry
    (b_dec, counters) is the same whole tensor on every rank. Subclasses add their own."""

    @torch.no_grad()
    def keep_features_(self, group: FeatureGroup) -> None:
        """Keep only the features [group.lo, group.hi) of every per-feature tensor (copies; the
        rest is freed) and compute `forward` as one slice of the group's dictionary (training
        only: `encode`, `encode_slice` and `encode_sparse` need the whole dictionary)."""
        if self.shard is not None or self.W_enc.shape[1] != group.n_features:
            raise ValueError("keep_features_ needs a whole dictionary of the group's size")
        if self.cfg.is_transcoder:
            raise ValueError("transcoders do not train feature-sharded (not implemented)")
        width = group.hi - group.lo
        for name, dim in self.feature_dims.items():
            piece = getattr(self, name).narrow(dim, group.lo, width).clone()
            if name in self._parameters:
                setattr(self, name, nn.Parameter(piece))
            else:
                self._buffers[name] = piece
        self._workspace = None
        self.shard = group

    def _sum_shards(self, t: torch.Tensor) -> torch.Tensor:
        """`t` (a partial decode or penalty of this module's features) summed over the
        feature shards, gradient passed through (`sharded.sum_over_shards`); unsharded: `t`."""
        return t if self.shard is None else sum_over_shards(t, self.shard)

    def _b_dec_in(self) -> torch.Tensor:
        """b_dec as the encoder subtracts it: sharded, its gradient through the encoder is
        summed over the shards (each encodes with its own columns)."""
        return self.b_dec if self.shard is None else copy_to_shards(self.b_dec, self.shard)

    # ---- shape-suffixed aliases (the contract's names) ----
    @property
    def W_enc_DF(self) -> nn.Parameter:
        return self.W_enc

    @property
    def b_enc_F(self) -> nn.Parameter:
        return self.b_enc

    @property
    def W_dec_FD(self) -> nn.Parameter:
        return self.W_dec

    @property
    def b_dec_D(self) -> nn.Parameter:
        return self.b_dec

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Biases 0; decoder rows random directions of norm `decoder_init_norm`; W_enc = W_decᵀ
        (a transcoder's encoder reads another site: its columns are drawn on their own, of the
        same norm; W_skip 0). A feature shard draws the whole dictionary's random numbers and
        keeps its rows (`sharded.randn_rows`): the unsharded init's rows, one chunk of memory."""
        init_norm = self.cfg.decoder_init_norm
        assert init_norm is not None  # SAEConfig.__post_init__ resolves None
        if self.shard is None:
            W_dec_FD = torch.randn(self.W_dec.shape)
        else:
            W_dec_FD = randn_rows(self.shard.n_features, self.W_dec.shape[1], self.shard.lo,
                                  self.shard.hi)
        W_dec_FD *= init_norm / W_dec_FD.norm(dim=1, keepdim=True)
        self.W_dec.copy_(W_dec_FD)
        if self.cfg.is_transcoder:
            W_enc_DF = torch.randn(self.W_enc.shape)
            W_enc_DF *= init_norm / W_enc_DF.norm(dim=0, keepdim=True)
            self.W_enc.copy_(W_enc_DF)
        else:
            self.W_enc.copy_(W_dec_FD.T)
        if self.W_skip is not None:
            self.W_skip.zero_()
        self.b_enc.zero_()
        self.b_dec.zero_()

    @torch.no_grad()
    def reset_buffers(self) -> None:
        """The architecture's own tensors (beyond W_enc, b_enc, W_dec, b_dec) at their initial
        values, as its `__init__` sets them (the sharded `create_sae` builds the module without
        values first)."""

    # ---- pieces shared by the architectures ----
    def pre_acts(self, x_BD: torch.Tensor) -> torch.Tensor:
        """Encoder pre-activations z [..., F] (bias fused into the matmul)."""
        if self.cfg.apply_b_dec_to_input:
            x_BD = x_BD - self._b_dec_in()
        return nn.functional.linear(x_BD, self.W_enc.T, self.b_enc)

    @property
    def rows_independent(self) -> bool:
        """Whether each row's codes depend on that row only, so a batch may be encoded in parts."""
        return True

    def pre_acts_slice(self, x_BD: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """`pre_acts(x_BD)[:, lo:hi]` from the encoder columns of the `encode_block`-aligned
        blocks that cover [lo, hi) only (a view; all of `pre_acts` when they cover every
        feature): memory 4·B·(hi - lo + up to 2 blocks) bytes."""
        n_feat, block = self.cfg.n_features, self.encode_block
        first, stop = lo // block * block, min(-(-hi // block) * block, n_feat)
        if (first, stop) == (0, n_feat):
            return self.pre_acts(x_BD)[:, lo:hi]
        if self.cfg.apply_b_dec_to_input:
            x_BD = x_BD - self.b_dec
        z_BC = nn.functional.linear(x_BD, self.W_enc[:, first:stop].T, self.b_enc[first:stop])
        return z_BC[:, lo - first:hi - first]

    @torch.no_grad()
    def encode_slice(self, x_BD: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """Codes [B, hi - lo] of features [lo, hi): `encode(x_BD)[:, lo:hi]` (inference, no
        grad), computed without the dense [B, F] codes where the architecture allows it.

        Elementwise architectures (relu, jumprelu, trained batchtopk) compute only the slice's
        encoder columns; topk needs every pre-activation of a row to pick its k largest and
        computes them for a few rows at a time; the base class slices the full `encode`."""
        self._check_slice(lo, hi)
        return self._encode_slice(x_BD, lo, hi)

    def _check_slice(self, lo: int, hi: int) -> None:
        if self.shard is not None:
            raise ValueError("a feature shard cannot encode on its own: gather the whole SAE")
        if not 0 <= lo < hi <= self.cfg.n_features:
            raise ValueError(f"feature slice [{lo}, {hi}) is not inside [0, "
                             f"{self.cfg.n_features})")

    def _encode_slice(self, x_BD: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """`encode_slice` for architectures without a cheaper way (4·B·F bytes transient)."""
        return self.encode(x_BD)[:, lo:hi]

    @torch.no_grad()
    def encode_sparse(self, x_BD: torch.Tensor, lo: int = 0, hi: int | None = None
                      ) -> SparseCodes:
        """The codes > 0 of features [lo, hi) (default: all) as a list, feature ids relative
        to `lo`, rows ascending and features ascending within a row: exactly the nonzero
        entries of `encode_slice(x_BD, lo, hi)` (inference, no grad).

        topk picks its codes as a list and never builds the dense [B, F] codes; the other
        architectures list the nonzero entries of their dense slice."""
        hi = self.cfg.n_features if hi is None else hi
        self._check_slice(lo, hi)
        return self._encode_sparse(x_BD, lo, hi)

    def _encode_sparse(self, x_BD: torch.Tensor, lo: int, hi: int) -> SparseCodes:
        """`encode_sparse` from the dense slice."""
        return SparseCodes.positive(self._encode_slice(x_BD, lo, hi))

    @torch.no_grad()
    def selection_pre_acts(self, x_BD: torch.Tensor) -> torch.Tensor:
        """Pre-activations z [B, F] without grad, only valid until the next call.

        They only choose the active codes (gradients go through `picked_pre_acts`). On CPU
        they are written into one buffer kept across steps: a fresh B×F tensor is big enough
        that the allocator returns it to the OS when freed and page-faults it back in on the
        next step (measured 0.27 s at B = 4096, F = 16384, about a sixth of that step's matmul).
        """
        if x_BD.device.type != "cpu" or x_BD.dim() != 2 or torch.is_autocast_enabled("cpu"):
            return self.pre_acts(x_BD)
        shape = (x_BD.shape[0], self.W_enc.shape[1])  # this shard's features when sharded
        dtype = torch.result_type(x_BD, self.W_enc)
        if self._workspace is None or self._workspace.shape != shape \
                or self._workspace.dtype != dtype:
            self._workspace = None  # free the old one before allocating
            self._workspace = torch.empty(shape, dtype=dtype)
        if self.cfg.apply_b_dec_to_input:
            x_BD = x_BD - self.b_dec
        return torch.addmm(self.b_enc, x_BD, self.W_enc, out=self._workspace)

    def picked_pre_acts(self, x_BD: torch.Tensor, z_N: torch.Tensor, row_N: torch.Tensor,
                        idx_N: torch.Tensor) -> torch.Tensor:
        """`z_N` = z[row_N, idx_N] (computed without grad) joined to the encoder's parameters
        with an O(N·d) backward (`kernels.SampledEncoder`); `row_N` ascending."""
        b_dec_D = self._b_dec_in() if self.cfg.apply_b_dec_to_input else None
        return sampled_pre_acts(z_N, x_BD, self.W_enc, self.b_enc, b_dec_D, row_N, idx_N)

    def codes_where(self, x_BD: torch.Tensor, z_BF: torch.Tensor,
                    keep_BF: torch.Tensor) -> SparseCodes:
        """Codes ReLU(z) at the nonzero entries of `keep_BF` (z without grad; gradients via the
        sampled encoder, so only the kept entries cost anything in the backward)."""
        n_rows, n_feat = z_BF.shape
        flat_N = keep_BF.reshape(-1).nonzero().squeeze(1)
        row_N, idx_N = flat_N // n_feat, flat_N % n_feat
        z_N = self.picked_pre_acts(x_BD, z_BF.reshape(-1)[flat_N], row_N, idx_N)
        return SparseCodes(row_N, idx_N, torch.relu(z_N), n_rows, n_feat)

    def encode(self, x_BD: torch.Tensor) -> torch.Tensor:
        """Feature activations f [B, F] (inference behaviour)."""
        raise NotImplementedError

    def decode(self, f_BF: torch.Tensor) -> torch.Tensor:
        """Reconstruction x̂ = f @ W_dec + b_dec (dense; bias fused into the matmul). Sharded:
        `f_BF` holds this shard's codes and x̂ the whole dictionary's decode."""
        if self.shard is None:
            return nn.functional.linear(f_BF, self.W_dec.T, self.b_dec)
        return self._sum_shards(nn.functional.linear(f_BF, self.W_dec.T)) + self.b_dec

    def forward(self, x_BD: torch.Tensor, dead_mask_F: torch.Tensor | None = None,
                l1_scale: float = 1.0, group: BatchGroup | None = None,
                target_BD: torch.Tensor | None = None) -> SAEOutput:
        """Codes and losses of the batch `x_BD`. With `group`, `x_BD` is this process's slice of
        a global batch: the loss is the one whose gradient, averaged over the group, is the
        global batch's gradient (losses that are means of per-row terms need nothing more).
        A transcoder's losses compare its output to `target_BD` (`target_of`)."""
        raise NotImplementedError

    # ---- pieces of `forward` for dictionaries that decode elsewhere (sae/clt.py) ----
    def train_codes(self, x_BD: torch.Tensor, l1_scale: float = 1.0,
                    group: BatchGroup | None = None) -> TrainCodes:
        """The training codes of `x_BD` (with their gradient path), the pre-activations AuxK
        reads and the sparsity terms (weighted, with `l1_scale`; a decoder-norm weighted
        penalty uses this module's `W_dec` rows): `forward` without the decode and the MSE."""
        raise NotImplementedError(f"{type(self).__name__} has no train_codes")

    def aux_loss(self, x_BD: torch.Tensor, y_hat_BD: torch.Tensor, codes: TrainCodes,
                 dead_mask_F: torch.Tensor, target_BD: torch.Tensor,
                 group: BatchGroup | None = None) -> dict[str, torch.Tensor]:
        """Auxiliary loss terms for dead features given the prediction `y_hat_BD` of
        `target_BD` this module's codes took part in ({} for architectures without one)."""
        return {}

    # ---- the target and the skip connection (transcoders) ----
    def target_of(self, x_BD: torch.Tensor, target_BD: torch.Tensor | None) -> torch.Tensor:
        """What the losses compare the output to: `target_BD` for a transcoder (required), the
        input itself for an SAE (which takes no target)."""
        if target_BD is None:
            if self.cfg.is_transcoder:
                raise ValueError("a transcoder's forward needs target_BD (the output site's "
                                 "activations of the same rows)")
            return x_BD
        if not self.cfg.is_transcoder:
            raise ValueError("an SAE reconstructs its input: it takes no target_BD")
        return target_BD

    def add_skip(self, y_hat_BD: torch.Tensor, x_BD: torch.Tensor) -> torch.Tensor:
        """`y_hat_BD` plus the skip connection x @ W_skipᵀ (unchanged without one)."""
        if self.W_skip is None:
            return y_hat_BD
        return y_hat_BD + nn.functional.linear(x_BD, self.W_skip)

    def reconstruct(self, x_BD: torch.Tensor) -> torch.Tensor:
        """Inference output: `decode(encode(x))` (plus the skip connection): the input's
        reconstruction for an SAE, the target site's prediction for a transcoder."""
        return self.add_skip(self.decode(self.encode(x_BD)), x_BD)

    def penalty_norms_F(self) -> torch.Tensor:
        """The decoder norm each code is weighted by in a decoder-norm-weighted penalty (relu's
        L1): ‖W_dec[i]‖ (a crosscoder sums the norms of its sites' parts,
        `sae/crosscoder.py`)."""
        return self.W_dec.norm(dim=1)

    @staticmethod
    def mse(x_BD: torch.Tensor, x_hat_BD: torch.Tensor) -> torch.Tensor:
        """‖x − x̂‖² summed over d, averaged over the batch (computed in float32)."""
        return (x_BD.float() - x_hat_BD.float()).pow(2).sum(dim=-1).mean()

    # ---- trainer hooks ----
    @torch.no_grad()
    def init_from_data(self, x_ND: torch.Tensor, target_ND: torch.Tensor | None = None) -> None:
        """Data-dependent initialisation from the first training rows `x_ND` (and a
        transcoder's target rows): b_dec per `cfg.b_dec_init` from the rows it decodes to.

        An SAE that does not subtract b_dec from its input then gets b_enc = −b_dec·W_enc, so
        that its initial pre-activations are those of x − b_dec, as with the subtraction
        (otherwise every feature starts with the offset w_i·b_dec, which for activations with
        a large mean leaves the features on one side of it silent)."""
        how = self.cfg.b_dec_init
        assert how is not None  # SAEConfig.__post_init__ resolves None
        if how == "zero":
            return
        rows_ND = x_ND if target_ND is None else target_ND
        self.b_dec.copy_(initial_b_dec(rows_ND, how).to(self.b_dec))
        if not self.cfg.apply_b_dec_to_input and not self.cfg.is_transcoder:
            self.b_enc.copy_(-(self.b_dec @ self.W_enc.to(self.b_dec.dtype)).to(self.b_enc))

    def sparsity_coefficient(self) -> float:
        """The full weight of the sparsity penalty (before the warm-up's `l1_scale`); 0 without
        one."""
        name = self.sparsity_coefficient_field
        return 0.0 if name is None else float(getattr(self.cfg, name))

    @torch.no_grad()
    def before_optimizer_step(self) -> None:
        """Unit-norm architectures: drop the gradient component parallel to each decoder row."""
        if not self.unit_norm_decoder or self.W_dec.grad is None:
            return
        W_dec_FD, grad_FD = self.W_dec, self.W_dec.grad
        unit_FD = W_dec_FD / W_dec_FD.norm(dim=1, keepdim=True).clamp_min(1e-12)
        parallel_F1 = (grad_FD * unit_FD).sum(dim=1, keepdim=True)
        grad_FD.sub_(parallel_F1 * unit_FD)

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """Unit-norm architectures: renormalise decoder rows (relu leaves them free)."""
        if self.unit_norm_decoder:
            self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    # ---- save-time folding ----
    def inference_state(self) -> dict[str, torch.Tensor]:
        """Tensors as saved (SAELens names); architectures with a threshold add `threshold`."""
        state = {"W_enc": self.W_enc.detach(), "b_enc": self.b_enc.detach(),
                 "W_dec": self.W_dec.detach(), "b_dec": self.b_dec.detach()}
        if self.W_skip is not None:
            state["W_skip"] = self.W_skip.detach()
        return state

    def load_inference_state(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of `inference_state` (used by `load_sae`)."""
        with torch.no_grad():
            for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
                getattr(self, name).copy_(state[name])
            if self.W_skip is not None:
                self.W_skip.copy_(state["W_skip"])
