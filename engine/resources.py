"""The one way to reach the files that ship with the product (data/ in a checkout, apc_data in a wheel)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path


@cache
def data_dir() -> Path:
    """Directory holding demo characters, teacher data and the embedded discriminators."""
    try:
        root = Path(str(resources.files("apc_data")))
    except ModuleNotFoundError:
        root = Path(__file__).resolve().parent.parent / "data"
    if not root.is_dir():  # an editable install maps apc_data onto the checkout's data/
        root = Path(__file__).resolve().parent.parent / "data"
    return root


def data_path(*parts: str) -> Path:
    return data_dir().joinpath(*parts)
