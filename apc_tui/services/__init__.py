"""Use cases joining the engine and storage; the CLI and the TUI call only these."""
