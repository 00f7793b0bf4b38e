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
from engine.secrets import register_secret

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
    adapters_dir: Path | None = None  # trained adapters; default: <db stem>.adapters/ next to the database
    trust_remote_code: bool = False  # let HF models run their own code (opt-in)
    timeout: float = 120.0  # seconds an OpenAI-compatible server may take to answer one request (APC_TIMEOUT, --timeout)
    config_file: Path | None = None  # the config file these settings were read from (not a setting)

    def with_overrides(self, **changes) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def config_path() -> Path:
    return Path(os.environ.get("APC_CONFIG") or _default_config()).expanduser()


_ENV = {
    "APC_DB": "db_path",
    "APC_PROFILE": "profile",
    "APC_MODEL": "model",
    "APC_TEACHER": "teacher",
    "APC_DEVICE": "device",
    "APC_METHOD": "method",
    "APC_K": "k",
    "APC_ANNOTATOR": "annotator",
    "OPENAI_BASE_URL": "openai_base_url",
    "APC_ADAPTERS_DIR": "adapters_dir",
    "APC_TIMEOUT": "timeout",
    "APC_TRUST_REMOTE_CODE": "trust_remote_code",
}
_NOT_SETTINGS = {"config_file"}
_SECRET_KEYS = {"api_key", "openai_api_key", "key", "token", "hf_token"}


def load_settings(path: Path | None = None, environ: dict | None = None) -> Settings:
    """Defaults < config file < environment; every value checked (see validation.check_setting).

    An explicit file (--config or APC_CONFIG) must exist; the default one may be absent."""
    from .validation import check_setting

    environ = os.environ if environ is None else environ
    source = "--config" if path is not None else "APC_CONFIG" if environ.get("APC_CONFIG") else ""
    path = Path(path or environ.get("APC_CONFIG") or _default_config()).expanduser()
    values: dict = {}
    if source and not path.is_file():
        raise ConfigError(f"{source} {path}: no such file; create it, fix the path, or unset {source}")
    if path.is_file():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
            raise ConfigError(f"config file {path}: not valid TOML ({' '.join(str(exc).split())}); fix it or delete it") from exc
        leaked = _SECRET_KEYS & set(raw)
        if leaked:
            raise ConfigError(
                f"config file {path} holds a secret ({sorted(leaked)[0]}); remove it and use OPENAI_API_KEY or APC_KEY_FILE"
            )
        known = {f.name for f in fields(Settings)} - _NOT_SETTINGS
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"config file {path}: unknown setting {sorted(unknown)[0]!r}; known: {', '.join(sorted(known))}")
        values.update({k: check_setting(k, v, f"config file {path}") for k, v in raw.items()})
        values["config_file"] = path
    for env, name in _ENV.items():
        if environ.get(env):
            values[name] = check_setting(name, environ[env], env)
    return Settings(**values)


def _default_config() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a worker process load exactly `settings` (detached jobs)."""
    env = {}
    for var, name in _ENV.items():
        value = getattr(settings, name)
        if value is None or value == "":
            continue
        env[var] = ("1" if value else "0") if isinstance(value, bool) else str(value)
    if settings.config_file is not None:
        env["APC_CONFIG"] = str(settings.config_file)
    return env


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
    key = p.read_text(encoding="utf-8").strip() or None
    register_secret(key)
    return key
