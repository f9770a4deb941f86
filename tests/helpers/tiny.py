"""Tiny random Hugging Face models and a tokenizer trained on the fly: tests need no download."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

FAMILIES = ("gpt2", "llama", "gemma3", "gpt_neox")

_TRAIN_TEXT = [
    "The Golden Gate Bridge is in San Francisco.",
    "def add(a, b):\n    return a + b\n",
    "Sparse autoencoders find features in activations of language models.",
    "import numpy as np\nx = np.zeros((3, 4))\n",
    "The quick brown fox jumps over the lazy dog. 0123456789",
]


def tiny_tokenizer(vocab_size: int = 300) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on a few sentences; BOS is prepended like Gemma/Llama do."""
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<bos>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_TRAIN_TEXT * 20, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )


def tiny_config(family: str, vocab_size: int, n_layers: int = 3, d_model: int = 32):
    """A transformers config for a tiny random model of `family`."""
    from transformers import Gemma3TextConfig, GPT2Config, GPTNeoXConfig, LlamaConfig

    common = dict(vocab_size=vocab_size, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if family == "gpt2":
        return GPT2Config(n_embd=d_model, n_layer=n_layers, n_head=4, n_positions=512, **common)
    if family == "llama":
        return LlamaConfig(hidden_size=d_model, intermediate_size=4 * d_model,
                           num_hidden_layers=n_layers, num_attention_heads=4,
                           num_key_value_heads=2, max_position_embeddings=512, **common)
    if family == "gemma3":
        return Gemma3TextConfig(hidden_size=d_model, intermediate_size=4 * d_model,
                                num_hidden_layers=n_layers, num_attention_heads=4,
                                num_key_value_heads=1, head_dim=8, max_position_embeddings=512,
                                sliding_window=16, **common)
    if family == "gpt_neox":
        return GPTNeoXConfig(hidden_size=d_model, intermediate_size=4 * d_model,
                             num_hidden_layers=n_layers, num_attention_heads=4,
                             max_position_embeddings=512, **common)
    raise ValueError(family)


def tiny_model(family: str, vocab_size: int, seed: int = 0, **kwargs):
    """A random tiny causal LM of `family`, float32, eval mode."""
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family, vocab_size, **kwargs))
    return model.eval()


def save_tiny_model_dir(path: Path, family: str = "llama", seed: int = 0) -> Path:
    """Write a tiny model + tokenizer as a local HF directory (what `load_model(dir)` reads)."""
    tokenizer = tiny_tokenizer()
    model = tiny_model(family, len(tokenizer), seed=seed)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
