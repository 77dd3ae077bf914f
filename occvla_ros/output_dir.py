"""One check, before any work, that a command can write its output directory.

``occvla evaluate``, ``occvla train-ego-baseline``, ``occvla bag convert`` and
``python -m training.train`` call :func:`check_output_directory` on their ``--out`` first, so a
path that is a file, lies under a file, or sits in a directory the user cannot write fails in
milliseconds with one line, instead of after minutes of work.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from occvla_ros.errors import ConfigError


def check_output_directory(path: str | Path, option: str = "--out") -> Path:
    """``path`` as a Path if it is (or can be created as) a writable directory; else ConfigError.

    Nothing is created: writability is tested with a temporary file in ``path`` or in its
    nearest existing parent (the real test, which also holds for root and read-only mounts).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path} is a file, not a directory")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{option} {path}: {existing} is a file, not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise ConfigError(
            f"{option} {path}: cannot write in {existing} ({error.strerror or error})"
        ) from error
    return path
