"""Chat models by spec, loaded once per (spec, device) and shared by chat, synthesis and jobs.

The only place the app turns settings (base URL, API key, remote code) into backend options.
"""

from __future__ import annotations

import threading

from ..config import Settings, api_key


TIMEOUT_HINT = "--timeout SECONDS, APC_TIMEOUT or `timeout` in the config file"


def backend_options(settings: Settings, spec: str) -> dict:
    """What a backend needs from the settings: base URL, key and HTTP timeout, or remote-code consent."""
    from engine.backends import parse_spec

    if parse_spec(spec).scheme == "openai":
        return {"base_url": settings.openai_base_url, "api_key": api_key(), "timeout": settings.timeout, "timeout_hint": TIMEOUT_HINT}
    return {"trust_remote_code": settings.trust_remote_code}


class ModelPool:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._models: dict[tuple, object] = {}
        self._lock = threading.Lock()

    def options(self, spec: str) -> dict:
        return backend_options(self.settings, spec)

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
