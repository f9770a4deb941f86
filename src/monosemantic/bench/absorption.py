"""Feature absorption on first-letter tasks (Chanin et al., "A is for Absorption"; SAEBench).

For each letter L: a logistic-regression probe on the model's raw activations says whether a
word starts with L (the ground truth); k-sparse probing on the SAE's codes finds L's main
features; on the test words that start with L and that the probe calls right, absorption is
measured where the main features stay silent (or weak) while other features whose decoder rows
point along the probe carry the probe's projection (`absorption_scores` has the definitions).

    result = measure_absorption(RunDir.open("runs/demo").load("cpu"), AbsorptionConfig())

Activations: one prompt per word, the fixed `prefix` followed by the word's token (`" word"`),
read at the word's token at the SAE's hook. The model is causal, so the word's activation
depends on the prefix and the word only: the prefix's key/value cache is computed once.
"""

from __future__ import annotations

import copy
import inspect
import string
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from monosemantic.bench.absorption_probes import fit_letter_probe, k_sparse_probing
from monosemantic.bench.absorption_scores import Thresholds, score_word, summarize_letter
from monosemantic.bench.words import frequent_words, single_token_words, word_prompts
from monosemantic.config import ConfigError
from monosemantic.errors import UserError
from monosemantic.models.hooks import install_hook
from monosemantic.progress import progress

if TYPE_CHECKING:
    from monosemantic.models import LoadedModel
    from monosemantic.runs import RunModel
    from monosemantic.sae import SAE

DEFAULT_PREFIX = (" tree has the first letter: T\n cloud has the first letter: C\n"
                  " apple has the first letter: A\n river has the first letter: R\n")
SMALL_MODEL_PARAMS = 1_000_000_000
CAVEAT = ("absorption is measured against a linear first-letter probe on the model's own "
          "activations; on models under 1B parameters that probe is often weak and the "
          "figures unreliable (SAEBench recommends models of 2B+). Judge each letter by its "
          "probe's test F1 (letters[L].probe).")


@dataclass
class AbsorptionConfig:
    """Feature absorption on first-letter tasks."""

    n_words: int = 3000
    """Words: wordfreq's most frequent lower-case alphabetic English words that are one token
    with a leading space in the model's tokenizer, the first n_words of them."""
    letters: str = string.ascii_lowercase
    """The letters to measure (every word serves as a negative example of the others)."""
    prefix: str = DEFAULT_PREFIX
    """Text before each word (a few "<word> has the first letter: <L>" lines, as SAEBench's
    prompts); the activation is read at the word's token, the prompt's last."""
    test_fraction: float = 0.25
    """Share of the words held out (split by word): the probes are scored and absorption is
    measured on them."""
    max_k: int = 10
    """Largest k of k-sparse probing."""
    f1_jump: float = 0.03
    """The main features grow from k = 1 to k + 1 while the k-sparse probe's test F1 rises by
    more than this (SAEBench's f1_jump_threshold)."""
    absorber_cos: float = 0.1
    """Absorption fraction: a non-main feature counts as absorbing only if its decoder row's
    cosine with the probe direction is at least this (SAEBench)."""
    full_cos: float = 0.025
    """Full absorption: the top-projecting feature's decoder cosine with the probe is at least
    this (SAEBench)."""
    projection_share: float = 0.4
    """The absorbing features must carry at least this share of the activation's projection onto
    the probe direction (both scores; SAEBench)."""
    max_absorbers: int = 3
    """Absorption fraction: at most this many features absorb one word (SAEBench)."""
    min_probe_f1: float = 0.6
    """A letter enters the means only if its ground-truth probe's test F1 is at least this
    (SAEBench's min_GT_probe_f1); the others are still reported."""
    min_true_positives: int = 20
    """... and only if the probe finds at least this many of its test words (SAEBench's
    min_feats_for_eval)."""
    subtract_decoder_bias: bool = True
    """Project x − b_dec (what the features must explain) onto the probe; False projects x
    itself, as SAEBench does, which counts b_dec's projection as unexplained."""
    n_examples: int = 5
    """Absorbing features and absorbed words listed per letter."""
    batch_size: int = 64
    """Words per forward pass (one token each after the prefix, whose key/value cache is
    computed once)."""
    seed: int = 0
    """Seed of the train/test split and the probes."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise `ConfigError` for values that cannot work."""
        bad = sorted(set(self.letters) - set(string.ascii_lowercase))
        if not self.letters or bad or len(set(self.letters)) != len(self.letters):
            raise ConfigError(f"letters must be distinct lower-case a-z letters, got "
                              f"{self.letters!r}")
        for name in ("n_words", "max_k", "max_absorbers", "batch_size", "n_examples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        for name in ("f1_jump", "absorber_cos", "full_cos", "projection_share",
                     "min_probe_f1", "min_true_positives"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(self.absorber_cos, self.full_cos, self.projection_share,
                          self.max_absorbers)


def measure_absorption(run_model: RunModel, cfg: AbsorptionConfig | None = None
                       ) -> dict[str, Any]:
    """Feature absorption of `run_model`'s SAE on first-letter tasks (JSON-ready dict; keys in
    `absorption_from_activations`, plus model, hook, n_params, prompt and caveat)."""
    cfg = AbsorptionConfig() if cfg is None else cfg
    cfg.validate()
    lm, sae, hook = run_model
    check_sae_fits(lm, sae, hook)
    words = single_token_words(lm.tokenizer, frequent_words(), cfg.n_words)
    ids_WS = word_prompts(lm.tokenizer, cfg.prefix, words)
    acts_WD = word_activations(lm, hook, ids_WS[0, :-1], ids_WS[:, -1], cfg.batch_size)
    result = absorption_from_activations([w.text for w in words], acts_WD, sae, cfg)
    n_params = sum(p.numel() for p in lm.model.parameters())
    return {"model": lm.spec, "hook": hook, "n_params": n_params,
            "prompt": lm.tokenizer.decode(ids_WS[0]),
            "caveat": CAVEAT if n_params < SMALL_MODEL_PARAMS else None, **result}


def check_sae_fits(lm: LoadedModel, sae: SAE, hook: str) -> None:
    """UserError unless `hook` is a hook point of the model whose width is the SAE's d_in."""
    width = lm.hook_point(hook).width  # UserError for a hook the model does not have
    if sae.cfg.d_in != width:
        raise UserError(f"the SAE reads width {sae.cfg.d_in} but {hook!r} of the model "
                        f"{lm.spec!r} has width {width}: give the model and hook the SAE was "
                        "trained on")


class _Stop(Exception):
    """Raised from the hook: the layers after it are not needed."""


@torch.no_grad()
def word_activations(lm: LoadedModel, hook: str, prefix_S: torch.Tensor, tokens_W: torch.Tensor,
                     batch_size: int) -> torch.Tensor:
    """Activations [W, D] (float32, CPU) at `hook` on each word's token after `prefix_S`.

    The prefix is run once and its key/value cache repeated for each batch of words, so each
    word costs one token's forward (the same activations as the whole prompt; tested)."""
    point = lm.hook_point(hook)
    dev = lm.device
    # transformers 5 renamed the forward's `past_key_values` (and the output's) to `cache`.
    key = ("cache" if "cache" in inspect.signature(lm.model.forward).parameters
           else "past_key_values")
    prefix_cache = getattr(lm.model(input_ids=prefix_S[None].to(dev), use_cache=True), key)
    got: list[torch.Tensor] = []

    def read(act: torch.Tensor) -> None:
        got.append(act[:, -1].float().cpu())
        raise _Stop

    handle = install_hook(lm.model, point, read)
    try:
        with progress(total=len(tokens_W), desc="absorption prompts", unit="word") as bar:
            for lo in range(0, len(tokens_W), batch_size):
                ids_B1 = tokens_W[lo:lo + batch_size, None].to(dev)
                cache = copy.deepcopy(prefix_cache)
                cache.batch_repeat_interleave(len(ids_B1))
                try:
                    lm.model(input_ids=ids_B1, use_cache=True, **{key: cache})
                except _Stop:
                    pass
                bar.update(len(ids_B1))
    finally:
        handle.remove()
    return torch.cat(got)


@torch.no_grad()
def _codes(sae: SAE, acts_WD: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    p = next(sae.parameters())
    return torch.cat([sae.encode(acts_WD[lo:lo + batch_size].to(p.device, p.dtype)).float().cpu()
                      for lo in range(0, len(acts_WD), batch_size)]).numpy()


def absorption_from_activations(words: list[str], acts_WD: torch.Tensor, sae: SAE,
                                cfg: AbsorptionConfig) -> dict[str, Any]:
    """Absorption from each word's activation (row i of `acts_WD` is `words[i]`'s).

    Returns `config`, `n_words`, `n_train`, `n_test`, the means over the included letters
    (`mean_absorption_fraction`, `mean_full_absorption_rate`, `mean_absorption_rate`,
    `mean_probe_f1`, `mean_main_features_f1`, `mean_num_main_features`; None when no letter is
    included), `letters_included`, `shared_absorbers` (listed absorbers of more than one letter:
    feature id -> letters; a letter's absorber should be about that letter's words, so these
    are suspects, e.g. generic features with a slight cosine), and `letters`: per letter its
    word counts, its probe's test scores, its main features (their decoder cosines with the
    probe, the k-sparse F1s and the chosen one), the rates over its probe true positives, the
    absorbing features with example words, and why it is left out of the means
    (`excluded_because`).
    """
    if len(words) != len(acts_WD):
        raise ValueError(f"{len(words)} words but {len(acts_WD)} activation rows")
    if sae.cfg.d_in != acts_WD.shape[1]:
        raise UserError(f"the SAE reads width {sae.cfg.d_in}, the activations have width "
                        f"{acts_WD.shape[1]}")
    is_test_W = held_out_mask(len(words), cfg.test_fraction, cfg.seed)
    n_test = int(is_test_W.sum())
    X_WD = acts_WD.double().numpy()
    codes_WF = _codes(sae, acts_WD)
    W_dec_FD = sae.W_dec.detach().double().cpu().numpy()
    b_dec_D = sae.b_dec.detach().double().cpu().numpy()
    centred_WD = X_WD - b_dec_D if cfg.subtract_decoder_bias else X_WD
    first_W = np.array([w[0] for w in words])
    letters = {}
    for letter in cfg.letters:
        letters[letter] = _letter(words, X_WD, centred_WD, codes_WF, W_dec_FD,
                                  first_W == letter, is_test_W, cfg)
    included = [L for L, r in letters.items() if r["excluded_because"] is None]
    letters_of: dict[int, list[str]] = {}
    for letter, r in letters.items():
        for absorber in r.get("absorbers", []):
            letters_of.setdefault(absorber["feature"], []).append(letter)

    def mean(key: str, sub: str | None = None) -> float | None:
        vals = [letters[L][key] if sub is None else letters[L][key][sub] for L in included]
        return float(np.mean(vals)) if vals else None

    return {"config": asdict(cfg), "n_words": len(words), "n_train": len(words) - n_test,
            "n_test": n_test, "mean_absorption_fraction": mean("mean_absorption_fraction"),
            "mean_full_absorption_rate": mean("full_absorption_rate"),
            "mean_absorption_rate": mean("absorption_rate"),
            "mean_probe_f1": mean("probe", "f1"), "mean_main_features_f1":
            mean("main_features_f1"), "mean_num_main_features": mean("num_main_features"),
            "letters_included": included,
            "shared_absorbers": {str(f): ls for f, ls in letters_of.items() if len(ls) > 1},
            "letters": letters}


def held_out_mask(n_words: int, test_fraction: float, seed: int) -> np.ndarray:
    """Which words are held out [W] (bool): a seeded random round(W * test_fraction) of them."""
    is_test_W = np.zeros(n_words, dtype=bool)
    n_test = int(round(n_words * test_fraction))
    is_test_W[np.random.default_rng(seed).permutation(n_words)[:n_test]] = True
    return is_test_W


def _letter(words: list[str], X_WD: np.ndarray, centred_WD: np.ndarray, codes_WF: np.ndarray,
            W_dec_FD: np.ndarray, y_W: np.ndarray, is_test_W: np.ndarray,
            cfg: AbsorptionConfig) -> dict[str, Any]:
    """One letter's probes, main features and absorption (see `absorption_from_activations`)."""
    train, test = ~is_test_W, is_test_W
    out: dict[str, Any] = {"n_train_words": int(y_W[train].sum()),
                           "n_test_words": int(y_W[test].sum())}
    if out["n_train_words"] == 0 or out["n_test_words"] == 0:
        return {**out, "excluded_because": "no words with this letter in the train or test "
                "split (use more words)"}
    if y_W[train].all():
        return {**out, "excluded_because": "no train words of other letters"}
    probe = fit_letter_probe(X_WD[train], y_W[train], X_WD[test], y_W[test], cfg.seed)
    sparse = k_sparse_probing(codes_WF[train], y_W[train], codes_WF[test], y_W[test],
                              cfg.max_k, cfg.f1_jump, cfg.seed)
    dir_D = probe.w_D / max(float(np.linalg.norm(probe.w_D)), 1e-12)
    contrib_F = W_dec_FD @ dir_D  # projection of each feature's decoder row (per unit code)
    cos_F = contrib_F / np.maximum(np.linalg.norm(W_dec_FD, axis=1), 1e-12)
    main = sparse.main_features
    true_pos = np.flatnonzero(test & y_W)[probe.test_scores_W[y_W[test]] > 0]
    scores = [score_word(words[i], codes_WF[i], codes_WF[i] * contrib_F,
                         float(centred_WD[i] @ dir_D), cos_F, main, cfg.thresholds)
              for i in true_pos]
    excluded = None
    if probe.f1 < cfg.min_probe_f1:
        excluded = f"probe test F1 {probe.f1:.2f} < min_probe_f1 {cfg.min_probe_f1}"
    elif len(scores) < cfg.min_true_positives:
        excluded = (f"{len(scores)} probe true positives < min_true_positives "
                    f"{cfg.min_true_positives}")
    return {**out, "probe": {k: round(getattr(probe, k), 4) for k in
                             ("accuracy", "precision", "recall", "f1")},
            "main_features": main, "num_main_features": len(main),
            "main_feature_probe_cos": [round(float(cos_F[f]), 4) for f in main],
            "sparse_probe_f1_by_k": [round(f, 4) for f in sparse.f1_by_k],
            "main_features_f1": round(sparse.f1_by_k[len(main) - 1], 4),
            "probe_true_positives": len(scores), "excluded_because": excluded,
            **summarize_letter(scores, cos_F, cfg.n_examples)}
