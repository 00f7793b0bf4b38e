"""The one place that wires settings -> storage -> engine backends -> services -> app.

Services are built lazily: `apc characters list` must not load a discriminator, and the TUI's
first frame must not import torch.
"""

from __future__ import annotations

from functools import cached_property

from .config import Settings
from .storage import Store


class Services:
    """Every use case the CLI and the TUI call. Screens receive this; they never build services."""

    def __init__(self, settings: Settings, store: Store | None = None):
        self.settings = settings
        self.store = store or Store(settings.db_path)

    @cached_property
    def characters(self):
        from .services.characters import CharacterService

        return CharacterService(self.store)

    @cached_property
    def scoring(self):
        from .services.scoring import ScoringService

        return ScoringService(self.settings, self.store)

    @cached_property
    def models(self):
        from .services.models import ModelPool

        return ModelPool(self.settings)

    @cached_property
    def chat(self):
        from .services.chat import ChatService

        return ChatService(self.settings, self.store, self.models, self.scoring)

    @cached_property
    def synthesis(self):
        from .services.synthesis import SynthesisService

        return SynthesisService(self.settings, self.store, self.models)

    @cached_property
    def jobs(self):
        from .services.jobs import JobService

        return JobService(self)

    @cached_property
    def training(self):
        from .services.training import TrainingService

        return TrainingService(self)

    @cached_property
    def finetune(self):
        from .services.finetune import FinetuneService

        return FinetuneService(self)

    @cached_property
    def evaluation(self):
        from .services.evaluation import EvaluationService

        return EvaluationService(self)

    @cached_property
    def annotation(self):
        from .services.annotation import AnnotationService

        return AnnotationService(self)

    @cached_property
    def teach(self):
        from .services.teach import TeachService

        return TeachService(self)

    @cached_property
    def teach_train(self):
        from .services.teach_train import TeachTrainService

        return TeachTrainService(self)


def build_services(settings: Settings) -> Services:
    return Services(settings)
