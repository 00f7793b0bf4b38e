"""Where a database's files live. Job logs, job work folders and trained adapters belong to the
database that made them: `<db dir>/<db stem>.jobs/` and `<db dir>/<db stem>.adapters/`, so two
databases in one folder never share `jobs/1.log` or an adapter folder. An adapters folder set
explicitly (config `adapters_dir`, APC_ADAPTERS_DIR) is used as given; a name already on disk
there is refused before training (see FinetuneService.train_config).

Everything is created owner-only: folders 0700, files (the DB, job logs) 0600.
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def db_path(settings) -> Path:
    return Path(settings.db_path).expanduser()


def jobs_dir(settings) -> Path:
    db = db_path(settings)
    return db.parent / f"{db.stem}.jobs"


def adapters_dir(settings) -> Path:
    if settings.adapters_dir is not None:
        return Path(settings.adapters_dir).expanduser()
    db = db_path(settings)
    return db.parent / f"{db.stem}.adapters"


def private_dir(path: Path) -> Path:
    """mkdir -p, each folder it creates owner-only (existing folders are left as they are)."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(folder, DIR_MODE)  # mkdir's mode is filtered by the umask
    return path


def private_file(path: Path) -> Path:
    """Create `path` (and its folders) owner-only if it does not exist yet; an existing file is kept as is."""
    path = Path(path)
    private_dir(path.parent)
    fd = os.open(path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, FILE_MODE)
    os.close(fd)
    return path
