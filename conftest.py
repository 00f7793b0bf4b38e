"""Root conftest: registers the fixture modules under tests/ (one per area)."""

pytest_plugins = [
    "tests.fixtures_core",
    "tests.fixtures_engine",
    "tests.fixtures_models",
    "tests.fixtures_tui",
    "tests.fixtures_dpo",
    "tests.fixtures_boundaries",
]
