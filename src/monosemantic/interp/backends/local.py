"""A local Hugging Face causal LM through transformers (offline): the embedded default
Gemma 3 270M, or any local model directory / spec `load_model` accepts.

Prompts use the tokenizer's chat template when it has one; the embedded default is the *base*
Gemma 3 270M (no chat template), so messages are then written as a plain transcript. For JSON
answers the reply is primed with "{" and generation stops once the braces balance.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import torch

from monosemantic.interp.backends.base import (
    Completion,
    Message,
    ResponseFormat,
    check_messages,
)

if TYPE_CHECKING:
    from monosemantic.models import LoadedModel

_ROLE_NAMES = {"system": "Instructions", "user": "User", "assistant": "Assistant"}


def transcript(messages: list[Message]) -> str:
    """Messages as a plain-text dialogue ending with an open assistant turn."""
    parts = [f"### {_ROLE_NAMES[m['role']]}:\n{m['content'].strip()}\n" for m in messages]
    return "\n".join(parts) + "\n### Assistant:\n"


def json_end(text: str) -> int | None:
    """Index just past the first balanced top-level JSON object of `text` (which starts with
    "{"), skipping braces inside strings; None if it is not closed yet."""
    depth, in_str, escaped = 0, False, False
    for i, ch in enumerate(text):
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


class _StopWhenClosed:
    """transformers stopping criterion: the JSON object of the reply is complete."""

    def __init__(self, tokenizer: Any, prompt_len: int, prefix: str):
        self.tokenizer, self.prompt_len, self.prefix = tokenizer, prompt_len, prefix

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any
                 ) -> torch.Tensor:
        text = self.prefix + self.tokenizer.decode(input_ids[0, self.prompt_len:],
                                                   skip_special_tokens=True)
        done = json_end(text) is not None
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class LocalBackend:
    """Generation with a local model; one call at a time (the model uses every core)."""

    name = "local"

    def __init__(self, model: str = "gemma-3-270m", device: str = "cpu",
                 lm: LoadedModel | None = None):
        if lm is None:
            from monosemantic.models import load_model

            lm = load_model(model, device=device)
        self.lm = lm
        self.model = model
        self._lock = threading.Lock()

    def prompt_ids(self, messages: list[Message], prefix: str) -> torch.Tensor:
        tok = self.lm.tokenizer
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            ids = tok(text + prefix, add_special_tokens=False, return_tensors="pt").input_ids
        else:
            ids = tok(transcript(messages) + prefix, return_tensors="pt").input_ids
        return ids.to(self.lm.device)

    @torch.no_grad()
    def complete(self, messages: list[Message], *, max_tokens: int, temperature: float,
                 response_format: ResponseFormat = "text") -> Completion:
        from transformers import StoppingCriteriaList

        check_messages(messages)
        prefix = "{" if response_format == "json" else ""
        tok = self.lm.tokenizer
        ids_1S = self.prompt_ids(messages, prefix)
        n_in = ids_1S.shape[1]
        stop = (StoppingCriteriaList([_StopWhenClosed(tok, n_in, prefix)]) if prefix else None)
        sample = temperature > 0
        with self._lock:
            # torch types nn.Module's dynamic attributes as Tensor | Module, so HF's `generate`
            # reads as a Tensor to the type checker.
            out_1T = self.lm.model.generate(  # pyright: ignore[reportCallIssue]
                ids_1S, attention_mask=torch.ones_like(ids_1S), max_new_tokens=max_tokens,
                do_sample=sample, temperature=temperature if sample else None,
                top_p=None, top_k=None, stopping_criteria=stop,
                pad_token_id=tok.pad_token_id or tok.eos_token_id)
        new_ids = out_1T[0, n_in:]
        text = prefix + tok.decode(new_ids, skip_special_tokens=True)
        if prefix:
            end = json_end(text)
            text = text[:end] if end is not None else text
        return Completion(text, int(n_in), int(new_ids.numel()), 0.0)
