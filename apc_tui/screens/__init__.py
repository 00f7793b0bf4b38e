"""The workbench screens, one per mode (F2..F6), plus modal dialogs."""

from __future__ import annotations

from .annotate import AnnotateScreen
from .characters import CharactersScreen
from .chat import ChatScreen
from .evaluate import EvaluateScreen
from .train import TrainScreen

SCREENS_BY_MODE = {
    "characters": CharactersScreen,
    "chat": ChatScreen,
    "annotate": AnnotateScreen,
    "train": TrainScreen,
    "evaluate": EvaluateScreen,
}

__all__ = ["SCREENS_BY_MODE", "AnnotateScreen", "CharactersScreen", "ChatScreen", "EvaluateScreen", "TrainScreen"]
