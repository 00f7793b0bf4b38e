"""Plain, frozen value types shared by the engine, the services and storage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

RELEVANCE_LABELS: tuple[str, str] = ("no", "yes")
"""Relevance discriminator output order (the paper's): index 0 = no, 1 = yes."""

NLI_LABELS: tuple[str, str, str] = ("contradicted", "neutral", "entailed")
"""NLI discriminator output order (the paper's): 0 contradicted, 1 neutral, 2 entailed."""

Language = str  # BCP-47-ish code: "en", "zh", ...
Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Statement:
    """One persona statement; names the character explicitly."""

    text: str
    id: int | None = None
    source_passage: str | None = None
    origin: str = "manual"  # manual | import | split | teacher
    enabled: bool = True


@dataclass(frozen=True)
class Character:
    name: str
    language: Language = "en"
    statements: tuple[Statement, ...] = ()
    source_text: str = ""
    id: int | None = None
    card: dict | None = None  # the original character card (unknown fields preserved)

    @property
    def enabled_statements(self) -> tuple[Statement, ...]:
        return tuple(s for s in self.statements if s.enabled)


@dataclass(frozen=True)
class Turn:
    """One chat message as sent to a model."""

    role: Role
    content: str


@dataclass(frozen=True)
class StatementScore:
    """The per-statement explanation of an APC score."""

    statement: str
    p_yes: float
    p_contradicted: float
    p_neutral: float
    p_entailed: float

    @property
    def p_no(self) -> float:
        return 1.0 - self.p_yes

    @property
    def active(self) -> float:
        """Active part: P(yes) * P(entailed)."""
        return self.p_yes * self.p_entailed

    @property
    def passive(self) -> float:
        """Passive part: P(no) * (1 - P(contradicted))."""
        return self.p_no * (1.0 - self.p_contradicted)

    @property
    def term(self) -> float:
        return self.active + self.passive

    @property
    def delta_term(self) -> float:
        """Active reward minus passive penalty: P(yes)P(ent) - P(no)P(con)."""
        return self.active - self.p_no * self.p_contradicted

    def to_dict(self) -> dict:
        """The probabilities and both terms: what output and storage (apc_terms rows) keep."""
        return {
            "statement": self.statement,
            "p_yes": self.p_yes,
            "p_entailed": self.p_entailed,
            "p_neutral": self.p_neutral,
            "p_contradicted": self.p_contradicted,
            "term": self.term,
            "delta_term": self.delta_term,
        }


@dataclass(frozen=True)
class ApcScore:
    """APC of one response to one query, with every per-statement term kept."""

    response: str
    terms: tuple[StatementScore, ...]
    profile: str = ""

    @property
    def n_statements(self) -> int:
        return len(self.terms)

    @property
    def apc(self) -> float:
        return sum(t.term for t in self.terms)

    @property
    def active(self) -> float:
        return sum(t.active for t in self.terms)

    @property
    def passive(self) -> float:
        return sum(t.passive for t in self.terms)

    @property
    def delta_apc(self) -> float:
        """APC minus the score of a response neutral to every statement (paper Eq. 6)."""
        return sum(t.delta_term for t in self.terms)

    def deciding_terms(self, n: int | None = None) -> list[StatementScore]:
        """Terms ordered by |Δterm|, largest first: the statements that decided the score."""
        ranked = sorted(self.terms, key=lambda t: abs(t.delta_term), reverse=True)
        return ranked if n is None else ranked[:n]

    def to_dict(self) -> dict:
        return {
            "response": self.response,
            "apc": self.apc,
            "delta_apc": self.delta_apc,
            "active": self.active,
            "passive": self.passive,
            "terms": [t.to_dict() for t in self.terms],
        }


def _generation_bounds() -> dict:
    from engine.checks import Bounds

    return {
        "temperature": Bounds(float, 0, 10, example="0.8 (0 = greedy)"),
        "top_p": Bounds(float, 0, 1, lo_open=True, example="0.95"),
        "max_new_tokens": Bounds(int, 1, 32768, example="160"),
        "seed": Bounds(int, 0, 2**32 - 1, none_ok=True, example="0"),
    }


GENERATION_BOUNDS = _generation_bounds()


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings; one help line per field (shown by the CLI and the TUI form)."""

    temperature: float = 0.8  # sampling temperature; 0 = greedy
    top_p: float = 0.95  # nucleus sampling mass
    max_new_tokens: int = 160  # upper bound on the reply length in tokens
    seed: int | None = None  # fixed seed for reproducible sampling

    def __post_init__(self) -> None:
        from engine.checks import number

        for name, bounds in GENERATION_BOUNDS.items():
            object.__setattr__(self, name, number(name.replace("_", "-"), getattr(self, name), bounds))

    def to_dict(self) -> dict:
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class Candidate:
    """A sampled reply with everything needed to reproduce it."""

    text: str
    model_spec: str
    method: str
    prompt: tuple[Turn, ...]
    params: GenerationParams = field(default_factory=GenerationParams)
    retrieved: tuple[str, ...] = ()  # statements put into the prompt (rag)
    score: ApcScore | None = None


@dataclass(frozen=True)
class PreferencePair:
    """A DPO training pair with its provenance."""

    prompt: tuple[Turn, ...]
    chosen: str
    rejected: str
    source: str  # "apc" | "human" | "edited"
    chosen_apc: float | None = None
    rejected_apc: float | None = None
    annotator: str | None = None
    model_spec: str = ""
    method: str = ""
    id: int | None = None
    weight: float = 1.0  # relevance weight for the paper's Eq. 9 variant
