"""Cross-layer transcoders (CLT; Ameisen et al. 2025, "Circuit Tracing", Anthropic).

Over the model layers L_0 < ... < L_{n-1}, a CLT has one encoder per layer, reading that layer's
MLP input x_L (`blocks.L.hook_mlp_in`), and one decoder W_dec^{L→L'} per pair L ≤ L', writing
to the MLP outputs y_L' (`blocks.L'.hook_mlp_out`):

    f_L  = σ_L(x_L)                                  F features per layer
    ŷ_L' = b_L' + Σ_{L ≤ L'} f_L · W_dec^{L→L'}
    loss = Σ_L' ‖y_L' − ŷ_L'‖²  + Σ_L sparsity_L  (+ Σ_L AuxK_L)

σ_L, the sparsity terms, AuxK and thresholds are the architecture's own: each layer's encoder
is an ordinary registry SAE (`sae_class(cfg.architecture)`) used through `SAE.train_codes` /
`SAE.aux_loss`, whose decoder `W_dec` [F, (n − i)·d_out] is the concatenation of the layer's
decoders W_dec^{L→L'} for L' = L, ..., L_{n-1}. So the decoder-norm weighted penalty (relu's
λ·Σ f_i‖W_dec[i]‖), the unit-norm rows (topk, batchtopk, jumprelu) and AuxK's dead-latent
reconstruction all see the *concatenated* decoder of each feature, as the paper's penalty does.
The encoders' own `b_dec` is unused (kept at 0, frozen); the CLT holds one bias per target
layer. matryoshka is refused (`SAE.supports_cross_layer`): its nested-prefix loss would need
one joint decode per prefix. Skip connections are not implemented.

Memory: the decoders hold Σ_i (n − i)·F·d_out = n(n+1)/2·F·d_out floats, O(n²·F·d), against
n·F·d for the encoders; F is per layer (n·F features in all). Gemma 3 270M (18 layers, d 640)
at F = 4,096 per layer: 171·4096·640·4 B ≈ 1.8 GB of decoders, ×4 with Adam and gradients.

Training reads the n input and n target sites of one row side by side, concatenated:
x [B, n·d_in], y [B, n·d_out] (site i at columns i·d .. (i+1)·d), so the trainer's loop runs it
as it runs an SAE (`forward`, the optimizer-step hooks, fires over the n·F features).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from torch import nn

from monosemantic.config import ConfigError
from monosemantic.errors import UserError
from monosemantic.sae.base import SAE, BatchGroup, TrainCodes
from monosemantic.sae.config import SAEConfig
from monosemantic.sae.factory import sae_class


def parse_layers(text: str) -> tuple[int, ...]:
    """A layer spec as the CLI takes it: `0-3` (a range, both ends included), `0,2,5`, or a
    mix (`0-2,5`); sorted, each layer once. ConfigError for anything else."""
    layers: set[int] = set()
    for part in str(text).replace(" ", "").split(","):
        first, sep, last = part.partition("-")
        try:
            lo = int(first)
            hi = int(last) if sep else lo
        except ValueError:
            raise ConfigError(f"--clt-layers takes layers such as 0-3 or 0,2,5, got "
                              f"{text!r}") from None
        if lo < 0 or hi < lo:
            raise ConfigError(f"--clt-layers {text!r}: {part!r} is not a range of layers >= 0")
        layers.update(range(lo, hi + 1))
    return tuple(sorted(layers))


def clt_config(cfg: SAEConfig) -> SAEConfig:
    """`cfg` as one layer's recipe of a CLT: a transcoder (d_out = d_in unless given) that never
    subtracts b_dec from its input; refuses architectures and options a CLT cannot use."""
    cls = sae_class(cfg.architecture)
    if not cls.supports_cross_layer:
        raise ConfigError(f"{cfg.architecture} cannot be a cross-layer transcoder (its loss is "
                          "not codes + penalty + AuxK around one decode): choose relu, topk, "
                          "batchtopk or jumprelu")
    if cfg.skip:
        raise ConfigError("skip connections are not implemented for cross-layer transcoders: "
                          "leave --skip off")
    if cfg.d_in is None:
        raise ConfigError("the CLT's d_in is not set: give the width of the MLP inputs")
    d_out = cfg.d_in if cfg.d_out is None else cfg.d_out
    return dataclasses.replace(cfg, d_out=d_out, apply_b_dec_to_input=False)


class CLTOutput:
    """What `CrossLayerTranscoder.forward` returns (the trainer reads it as an `SAEOutput`):
    the concatenated prediction, per-layer codes, named loss terms and their sum."""

    def __init__(self, x_hat_BD: torch.Tensor, codes: list[TrainCodes],
                 losses: dict[str, torch.Tensor], loss: torch.Tensor):
        self.x_hat_BD, self.codes, self.losses, self.loss = x_hat_BD, codes, losses, loss

    def fires_F(self) -> torch.Tensor:
        """Per-feature fire counts of the n·F features, layer after layer (int64)."""
        return torch.cat([c.fires_F() for c in self.codes])


class CrossLayerTranscoder(nn.Module):
    """A CLT over `layers` (model block indices, ascending) with the per-layer recipe `cfg`."""

    shard: ClassVar[None] = None
    """Never feature-sharded (the trainer reads this as it does an SAE's)."""
    feature_dims: ClassVar[dict[str, int]] = {}
    """Checkpoints keep every tensor whole."""

    def __init__(self, cfg: SAEConfig, layers: Sequence[int]):
        super().__init__()
        self.cfg = clt_config(cfg)
        self.layers = tuple(int(layer) for layer in layers)
        if not self.layers or list(self.layers) != sorted(set(self.layers)):
            raise ConfigError(f"CLT layers must be distinct and ascending, got {self.layers}")
        cls = sae_class(self.cfg.architecture)
        n, d_out = len(self.layers), self.d_out
        saes = [cls(dataclasses.replace(self.cfg, d_out=(n - i) * d_out)) for i in range(n)]
        self.encoders = nn.ModuleList(saes)
        """One registry SAE per layer (its `W_dec`: the layer's decoders, concatenated)."""
        self._saes: list[SAE] = saes  # the same modules, typed
        for enc in self._saes:
            enc.b_dec.requires_grad_(False)
        self.b_dec = nn.Parameter(torch.zeros(n * d_out))
        """Per target layer biases, concatenated [n·d_out]."""
        self.needs_dead_mask = cls.needs_dead_mask

    # ---- sizes and lookups ----
    @property
    def d_in(self) -> int:
        assert self.cfg.d_in is not None
        return self.cfg.d_in

    @property
    def d_out(self) -> int:
        assert self.cfg.d_out is not None
        return self.cfg.d_out

    @property
    def n_features(self) -> int:
        """Features per layer (F)."""
        return self.cfg.n_features

    @property
    def n_features_total(self) -> int:
        return len(self.layers) * self.cfg.n_features

    def index(self, layer: int) -> int:
        """Position of model layer `layer` among the CLT's layers (UserError if absent)."""
        if layer not in self.layers:
            raise UserError(f"layer {layer} is not one of this CLT's layers {list(self.layers)}")
        return self.layers.index(layer)

    def encoder(self, layer: int) -> SAE:
        """The registry SAE that encodes `layer`'s MLP input (its W_dec: the concatenated
        decoders to `layer` and every later CLT layer)."""
        return self._saes[self.index(layer)]

    def W_dec_to(self, source_layer: int, target_layer: int) -> torch.Tensor:
        """W_dec^{source→target} [F, d_out] (a view of the source's concatenated decoder)."""
        i, j = self.index(source_layer), self.index(target_layer)
        if j < i:
            raise UserError(f"layer {source_layer}'s features write only to layers >= "
                            f"{source_layer}, not to {target_layer}")
        d = self.d_out
        return self.encoder(source_layer).W_dec[:, (j - i) * d:(j - i + 1) * d]

    def bias(self, target_layer: int) -> torch.Tensor:
        """b_dec of `target_layer`'s prediction [d_out]."""
        j, d = self.index(target_layer), self.d_out
        return self.b_dec[j * d:(j + 1) * d]

    # ---- inference (a graph's `Replacement`) ----
    def encode(self, layer: int, mlp_in_SD: torch.Tensor) -> torch.Tensor:
        """Codes [..., F] of `layer`'s features from its MLP input [..., d_in] (inference)."""
        x_ND = mlp_in_SD.reshape(-1, mlp_in_SD.shape[-1])
        f_NF = self.encoder(layer).encode(x_ND)
        return f_NF.reshape(*mlp_in_SD.shape[:-1], f_NF.shape[-1])

    def decode_to(self, source_layer: int, target_layer: int,
                  acts_SF: torch.Tensor) -> torch.Tensor:
        """What `source_layer`'s codes write to `target_layer`'s MLP output (no bias)."""
        return nn.functional.linear(acts_SF, self.W_dec_to(source_layer, target_layer).T)

    def predict(self, mlp_in: Mapping[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """Every CLT layer's predicted MLP output from the MLP inputs of all its layers."""
        acts = {layer: self.encode(layer, mlp_in[layer]) for layer in self.layers}
        out = {}
        for target in self.layers:
            y_SD = self.bias(target).expand(*mlp_in[target].shape[:-1], -1)
            for source in self.layers[:self.index(target) + 1]:
                y_SD = y_SD + self.decode_to(source, target, acts[source])
            out[target] = y_SD
        return out

    # ---- training (the trainer's SAE interface) ----
    def forward(self, x_BD: torch.Tensor, dead_mask_F: torch.Tensor | None = None,
                l1_scale: float = 1.0, group: BatchGroup | None = None,
                target_BD: torch.Tensor | None = None) -> CLTOutput:
        """Losses of a batch of concatenated inputs [B, n·d_in] against the concatenated
        targets [B, n·d_out]; `dead_mask_F` [n·F] feeds AuxK layer by layer."""
        if target_BD is None:
            raise ValueError("a CLT's forward needs target_BD (the MLP outputs of the same rows)")
        d_in, d_out, n_feat = self.d_in, self.d_out, self.n_features
        codes = [enc.train_codes(x_BD[:, i * d_in:(i + 1) * d_in], l1_scale, group)
                 for i, enc in enumerate(self._saes)]
        y_hat_BD = self.b_dec.expand(x_BD.shape[0], -1).clone()
        for i, (enc, c) in enumerate(zip(self._saes, codes)):
            y_hat_BD[:, i * d_out:] += c.decode(enc.W_dec)
        losses = {"mse": SAE.mse(target_BD, y_hat_BD)}
        for i, (enc, c) in enumerate(zip(self._saes, codes)):
            terms = dict(c.sparsity)
            if dead_mask_F is not None:
                terms.update(enc.aux_loss(
                    x_BD[:, i * d_in:(i + 1) * d_in], y_hat_BD[:, i * d_out:], c,
                    dead_mask_F[i * n_feat:(i + 1) * n_feat], target_BD[:, i * d_out:], group))
            for name, value in terms.items():
                losses[name] = losses[name] + value if name in losses else value
        loss = losses["mse"] + sum(v for name, v in losses.items() if name != "mse")
        return CLTOutput(y_hat_BD, codes, losses, loss)

    def sparsity_coefficient(self) -> float:
        return self._saes[0].sparsity_coefficient()

    @torch.no_grad()
    def before_optimizer_step(self) -> None:
        for enc in self._saes:
            enc.before_optimizer_step()

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        for enc in self._saes:
            enc.after_optimizer_step()

    @torch.no_grad()
    def init_from_data(self, x_ND: torch.Tensor, target_ND: torch.Tensor | None = None) -> None:
        """Each layer's architecture init on its input and its targets (topk: b_dec at their
        geometric median); the target layer's block of it becomes that layer's bias."""
        assert target_ND is not None, "a CLT initialises from inputs and targets"
        d_in, d_out = self.d_in, self.d_out
        for i, enc in enumerate(self._saes):
            enc.init_from_data(x_ND[:, i * d_in:(i + 1) * d_in], target_ND[:, i * d_out:])
            self.b_dec[i * d_out:(i + 1) * d_out] = enc.b_dec[:d_out]
            enc.b_dec.zero_()
