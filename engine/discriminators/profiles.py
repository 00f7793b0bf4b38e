"""Discriminator profiles: one string picks the relevance + NLI pair the scorer uses."""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.errors import ConfigError
from engine.resources import data_path

from .base import Discriminator
from .meta import META_FILE

PAPER = ("KomeijiForce/deberta-v3-large-relevance-12character", "KomeijiForce/deberta-v3-large-nli-12character")
MULTILINGUAL = (
    "KomeijiForce/xlm-roberta-large-relevance-multilingual-12character",
    "KomeijiForce/xlm-roberta-large-nli-multilingual-12character",
)
PROFILE_HELP = "embedded | paper | multilingual | judge:MODEL_SPEC | rel=PATH,nli=PATH[,format=compact|paper]"


@dataclass(frozen=True)
class DiscriminatorPair:
    relevance: Discriminator
    nli: Discriminator
    profile: str

    def describe(self) -> dict:
        return {"profile": self.profile, "relevance": _describe(self.relevance), "nli": _describe(self.nli)}


def _describe(d) -> dict:
    fn = getattr(d, "describe", None)
    return fn() if fn else {"task": d.task, "source": d.identity, "format": d.format}


DEFAULT_VERSION = "default"  # a profile's own discriminators, before any per-character teaching
_VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


def versioned_profile(profile: str, version: str) -> str:
    """The label a scorer, and every score it makes, carries: `embedded` or `embedded@koishi-v1`."""
    return profile if version == DEFAULT_VERSION else f"{profile}@{version}"


def profile_version(label: str) -> str:
    """The discriminator version named by a score's profile label ('default' for a plain profile)."""
    _, sep, version = label.rpartition("@")
    return version if sep and _VERSION_NAME.match(version) else DEFAULT_VERSION


def valid_version_name(name: str) -> bool:
    return bool(_VERSION_NAME.match(name or "")) and name != DEFAULT_VERSION


def cross_sources(profile: str) -> tuple[str, str, str | None]:
    """(relevance source, NLI source, input format or None = the meta's) of a cross-encoder profile;
    ConfigError for a judge profile (it has no weights to fine-tune)."""
    profile = (profile or "embedded").strip()
    if profile in ("paper", "multilingual"):
        rel, nli = PAPER if profile == "paper" else MULTILINGUAL
        return rel, nli, "paper"
    if profile == "embedded":
        rel_dir, nli_dir = embedded_dirs()
        return str(rel_dir), str(nli_dir), None
    if "=" in profile and not profile.startswith("judge:"):
        parts = parse_paths_profile(profile)
        return parts["rel"], parts["nli"], parts.get("format")
    raise ConfigError(f"profile {profile!r} has no cross-encoder weights to fine-tune; use embedded | paper | multilingual | rel=PATH,nli=PATH")


def embedded_dirs():
    return data_path("discriminators", "relevance"), data_path("discriminators", "nli")


def load_profile(
    profile: str = "embedded", device: str = "auto", *, quantize: str | None = None, trust_remote_code: bool = False,
    model_opts: dict | None = None,
) -> DiscriminatorPair:
    """Build the pair named by `profile` (see PROFILE_HELP); raises ConfigError/ModelError with the fix."""
    from .cross_encoder import CrossEncoderDiscriminator

    profile = (profile or "embedded").strip()

    def cross(source: str, task: str, fmt: str | None = None):
        return CrossEncoderDiscriminator.load(
            source, task, format=fmt, device=device, quantize=quantize, trust_remote_code=trust_remote_code
        )

    if profile in ("paper", "multilingual"):
        rel, nli = PAPER if profile == "paper" else MULTILINGUAL
        return DiscriminatorPair(cross(rel, "relevance", "paper"), cross(nli, "nli", "paper"), profile)
    if profile == "embedded":
        rel_dir, nli_dir = embedded_dirs()
        if not (rel_dir / META_FILE).is_file() or not (nli_dir / META_FILE).is_file():
            raise ConfigError(
                "embedded discriminators are not built yet; run `make discriminators` "
                "(or use --profile paper | rel=PATH,nli=PATH)"
            )
        return DiscriminatorPair(cross(str(rel_dir), "relevance"), cross(str(nli_dir), "nli"), profile)
    if profile.startswith("judge:"):
        from engine.backends import load_model

        from .judge import JudgeDiscriminator

        spec = profile.removeprefix("judge:").strip()
        if not spec:
            raise ConfigError(f"profile {profile!r}: give a model spec after judge:, e.g. judge:openai:gpt-4o")
        model = load_model(spec, device=device, **(model_opts or {}))  # the judge's backend options (timeout, key)
        return DiscriminatorPair(JudgeDiscriminator(model, "relevance"), JudgeDiscriminator(model, "nli"), profile)
    if "=" in profile:
        parts = parse_paths_profile(profile)
        fmt = parts.get("format")
        return DiscriminatorPair(cross(parts["rel"], "relevance", fmt), cross(parts["nli"], "nli", fmt), profile)
    raise ConfigError(f"discriminator profile {profile!r} is not known; use {PROFILE_HELP}")


def parse_paths_profile(profile: str) -> dict[str, str]:
    """'rel=PATH,nli=PATH[,format=F]' -> {'rel': PATH, 'nli': PATH, 'format': F}."""
    aliases = {"rel": "rel", "relevance": "rel", "nli": "nli", "format": "format"}
    parts: dict[str, str] = {}
    for chunk in profile.split(","):
        key, sep, value = chunk.partition("=")
        key = aliases.get(key.strip().lower(), "")
        if not sep or not key or not value.strip():
            raise ConfigError(f"discriminator profile {profile!r}: cannot read {chunk!r}; use rel=PATH,nli=PATH")
        parts[key] = value.strip()
    if "rel" not in parts or "nli" not in parts:
        raise ConfigError(f"discriminator profile {profile!r}: needs both rel=PATH and nli=PATH")
    return parts


def with_judge_examples(pair: DiscriminatorPair, examples: dict, profile: str) -> DiscriminatorPair:
    """The judge pair asking the same model, with few-shot `examples` {task: [(item, label index)]}
    in every prompt, under the label `profile`."""
    from .judge import JudgeDiscriminator

    def judge(d):
        if not isinstance(d, JudgeDiscriminator):
            raise ConfigError(f"profile {pair.profile!r} is not a judge: few-shot examples apply to judge: profiles only")
        return JudgeDiscriminator(d.model, d.task, concurrency=d.concurrency, examples=examples.get(d.task, ()))

    return DiscriminatorPair(judge(pair.relevance), judge(pair.nli), profile)


def with_judge_model(model, profile: str = "judge") -> DiscriminatorPair:
    """A judge pair over an already-built ChatModel (shared with generation, or a test double)."""
    from .judge import JudgeDiscriminator

    return DiscriminatorPair(JudgeDiscriminator(model, "relevance"), JudgeDiscriminator(model, "nli"), profile)
