"""Token prices per model, for the cost of a run. An unknown price makes the cost unknown
(None), never 0: a run that says "$0.00" must really have cost nothing."""

from __future__ import annotations

from dataclasses import dataclass, field

# USD per million (input, output) tokens, list prices as published by the vendors in 2025.
# They change: override them with --price-in / --price-out.
KNOWN_PRICES: dict[str, tuple[float, float]] = {
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
}


@dataclass
class Prices:
    """Price lookup: an explicit price for every model wins over the built-in table, whose
    entries match a model name that starts with them (dated snapshots included)."""

    per_million: tuple[float, float] | None = None
    """(input, output) USD per million tokens for any model; None = use the table."""
    table: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(KNOWN_PRICES))
    free: bool = False
    """True for local models (cost 0 by definition: the compute is yours)."""

    def price(self, model: str) -> tuple[float, float] | None:
        if self.free:
            return (0.0, 0.0)
        if self.per_million is not None:
            return self.per_million
        matches = [k for k in self.table if model.startswith(k)]
        return self.table[max(matches, key=len)] if matches else None

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float | None:
        price = self.price(model)
        if price is None:
            return None
        return (input_tokens * price[0] + output_tokens * price[1]) / 1e6
