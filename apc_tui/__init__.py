"""The APC Workbench application: CLI, TUI, services, storage and configuration."""

__version__ = "0.1.0"
