"""The workbench screens, one per mode (F2..F6), plus modal dialogs.

Screen modules are imported when their mode is first opened: the first frame pays only for the
Characters screen (plot and training widgets load with their screens).
"""

from __future__ import annotations

from importlib import import_module

SCREENS_BY_MODE = {
    "characters": "characters:CharactersScreen",
    "chat": "chat:ChatScreen",
    "annotate": "annotate:AnnotateScreen",
    "train": "train:TrainScreen",
    "evaluate": "evaluate:EvaluateScreen",
}


def screen_class(mode: str):
    module, _, name = SCREENS_BY_MODE[mode].partition(":")
    return getattr(import_module(f"{__name__}.{module}"), name)
