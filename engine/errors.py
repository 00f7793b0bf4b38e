"""Errors the engine raises for bad input or unusable settings.

Each message is one line that names the input and says what to do; the CLI and TUI show it
as is, without a traceback.
"""


class ApcError(Exception):
    """Base class: a problem the user can fix (bad input, missing model, wrong device)."""


class ConfigError(ApcError):
    """A setting, model spec or profile that cannot be used on this machine."""


class InputError(ApcError):
    """A file or value the user gave that cannot be read."""


class ModelError(ApcError):
    """A model that cannot be loaded or that answered with an error."""


class Cancelled(ApcError):
    """Work stopped because the caller set its stop event."""
