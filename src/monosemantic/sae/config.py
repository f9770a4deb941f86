"""`SAEConfig`: architecture and sparsity recipe of a sparse autoencoder.

What differs between architectures (defaults, which options apply, their checks) is declared on
the SAE classes (`SAE`'s class attributes and classmethods) and found through the registry
`factory.SAE_CLASSES`; this config only resolves and validates through them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from monosemantic.config import ConfigError
from monosemantic.sae.base import check_positive_int
from monosemantic.sae.bias_init import B_DEC_INITS
from monosemantic.sae.factory import ARCHITECTURES, sae_class


@dataclass
class SAEConfig:
    """Architecture and sparsity recipe of a sparse autoencoder."""

    architecture: str = field(default="relu", metadata={"choices": ARCHITECTURES})
    """relu (the Scaling Monosemanticity recipe), topk, batchtopk, jumprelu or matryoshka
    (Matryoshka BatchTopK)."""
    d_in: int | None = field(default=None, metadata={"cli": False})
    """Width d of the activations the SAE reads (training fills it in from the data)."""
    d_out: int | None = field(default=None, metadata={"cli": False})
    """Transcoders only: width of the target site the dictionary predicts (training fills it in
    from the --hook-out store). None: an SAE, which reconstructs its own input."""
    site_widths: tuple[int, ...] = field(default=(), metadata={"cli": False})
    """Crosscoders only (docs/crosscoders.md): widths d_s of the sites the dictionary reads and
    reconstructs together, in the order their activations are concatenated (d_in is their sum;
    training fills it in from the stores). Empty: not a crosscoder."""
    skip: bool = False
    """Transcoders only: add a linear skip connection W_skip·x from the input site to the
    output (skip transcoders), initialised at zero."""
    n_features: int = 16384
    """Dictionary size F."""
    k: int = 32
    """Active features per token (topk; batchtopk's and matryoshka's average over the batch).
    Ignored otherwise."""
    l1_coefficient: float = 5.0
    """relu's lambda in lambda * sum_i f_i ||W_dec[i]||; 5 assumes inputs scaled so E||x||^2 = d."""
    l0_coefficient: float = 1.0
    """jumprelu's L0 penalty weight (on inputs scaled so E||x||^2 = d); not tuned per model."""
    jumprelu_init_threshold: float = 0.01
    """jumprelu's initial threshold theta (same for every feature)."""
    jumprelu_bandwidth: float = 0.05
    """Width of the rectangle kernel of jumprelu's straight-through pseudo-gradients."""
    aux_k: int = 0
    """AuxK's k_aux: dead latents used to reconstruct the residual (topk, batchtopk, matryoshka);
    0 = d_in // 2 (Gao et al.)."""
    aux_coefficient: float = 1 / 32
    """Weight of the AuxK loss (topk, batchtopk, matryoshka)."""
    decoder_init_norm: float | None = None
    """Norm of the initial decoder rows. None = 0.1 for relu; topk, batchtopk and jumprelu keep
    unit-norm rows (as matryoshka) and accept only 1.0."""
    apply_b_dec_to_input: bool | None = None
    """Subtract b_dec from the input before encoding. None = the architecture's paper
    (False for relu and jumprelu, True for topk, batchtopk and matryoshka)."""
    b_dec_init: str | None = field(default=None, metadata={"choices": B_DEC_INITS})
    """Initial b_dec, from the first training batch: zero, mean, or median (geometric median);
    a transcoder's from its target rows. Without apply_b_dec_to_input, b_enc then starts at
    -b_dec @ W_enc (the initial encoder sees x - b_dec). None = the architecture's default:
    mean for relu (the paper's zero lets the features collapse onto the activations' mean
    within a short run: docs/scaling-laws.md), median for topk, batchtopk and matryoshka,
    zero for jumprelu."""
    batchtopk_threshold_rate: float = 0.01
    """batchtopk, matryoshka: rate of the running mean of the smallest kept activation
    (inference threshold)."""
    matryoshka_prefixes: tuple[int, ...] = ()
    """matryoshka: sizes m_1 < ... < m_G of the nested prefixes of the dictionary, each trained
    to reconstruct on its own; strictly increasing, the last = n_features. Empty: F/16, F/8,
    F/4, F/2, F (rounded down; sizes below 1 left out). Ignored by the other architectures."""

    def __post_init__(self) -> None:
        cls = sae_class(self.architecture)
        if self.apply_b_dec_to_input is None:
            self.apply_b_dec_to_input = cls.default_apply_b_dec_to_input
        if self.b_dec_init is None:
            self.b_dec_init = cls.default_b_dec_init
        if self.decoder_init_norm is None:
            self.decoder_init_norm = 1.0 if cls.unit_norm_decoder else cls.default_decoder_init_norm
        self.validate()

    def validate(self) -> None:
        """Raise `ConfigError` (a `UserError`) for values that cannot work.

        `d_in` may still be None (not known before the data is); `create_sae` needs it."""
        cls = sae_class(self.architecture)
        if self.d_in is not None:
            check_positive_int(self, "d_in")
        check_positive_int(self, "n_features")
        if self.b_dec_init is not None and self.b_dec_init not in B_DEC_INITS:
            raise ConfigError(f"b_dec_init must be one of {', '.join(B_DEC_INITS)}, got "
                              f"{self.b_dec_init!r}")
        if self.d_out is not None:
            check_positive_int(self, "d_out")
            if self.apply_b_dec_to_input:
                raise ConfigError("a transcoder's b_dec lives at its output site, so it cannot be "
                                  "subtracted from its input: set apply_b_dec_to_input false")
        elif self.skip and self.d_in is not None:
            raise ConfigError("skip is a transcoder's option (a linear map from the input site "
                              "to the output site): train with --hook-in and --hook-out, or "
                              "leave skip off")
        if self.site_widths:
            self._validate_sites()
        if self.decoder_init_norm is None or not self.decoder_init_norm > 0:
            raise ConfigError(f"decoder_init_norm must be > 0, got {self.decoder_init_norm}")
        cls.check_config(self)

    def _validate_sites(self) -> None:
        widths = tuple(self.site_widths)
        if len(widths) < 2 or not all(isinstance(w, int) and w >= 1 for w in widths):
            raise ConfigError(f"a crosscoder needs at least two sites of positive width, got "
                              f"site_widths {widths}")
        if self.d_out is not None:
            raise ConfigError("a crosscoder reconstructs its own sites: it has no d_out "
                              "(transcoder crosscoders are not implemented)")
        if self.d_in is not None and self.d_in != sum(widths):
            raise ConfigError(f"a crosscoder's d_in = {self.d_in} must be the sum of its site "
                              f"widths {widths} = {sum(widths)}")

    @property
    def is_crosscoder(self) -> bool:
        """Whether the dictionary reads and reconstructs several sites at once."""
        return bool(self.site_widths)

    @property
    def is_transcoder(self) -> bool:
        """Whether the dictionary predicts another site (`d_out` set) rather than its input."""
        return self.d_out is not None

    @property
    def resolved_matryoshka_prefixes(self) -> tuple[int, ...]:
        """`matryoshka_prefixes`, or the default F/16, F/8, F/4, F/2, F when it is empty."""
        if self.matryoshka_prefixes:
            return tuple(self.matryoshka_prefixes)
        sizes = (self.n_features // d for d in (16, 8, 4, 2, 1))
        return tuple(sorted({m for m in sizes if m >= 1}))

    @property
    def resolved_aux_k(self) -> int:
        """AuxK's k_aux with 0 resolved to d_in // 2 (at least 1, at most n_features)."""
        assert self.d_in is not None, "d_in is not set"
        aux_k = self.aux_k if self.aux_k > 0 else self.d_in // 2
        return max(1, min(aux_k, self.n_features))

