"""A planted first-letter world for the absorption metric: word activations built from letter
directions, a few words that also carry a word-specific direction, and a ReLU SAE with one
feature per letter plus (optionally) absorbing features that take those words over."""

from __future__ import annotations

import string
from dataclasses import dataclass

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from monosemantic.sae import SAE, SAEConfig, create_sae

LETTERS = string.ascii_lowercase
LETTER_SCALE = 3.0
"""Each word's activation holds LETTER_SCALE × its first letter's direction."""
WORD_SCALE = 4.0
"""An absorbed word also holds WORD_SCALE × its own direction."""


@dataclass
class Planted:
    """The directions of the planted world: columns of one random orthogonal matrix."""

    basis_DD: torch.Tensor
    n_absorbers: int

    @property
    def d(self) -> int:
        return self.basis_DD.shape[0]

    def letter_dir(self, letter: str) -> torch.Tensor:
        return self.basis_DD[:, LETTERS.index(letter)]

    def word_dir(self, j: int) -> torch.Tensor:
        return self.basis_DD[:, len(LETTERS) + j]

    def absorber_feature(self, j: int) -> int:
        """The SAE feature that absorbs the j-th absorbed word."""
        return len(LETTERS) + j


def planted(d: int = 48, n_absorbers: int = 8, seed: int = 0) -> Planted:
    if d < len(LETTERS) + n_absorbers:
        raise ValueError("d too small for the letters and the absorbed words")
    gen = torch.Generator().manual_seed(seed)
    q_DD, _ = torch.linalg.qr(torch.randn(d, d, generator=gen))
    return Planted(q_DD, n_absorbers)


def word_vectors(world: Planted, words: list[str], absorbed: list[str], noise: float = 0.2,
                 seed: int = 1) -> torch.Tensor:
    """[W, d]: LETTER_SCALE·u_letter + noise, plus WORD_SCALE·z_j for `absorbed[j]`."""
    gen = torch.Generator().manual_seed(seed)
    x_WD = noise * torch.randn(len(words), world.d, generator=gen)
    for i, w in enumerate(words):
        x_WD[i] += LETTER_SCALE * world.letter_dir(w[0])
        if w in absorbed:
            x_WD[i] += WORD_SCALE * world.word_dir(absorbed.index(w))
    return x_WD


def planted_sae(world: Planted, absorbing_letter: str | None, n_features: int = 64) -> SAE:
    """A ReLU SAE: feature i fires (≈ 1.5) on words of letter i. With `absorbing_letter`, that
    letter's feature is silenced on the absorbed words and feature 26 + j fires (≈ 3) on the
    j-th absorbed word instead, its decoder row between the letter's and the word's
    direction; without, features 26.. never fire. The rest never fire."""
    sae = create_sae(SAEConfig(architecture="relu", d_in=world.d, n_features=n_features))
    with torch.no_grad():
        W_enc_DF = torch.zeros(world.d, n_features)
        b_enc_F = torch.full((n_features,), -1.0)
        W_dec_FD = torch.nn.functional.normalize(torch.randn(n_features, world.d), dim=1)
        for i, letter in enumerate(LETTERS):
            W_enc_DF[:, i] = world.letter_dir(letter)
            b_enc_F[i] = -1.5
            W_dec_FD[i] = world.letter_dir(letter)
        if absorbing_letter is not None:
            col = LETTERS.index(absorbing_letter)
            for j in range(world.n_absorbers):
                f = world.absorber_feature(j)
                W_enc_DF[:, col] -= world.word_dir(j)
                W_enc_DF[:, f] = world.word_dir(j)
                W_dec_FD[f] = torch.nn.functional.normalize(
                    world.letter_dir(absorbing_letter) + world.word_dir(j), dim=0)
        sae.W_enc.copy_(W_enc_DF)
        sae.b_enc.copy_(b_enc_F)
        sae.W_dec.copy_(W_dec_FD)
        sae.b_dec.zero_()
    return sae.eval()


def word_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose vocabulary is `" " + w` for each of `words` (anything else
    is <unk>); BOS is not added."""
    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<unk>": 3}
    for w in words:
        vocab.setdefault("Ġ" + w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>")
