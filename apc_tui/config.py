"""Settings: frozen dataclasses loaded once from TOML, then environment overrides.

Order: defaults < config file (APC_CONFIG or <config dir>/config.toml) < environment < CLI flags.
API keys are never read from or written to the config file: they come from OPENAI_API_KEY or
a key file with owner-only permissions (see `api_key`).
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import platformdirs

from engine.errors import ConfigError

APP_NAME = "apc-workbench"


@dataclass(frozen=True)
class Settings:
    db_path: Path = field(default_factory=lambda: Path(platformdirs.user_data_dir(APP_NAME)) / "apc.db")
    profile: str = "embedded"  # discriminator profile: embedded | paper | multilingual | judge:SPEC | rel=PATH,nli=PATH
    model: str = "tiny"  # chat model spec: tiny | hf:ID_OR_PATH[+lora:PATH] | openai:MODEL
    teacher: str = ""  # teacher model spec for synthesis, e.g. openai:gpt-4o
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    method: str = "rag"  # none | lcm | rag | eu
    k: int = 5  # statements retrieved for rag
    annotator: str = field(default_factory=lambda: os.environ.get("USER", "") or "annotator")
    openai_base_url: str | None = None  # or OPENAI_BASE_URL
    adapters_dir: Path = field(default_factory=lambda: Path(platformdirs.user_data_dir(APP_NAME)) / "adapters")
    trust_remote_code: bool = False  # let HF models run their own code (opt-in)
    timeout: float = 120.0  # seconds an OpenAI-compatible server may take to answer one request (APC_TIMEOUT, --timeout)

    def with_overrides(self, **changes) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def config_path() -> Path:
    return Path(os.environ.get("APC_CONFIG") or Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml")


_ENV = {
    "APC_DB": "db_path",
    "APC_PROFILE": "profile",
    "APC_MODEL": "model",
    "APC_TEACHER": "teacher",
    "APC_DEVICE": "device",
    "APC_ANNOTATOR": "annotator",
    "OPENAI_BASE_URL": "openai_base_url",
    "APC_ADAPTERS_DIR": "adapters_dir",
    "APC_TIMEOUT": "timeout",
}
_SECRET_KEYS = {"api_key", "openai_api_key", "key", "token", "hf_token"}


def _coerce(name: str, value):
    kind = {f.name: f.type for f in fields(Settings)}[name]
    if "Path" in str(kind):
        return Path(str(value)).expanduser()
    if kind == "int" or kind is int:
        return int(value)
    if kind == "float" or kind is float:
        return check_timeout(value, f"setting {name!r} (APC_TIMEOUT or the config file)")
    if kind == "bool" or kind is bool:
        return value if isinstance(value, bool) else str(value).lower() in {"1", "true", "yes"}
    return value


def load_settings(path: Path | None = None, environ: dict | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    path = path or config_path()
    values: dict = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML ({exc}); fix it or delete it") from exc
        leaked = _SECRET_KEYS & set(raw)
        if leaked:
            raise ConfigError(
                f"config file {path} holds a secret ({sorted(leaked)[0]}); remove it and use OPENAI_API_KEY or APC_KEY_FILE"
            )
        known = {f.name for f in fields(Settings)}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"config file {path}: unknown setting {sorted(unknown)[0]!r}; known: {', '.join(sorted(known))}")
        values.update({k: _coerce(k, v) for k, v in raw.items()})
    for env, name in _ENV.items():
        if environ.get(env):
            values[name] = _coerce(name, environ[env])
    return Settings(**values)


def check_timeout(value, source: str = "--timeout") -> float:
    """A positive, finite number of seconds; refused with the input named otherwise."""
    import math

    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{source}: {value!r} is not a positive number of seconds; give e.g. 120")
    return seconds


def api_key(environ: dict | None = None) -> str | None:
    """The OpenAI-compatible API key: OPENAI_API_KEY, else APC_KEY_FILE (must be owner-only)."""
    environ = os.environ if environ is None else environ
    if environ.get("OPENAI_API_KEY"):
        return environ["OPENAI_API_KEY"]
    key_file = environ.get("APC_KEY_FILE")
    if not key_file:
        return None
    p = Path(key_file).expanduser()
    try:
        mode = p.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"key file {p} cannot be read ({exc.strerror}); fix APC_KEY_FILE") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"key file {p} is readable by others; run: chmod 600 {p}")
    return p.read_text(encoding="utf-8").strip() or None
