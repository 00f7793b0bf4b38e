"""Chat models by spec, loaded once per (spec, device) and shared by chat, synthesis and jobs.

The only place the app turns settings (base URL, API key, remote code) into backend options.
"""

from __future__ import annotations

import threading

from ..config import Settings, api_key


class ModelPool:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._models: dict[tuple, object] = {}
        self._lock = threading.Lock()

    def options(self, spec: str) -> dict:
        from engine.backends import parse_spec

        scheme = parse_spec(spec).scheme
        if scheme == "openai":
            return {"base_url": self.settings.openai_base_url, "api_key": api_key()}
        return {"trust_remote_code": self.settings.trust_remote_code}

    def get(self, spec: str | None = None, device: str | None = None, **opts):
        """The ChatModel for `spec` (default: settings.model); extra opts make a separate instance."""
        from engine.backends import load_model

        spec = spec or self.settings.model
        device = device or self.settings.device
        key = (spec, device, tuple(sorted(opts.items())))
        with self._lock:  # loading twice in parallel would double GPU memory
            if key not in self._models:
                self._models[key] = load_model(spec, device=device, **{**self.options(spec), **opts})
            return self._models[key]

    def close(self) -> None:
        with self._lock:
            for model in self._models.values():
                close = getattr(model, "close", None)
                if close:
                    close()
            self._models.clear()
