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


def build_services(settings: Settings) -> Services:
    return Services(settings)
