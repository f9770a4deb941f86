"""Packing invariants: fixed length, BOS first, separators, doc_ids/positions, round trip."""

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from monosemantic.data import Document, batch_contexts, bos_token_id, pack_contexts
from monosemantic.errors import UserError

TEXTS = [
    "The Golden Gate Bridge is in San Francisco.",
    "def add(a, b):\n    return a + b\n" * 9,
    "x",
    "Sparse autoencoders find features in activations of language models. " * 5,
    "",
    "import numpy as np\nx = np.zeros((3, 4))\n",
]


def _documents(texts=TEXTS, first_id=10):
    return [Document(first_id + i, t) for i, t in enumerate(texts)]


def gpt2_style_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE whose only special token is <|endoftext|> (EOS), no BOS, like GPT-2."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=280, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(TEXTS * 5, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def _check_invariants(tokenizer, docs, contexts, ctx_len):
    bos = bos_token_id(tokenizer)
    assert contexts, "no contexts"
    for ctx in contexts:
        for tensor in (ctx.tokens, ctx.doc_ids, ctx.positions):
            assert tensor.shape == (ctx_len,) and tensor.dtype == torch.long
        assert ctx.tokens[0] == bos
        # Where the document changes, the new document starts with its BOS at position 0.
        real = ctx.doc_ids >= 0
        starts = real & (ctx.positions == 0)
        assert torch.all(ctx.tokens[starts] == bos)
        for i in range(1, ctx_len):
            if real[i] and real[i - 1] and ctx.doc_ids[i] != ctx.doc_ids[i - 1]:
                assert ctx.positions[i] == 0 and ctx.tokens[i] == bos
        assert torch.all(ctx.positions[~real] == -1)
    for doc in docs:
        expected = tokenizer(doc.text, add_special_tokens=False)["input_ids"]
        got_pos = torch.cat([c.positions[c.doc_ids == doc.doc_id] for c in contexts])
        got_tok = torch.cat([c.tokens[c.doc_ids == doc.doc_id] for c in contexts])
        if not expected:
            assert got_tok.numel() == 0
            continue
        assert got_pos.tolist() == list(range(len(expected) + 1))
        assert got_tok[0] == bos and got_tok[1:].tolist() == expected
        assert tokenizer.decode(got_tok[1:].tolist()) == doc.text


@pytest.mark.parametrize("ctx_len", [2, 3, 8, 16, 64, 1000])
def test_packing_invariants_and_round_trip(tiny_tok, ctx_len):
    docs = _documents()
    contexts = list(pack_contexts(tiny_tok, docs, ctx_len=ctx_len, tokenize_batch=2))
    _check_invariants(tiny_tok, docs, contexts, ctx_len)
    n_tokens = sum(len(tiny_tok(d.text, add_special_tokens=False)["input_ids"]) for d in docs)
    n_text = sum(int((c.positions >= 1).sum()) for c in contexts)
    assert n_text == n_tokens  # no token lost or repeated


def test_long_document_continues_after_an_inserted_bos(tiny_tok):
    doc = Document(0, "Sparse autoencoders find features in activations. " * 20)
    contexts = list(pack_contexts(tiny_tok, [doc], ctx_len=16))
    assert len(contexts) > 3
    for ctx in contexts[1:]:
        assert ctx.tokens[0] == tiny_tok.bos_token_id
        assert ctx.doc_ids[0] == -1 and ctx.positions[0] == -1
    assert contexts[1].positions[1] == contexts[0].positions[-1] + 1


def test_only_the_last_context_is_padded(tiny_tok):
    contexts = list(pack_contexts(tiny_tok, _documents(), ctx_len=32))
    pads = [int(((c.doc_ids == -1) & (c.tokens == tiny_tok.pad_token_id)).sum()) for c in contexts]
    assert pads[-1] > 0 and sum(pads[:-1]) == 0
    dropped = list(pack_contexts(tiny_tok, _documents(), ctx_len=32, pad_last=False))
    assert len(dropped) == len(contexts) - 1
    assert all(torch.equal(a.tokens, b.tokens) for a, b in zip(dropped, contexts))


def test_no_double_bos_from_the_tokenizer_template(tiny_tok):
    # tiny_tok's template prepends <bos> itself; packing must not let it through.
    contexts = list(pack_contexts(tiny_tok, _documents(), ctx_len=64))
    for ctx in contexts:
        bos_at = (ctx.tokens == tiny_tok.bos_token_id).nonzero().flatten().tolist()
        assert all(b - a > 1 for a, b in zip(bos_at, bos_at[1:]))


def test_gpt2_style_tokenizer_without_bos_uses_endoftext():
    tok = gpt2_style_tokenizer()
    assert tok.bos_token_id is None
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    assert bos_token_id(tok) == eot
    docs = _documents()
    contexts = list(pack_contexts(tok, docs, ctx_len=12))
    _check_invariants(tok, docs, contexts, 12)
    assert all(c.tokens[0] == eot for c in contexts)


def test_tokenizer_without_bos_or_eos_is_a_user_error(tiny_tok):
    tok = PreTrainedTokenizerFast(tokenizer_object=tiny_tok.backend_tokenizer)
    with pytest.raises(UserError, match="neither a BOS nor an EOS"):
        list(pack_contexts(tok, _documents(), ctx_len=8))


def test_batches_stack_contexts(tiny_tok):
    contexts = list(pack_contexts(tiny_tok, _documents(), ctx_len=8))
    batches = list(batch_contexts(iter(contexts), batch_size=4))
    assert [b.tokens.shape[0] for b in batches] == \
        [4] * (len(contexts) // 4) + ([len(contexts) % 4] if len(contexts) % 4 else [])
    assert all(b.tokens.shape[1] == 8 and b.doc_ids.shape == b.positions.shape == b.tokens.shape
               for b in batches)
    assert torch.equal(batches[0].tokens[1], contexts[1].tokens)
    assert torch.equal(batches[-1].positions[-1], contexts[-1].positions)
    full = list(batch_contexts(contexts, batch_size=4, drop_last=True))
    assert all(b.tokens.shape[0] == 4 for b in full)


def test_bad_sizes_are_user_errors(tiny_tok):
    with pytest.raises(UserError, match="ctx_len"):
        list(pack_contexts(tiny_tok, _documents(), ctx_len=1))
    with pytest.raises(UserError, match="batch_size"):
        list(batch_contexts([], batch_size=0))
