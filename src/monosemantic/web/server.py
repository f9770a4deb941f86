"""`monosemantic serve RUN`: the feature browser on a real ASGI server (uvicorn)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from monosemantic.console import say
from monosemantic.errors import UserError
from monosemantic.runs import ModelOptions


@dataclass
class ServeConfig:
    """Serve the feature browser of a run: overview, feature pages, search, prompt inspector,
    steering playground, feature map, and the JSON API under /api (OpenAPI at /openapi.json)."""

    run: Path = field(metadata={"positional": True})
    """Training run directory holding features.sqlite (`monosemantic analyze RUN` writes it),
    or its sae/ folder; the demo's output folder is a run. A pretrained SAE folder (or
    hf:OWNER/REPO/FOLDER) serves its run view, analysed with the same --hook
    (docs/pretrained.md)."""
    host: str = "127.0.0.1"
    """Address to bind; the default answers this machine only. 0.0.0.0 opens it to the network."""
    port: int = 8000
    """TCP port."""
    device: str = "auto"
    """Torch device of the model-backed pages (inspect, steer): auto, cpu, cuda, cuda:1, mps."""
    model_options: ModelOptions = field(default_factory=ModelOptions,
                                        metadata={"short_flags": True})
    """The model to load instead of the run's, and a pretrained SAE folder's hooks (also
    spelled without `model-options.`: --model, --hook, --hook-out)."""
    queue: int = 4
    """Model jobs (inspect, steer) running or waiting at once; more are answered 503."""
    max_prompt_chars: int = 2000
    """Longest text accepted by inspect and steer, in characters."""
    max_edits: int = 16
    """Most features steered at once."""
    max_multiplier: float = 100.0
    """Largest |multiplier| (× max activation) accepted by the steering playground."""
    max_new_tokens: int = 200
    """Most tokens generated per steering request."""
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    """uvicorn log level: critical, error, warning, info, debug."""

    def __post_init__(self) -> None:
        self.run = Path(self.run)
        if not 0 < self.port < 65536:
            raise UserError(f"port must be in 1..65535, got {self.port}")
        for name in ("queue", "max_prompt_chars", "max_edits", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.max_multiplier > 0:
            raise UserError(f"max_multiplier must be positive, got {self.max_multiplier}")


def serve(cfg: ServeConfig) -> None:
    """Run the browser until interrupted."""
    try:
        import uvicorn

        from monosemantic.web.app import create_app
    except ImportError as err:
        raise UserError(f"the browser needs the web extra ({err.name} is missing): "
                        "pip install 'monosemantic[web]'") from err
    app = create_app(cfg)
    cfg.run = app.state.data.run.path
    shown = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    say(f"monosemantic browser for {cfg.run} at http://{shown}:{cfg.port}/")
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level)
