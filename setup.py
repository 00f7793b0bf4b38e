"""Package discovery only (metadata lives in pyproject.toml): data/ ships as the `apc_data` package."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["apc_tui", "apc_tui.*", "engine", "engine.*"]), "apc_data"],
    package_dir={"apc_data": "data"},
)
