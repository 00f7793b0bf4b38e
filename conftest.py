"""Root conftest: registers the fixture modules under tests/ (one per area)."""

pytest_plugins = [
    "tests.fixtures_core",
    "tests.fixtures_models",
]
