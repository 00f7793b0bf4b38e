"""Redaction of API keys: the one function every sink (stored teacher calls, job errors and log
lines, job log files, printed errors) passes text through before it is kept or shown.

A server that echoes the request back ("Incorrect API key provided: sk-abc...") must not get the
key into the database or the terminal. Redacted: `sk-...`-shaped tokens, `Bearer ...` values,
and the configured key itself (OPENAI_API_KEY, or one `register_secret` was told about, e.g.
read from APC_KEY_FILE).
"""

from __future__ import annotations

import os
import re

MASK = "[redacted]"
_PATTERNS = (
    re.compile(r"\bsk-[A-Za-z0-9_\-*.]{6,}"),  # OpenAI-style keys (sk-..., sk-proj-...), also masked echoes
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9_\-.=:+/]{8,}"),
    re.compile(r"(?i)(api[_-]?key[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9_\-.]{8,}"),
)
_known: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a configured key (read from a key file) so it is redacted wherever it shows up."""
    if value and len(value.strip()) >= 6:
        _known.add(value.strip())


def redact(text):
    """`text` with every key-shaped token and every configured key replaced by [redacted]."""
    if text is None:
        return None
    if not isinstance(text, str):
        text = str(text)
    for key in _configured():
        if key in text:
            text = text.replace(key, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + MASK, text)
    return text


def _configured() -> list[str]:
    keys = set(_known)
    env = os.environ.get("OPENAI_API_KEY", "").strip()
    if len(env) >= 6:
        keys.add(env)
    return sorted(keys, key=len, reverse=True)
