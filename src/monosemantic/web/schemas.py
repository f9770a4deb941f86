"""Request bodies of the model-backed endpoints (validated by FastAPI; bad input -> 4xx).

Structural limits live here; limits that depend on the server's settings (prompt length, edit
count, multiplier range) are checked by the endpoints against `ServeConfig`.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class InspectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, description="Text to run through the model and the SAE.")
    top: int = Field(10, ge=1, le=50, description="Features listed per token.")
    feature: int | None = Field(None, ge=0, description="Also return this feature's activation "
                                                        "on every token (`feature_acts`).")


class EditIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    feature: int = Field(ge=0, description="Feature id.")
    value: float = Field(description="Clamp (or add) value: a multiple of the feature's max "
                                     "activation when unit is 'max', else raw code units.")
    unit: Literal["max", "raw"] = "max"

    @field_validator("value")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v


class SteerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, description="Prompt to continue.")
    edits: list[EditIn] = Field(min_length=1, description="Features to steer and their values.")
    mode: Literal["clamp", "add"] = Field(
        "clamp", description="clamp: set the features in the SAE reconstruction, keep the SAE "
                             "error; add: add value x decoder direction to the activation.")
    max_new_tokens: int = Field(40, ge=1, description="Tokens to generate.")
    temperature: float = Field(0.0, ge=0.0, le=5.0, description="0 = greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Sampling seed (same for both runs).")
    include_special: bool = Field(False, description="Also steer BOS and other special-token "
                                                     "positions (the SAE never saw them).")


class FilterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    positive: list[str] = Field(min_length=1, description="Prompts every hit must fire on.")
    negative: list[str] = Field(default_factory=list, description="Prompts no hit may fire on.")
    threshold: float = Field(0.1, ge=0.0, le=1e6, description="Firing threshold on a prompt's "
                             "max activation: a fraction of the feature's max activation when "
                             "relative, else raw units.")
    relative: bool = Field(True, description="Threshold relative to each feature's max "
                                             "activation in the feature database.")
    top: int = Field(20, ge=1, le=200, description="Hits returned.")
