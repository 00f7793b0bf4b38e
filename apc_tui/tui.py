"""Entry point of the Textual workbench (kept tiny: the app module is imported only here)."""

from __future__ import annotations


def run_tui(services) -> None:
    from .app import make_app

    services.characters.seed_demo()
    make_app(services).run()
