"""Structured (JSON) answers parsed strictly, with a retry that shows the model its mistake."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from monosemantic.interp.backends.base import Completion, Message
from monosemantic.interp.cache import LLMClient

T = TypeVar("T")

_FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.DOTALL)


class ParseError(ValueError):
    """An answer that is not the JSON asked for; the message is shown to the model on retry."""


def parse_json(text: str) -> Any:
    """The answer as JSON: the whole text (surrounding whitespace and one ```json fence
    allowed), nothing else. No guessing at JSON inside prose."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    try:
        return json.loads(body)
    except json.JSONDecodeError as err:
        raise ParseError(f"not valid JSON ({err.msg} at character {err.pos})") from err


def require(obj: Any, fields: dict[str, type | tuple[type, ...]]) -> dict[str, Any]:
    """`obj` must be an object with these fields of these types (extra fields ignored)."""
    if not isinstance(obj, dict):
        raise ParseError(f"expected a JSON object, got {type(obj).__name__}")
    for name, types in fields.items():
        if name not in obj:
            raise ParseError(f"missing field {name!r}")
        value = obj[name]
        # bool is an int in Python; a JSON true is never a valid number here.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in
                                            (types if isinstance(types, tuple) else (types,))):
            raise ParseError(f"field {name!r} has the wrong type ({type(value).__name__})")
    return obj


@dataclass
class Structured(Generic[T]):
    """A parsed answer and every completion it took (the first answer plus retries)."""

    value: T
    completions: list[Completion] = field(default_factory=list)
    attempts: int = 1


class StructuredError(ValueError):
    """No parseable answer after every retry."""


def complete_json(client: LLMClient, messages: list[Message], validate: Callable[[Any], T], *,
                  max_tokens: int, temperature: float = 0.0, retries: int = 2
                  ) -> Structured[T]:
    """Ask for JSON; parse strictly and validate; on failure retry up to `retries` times with
    the bad answer and the parse error appended to the conversation."""
    convo = list(messages)
    completions: list[Completion] = []
    for attempt in range(retries + 1):
        done = client.complete(convo, max_tokens=max_tokens, temperature=temperature,
                               response_format="json")
        completions.append(done)
        try:
            return Structured(validate(parse_json(done.text)), completions, attempt + 1)
        except ParseError as err:
            error = str(err)
        convo = convo + [
            {"role": "assistant", "content": done.text},
            {"role": "user", "content": f"That answer could not be used: {error}. Reply with "
                                        "the JSON object only, exactly in the format asked."}]
    raise StructuredError(f"no valid JSON after {retries + 1} attempts (last error: {error})")
