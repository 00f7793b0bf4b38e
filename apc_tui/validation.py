"""Validation at the boundary: raw CLI options, config values and file contents become checked
values here, before anything is written or any model is loaded.

- CLI options: `OPTION_CHECKS` maps every option name to its check; `install(command)` attaches
  them to the Click tree as parse-time callbacks, so `apc chat --n 0` is refused before the
  command body runs (no conversation, no job row, no model load). A test walks the tree and
  fails when a numeric option has no entry here.
- Engine settings dataclasses (LoraSettings/DpoSettings/EuSettings, GenerationParams) check
  their own fields on construction (`engine/checks.py`); the TUI's Train form and the CLI both
  build them through `FinetuneService.train_config`, so both are refused the same way.
- Config values: `check_setting(name, value, source)` (used by `config.load_settings`).
- Character files: `text_field`, `statement_list`, `check_character` (used by `importers`).

Every refusal is an InputError "<input>: <problem>; <fix>" (one line).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from engine.checks import Bounds, number
from engine.errors import ApcError, InputError

# -- numbers -----------------------------------------------------------------------------------
POSITIVE = Bounds(int, 1, 10_000_000, example="10")
ID = Bounds(int, 1, 2**63 - 1, example="1 (see the list command)")
SEED = Bounds(int, 0, 2**32 - 1, example="0")

NUMBER_BOUNDS: dict[str, Bounds] = {
    "--n": Bounds(int, 1, 16, example="2"),
    "--k": Bounds(int, 1, 100, example="5 (the paper uses 4..6)"),
    "--max": Bounds(int, 1, 100_000, example="100 (the paper's max_dpo_data)"),
    "--margin": Bounds(float, 0, 1000, example="0.2 (the paper)"),
    "--max-new-tokens": Bounds(int, 1, 32768, example="160"),
    "--temperature": Bounds(float, 0, 10, example="0.8 (0 = greedy)"),
    "--top-p": Bounds(float, 0, 1, lo_open=True, example="0.95"),
    "--seed": SEED,
    "--epochs": Bounds(float, 0, 1000, lo_open=True, example="3"),
    "--lora-r": Bounds(int, 1, 4096, example="16 (CPU) or 128 (GPU)"),
    "--beta": Bounds(float, 0, 100, lo_open=True, example="0.1 (paper)"),
    "--lr": Bounds(float, 0, 1, lo_open=True, example="2e-4"),
    "--max-steps": Bounds(int, 1, 10_000_000, special=(-1,), example="100"),
    "--max-length": Bounds(int, 8, 1_000_000, example="1024"),
    "--save-steps": Bounds(int, 1, 10_000_000, example="50"),
    "--grad-accum": Bounds(int, 1, 4096, example="8"),
    "--batch-size": Bounds(int, 1, 4096, example="32"),
    "--queries": Bounds(int, 1, 100_000, example="50"),
    "--limit": Bounds(int, 1, 1_000_000, example="50"),
    "--concurrency": Bounds(int, 1, 256, example="8"),
    "--processes": Bounds(int, 1, 1024, example="2 (one per GPU)"),
    "--scoring-workers": Bounds(int, 1, 1024, example="2 (one per GPU)"),
    "--conversation": ID,
    "--parent": ID,
    "--split-seed": SEED,
    "--test-size": Bounds(float, 0, 1, lo_open=True, example="0.2"),
    "--per-statement": Bounds(int, 1, 1000, example="3"),
    "--negatives": Bounds(int, 0, 1000, example="5"),
    "--max-rows": Bounds(int, 1, 100_000_000, example="10000"),
    "--temperature-grid": Bounds(float, 0, 100, lo_open=True, example="1.0"),
    "--timeout": Bounds(float, 0, 86_400, lo_open=True, example="60"),
    # arguments (ids)
    "job_id": ID,
    "conversation_id": ID,
    "statement_id": ID,
    "message_id": ID,
    "preference_id": ID,
}

# -- names -------------------------------------------------------------------------------------
DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d{1,3})?)$")
LANGUAGE = re.compile(r"^[a-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
MAX_NAME = 200
MAX_STATEMENT = 2000
MAX_STATEMENTS = 10_000


def _methods():
    return ("none", "lcm", "rag", "eu")


def check_device(value: str, name: str = "--device") -> str:
    text = str(value).strip().lower()
    if not DEVICE.match(text):
        raise InputError(f"{name} {value!r}: not a device; use auto, cpu, cuda, cuda:N or mps")
    return text


def check_method(value: str, name: str = "--method", allowed: tuple[str, ...] | None = None) -> str:
    allowed = allowed or _methods()
    text = str(value).strip().lower()
    if text not in allowed:
        raise InputError(f"{name} {value!r}: unknown method; use one of {', '.join(allowed)}")
    return text


def check_methods(value: str, name: str = "--methods") -> str:
    items = [m.strip() for m in str(value).split(",") if m.strip()]
    if not items:
        raise InputError(f"{name} is empty; give a comma list, e.g. none,lcm,rag")
    for m in items:
        check_method(m, name)
    return ",".join(m.lower() for m in items)


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", ".\\")) or not _HUB_ID.match(name) or Path(name).expanduser().exists()


def check_model_spec(value: str, name: str = "--model", *, trainable: bool = False) -> str:
    """A model spec whose local parts exist: refused here, not after a model has loaded."""
    from engine.backends import parse_spec

    try:
        spec = parse_spec(str(value))
    except ApcError as exc:
        raise InputError(f"{name} {value!r}: {_strip_fix(str(exc))}; use tiny, hf:ID_OR_PATH[+lora:ADAPTER] or openai:MODEL") from None
    if spec.scheme == "hf" and _looks_like_path(spec.name):
        path = Path(spec.name).expanduser()
        if not path.is_dir():
            raise InputError(f"{name} {value!r}: no model directory at {path}; give an existing directory or a hub id (org/name)")
    if spec.adapter is not None:
        adapter = Path(spec.adapter).expanduser()
        if not (adapter / "adapter_config.json").is_file():
            what = "no such directory" if not adapter.is_dir() else "no adapter_config.json in it"
            raise InputError(f"{name} {value!r}: LoRA adapter {adapter}: {what}; see `apc adapters list` for trained adapters")
    if trainable and spec.scheme not in ("tiny", "hf"):
        raise InputError(f"{name} {value!r}: an API model cannot be fine-tuned here; use tiny or hf:ID_OR_PATH")
    if trainable and spec.adapter is not None:
        raise InputError(f"{name} {value!r}: train on the plain base (hf:{spec.name}), not on an adapter; drop +lora:...")
    return spec.raw


def _strip_fix(message: str) -> str:
    """An engine message without its own '; fix' part (the caller adds one)."""
    return message.split(";")[0].strip()


def check_profile(value: str, name: str = "--profile") -> str:
    from engine.discriminators.profiles import PROFILE_HELP, parse_paths_profile

    text = str(value).strip()
    if text in ("embedded", "paper", "multilingual"):
        return text
    if text.startswith("judge:"):
        check_model_spec(text.removeprefix("judge:").strip(), f"{name} {text!r}: judge model")
        return text
    if "=" in text:
        try:
            parts = parse_paths_profile(text)
        except ApcError as exc:
            raise InputError(f"{name} {text!r}: {_strip_fix(str(exc))}; use rel=PATH,nli=PATH") from None
        for key in ("rel", "nli"):
            p = Path(parts[key]).expanduser()
            if _looks_like_path(parts[key]) and not p.is_dir():
                raise InputError(f"{name} {text!r}: {key}={parts[key]}: no such directory; give a trained discriminator directory")
        return text
    raise InputError(f"{name} {value!r}: unknown discriminator profile; use {PROFILE_HELP}")


def check_teacher(value: str, name: str = "--teacher") -> str:
    return check_model_spec(value, name)


def check_annotator(value: str, name: str = "annotator") -> str:
    return text_field(name, value, max_len=80)


# -- CLI options --------------------------------------------------------------------------------
def _number_check(option: str, bounds: Bounds) -> Callable:
    return lambda value: number(option, value, bounds)


OPTION_CHECKS: dict[str, Callable] = {
    **{opt: _number_check(opt, b) for opt, b in NUMBER_BOUNDS.items()},
    "--device": check_device,
    "--method": check_method,
    "--methods": check_methods,
    "--model": check_model_spec,
    "--teacher": check_teacher,
    "--profile": check_profile,
}


def _key(param) -> str:
    """The name a parameter is checked under: its long flag (--max-new-tokens) or, for an argument, its name."""
    longs = [o for o in getattr(param, "opts", []) if o.startswith("--")]
    return longs[0] if longs and param.param_type_name == "option" else param.name


def _numeric(param) -> bool:
    import typing

    desc = getattr(param, "type_descriptor", None)
    annotation = getattr(desc, "annotation", None)
    kinds = set(typing.get_args(annotation)) or {annotation}
    return bool(kinds & {int, float}) and bool not in kinds


def walk(command, path: tuple[str, ...] = ()):
    """(path, param) for every parameter of every command in a Click tree."""
    for param in command.params:
        yield path, param
    for name, sub in (getattr(command, "commands", None) or {}).items():
        yield from walk(sub, (*path, name))


def unchecked_numeric(command) -> list[str]:
    """Numeric options with no range here: a new flag must say what it accepts."""
    return [f"apc {' '.join(path)} {_key(p)}" for path, p in walk(command) if _numeric(p) and _key(p) not in OPTION_CHECKS]


def install(command) -> None:
    """Attach the checks in OPTION_CHECKS to every matching parameter of the Click tree."""
    for _, param in walk(command):
        check = OPTION_CHECKS.get(_key(param))
        if check is None and _numeric(param):
            check = _finite_only(_key(param))
        if check is None:
            continue
        param.callback = _callback(check, param.callback)


def _finite_only(option: str) -> Callable:
    return lambda value: number(option, value, Bounds(float, none_ok=True)) if isinstance(value, float) else value


def _callback(check: Callable, previous):
    def run(ctx, param, value):
        if previous is not None:
            value = previous(ctx, param, value)
        if value is None or (isinstance(value, (list, tuple)) and not value):
            return value
        if isinstance(value, (list, tuple)):
            return type(value)(check(v) for v in value)
        return check(value)

    return run


# -- config values ------------------------------------------------------------------------------
def check_setting(name: str, value, source: str):
    """A config/env value for Settings.<name>, typed and checked; `source` names where it came from."""
    where = f"{source}: {name} = {value!r}"
    string = {"profile", "model", "teacher", "device", "method", "annotator", "openai_base_url"}
    if name in string and not isinstance(value, str):
        raise InputError(f"{where}: must be a string; quote it, e.g. {name} = \"...\"")
    try:
        if name == "profile":
            return check_profile(value, "profile")
        if name == "model":
            return check_model_spec(value, "model")
        if name == "teacher":
            return check_model_spec(value, "teacher") if value.strip() else ""
        if name == "device":
            return check_device(value, "device")
        if name == "method":
            return check_method(value, "method")
        if name == "annotator":
            return check_annotator(value)
        if name == "k":
            if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
                value = int(value)
            return number("k", value, NUMBER_BOUNDS["--k"])
        if name == "timeout":
            return check_timeout(value, f"setting 'timeout' ({source})")
        if name == "trust_remote_code":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "0", "false", "no"}:
                return value.strip().lower() in {"1", "true", "yes"}
            raise InputError("must be true or false")
        if name in ("db_path", "adapters_dir"):
            if not isinstance(value, str) or not value.strip() or "\x00" in value:
                raise InputError("must be a non-empty path string")
            return Path(value).expanduser()
        if name == "openai_base_url":
            if not re.match(r"^https?://\S+$", value.strip()):
                raise InputError("not an http(s) URL")
            return value.strip()
    except InputError as exc:
        raise InputError(f"{where}: {_problem(str(exc))}; {_fix(str(exc), name)}") from None
    return value


def _problem(message: str) -> str:
    head = message.split(";")[0]
    return head.split(": ", 1)[-1] if ": " in head else head


def _fix(message: str, name: str) -> str:
    return message.split(";", 1)[1].strip() if ";" in message else f"fix {name} in the config file or the environment"


def check_timeout(value, source: str = "--timeout") -> float:
    """A positive, finite number of seconds; refused with the input named otherwise."""
    import math

    from engine.errors import ConfigError

    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{source}: {value!r} is not a positive number of seconds; give e.g. 120")
    return seconds


# -- character files ----------------------------------------------------------------------------
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _plain_text(where: str, value: str) -> str:
    """White space folded; control characters (a NUL...) refused."""
    if _CONTROL.search(value):
        raise InputError(f"{where}: holds a control character (e.g. NUL); remove it")
    return " ".join(value.split())


def text_field(where: str, value, *, max_len: int = MAX_NAME, required: bool = True) -> str:
    """A short single-value text (a name, a language code): a string, no control characters."""
    if value is None or value == "":
        if required:
            raise InputError(f"{where}: missing; give a value")
        return ""
    if not isinstance(value, str):
        raise InputError(f"{where}: is a {_json_type(value)}, not a string; give plain text")
    text = _plain_text(where, value)
    if len(text) > max_len:
        raise InputError(f"{where}: is {len(text)} characters long; keep it under {max_len}")
    return text


def language_field(where: str, value) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not LANGUAGE.match(value.strip()):
        raise InputError(f"{where}: {value!r} is not a language code; use e.g. en, zh, fr or pt-BR")
    return value.strip()


def statement_list(where: str, value) -> list[str]:
    """A list of statement strings (cleaned); a string or a list with non-strings is refused."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InputError(f"{where}: is a {_json_type(value)}; give a list of strings, e.g. [\"Alice lives in Paris.\"]")
    if len(value) > MAX_STATEMENTS:
        raise InputError(f"{where}: {len(value)} statements; keep a character under {MAX_STATEMENTS}")
    out = []
    for i, s in enumerate(value):
        if not isinstance(s, str):
            raise InputError(f"{where}[{i}]: is a {_json_type(s)}, not a string; give each statement as text")
        text = _plain_text(f"{where}[{i}]", s)
        if len(text) > MAX_STATEMENT:
            raise InputError(f"{where}[{i}]: is {len(text)} characters; keep a statement to one short fact (< {MAX_STATEMENT} characters)")
        if text:
            out.append(text)
    return out


def check_character(where: str, name, language) -> tuple[str, str]:
    return text_field(f"{where}: name", name), language_field(f"{where}: language", language)


def _json_type(value) -> str:
    return {dict: "object", list: "list", int: "number", float: "number", bool: "boolean"}.get(type(value), type(value).__name__)
