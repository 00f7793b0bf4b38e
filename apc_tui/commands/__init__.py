"""CLI command groups. Optional groups register themselves here: each module exposes `register(app)`."""

REGISTRY: list = []
