"""SQLite storage: the Store (connections, migrations) and the repositories over it."""

from .db import Store, now

__all__ = ["Store", "now"]
