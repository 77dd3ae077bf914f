"""Detect a stale non-editable install: tests import the source tree, while node processes and
`ros2`-style lookups use the installed copy, so the two must be identical."""

from __future__ import annotations

import filecmp
import sysconfig
from pathlib import Path

_DATA_DIRS = ("launch", "config", "rviz")


def _source_files(root: Path, directory: str, pattern: str) -> list[Path]:
    return sorted(
        p.relative_to(root)
        for p in (root / directory).rglob(pattern)
        if p.is_file() and "__pycache__" not in p.parts
    )


def stale_install_reason(repo_root: Path) -> str | None:
    """A sentence saying how the installed package differs from the source, or None."""
    site = Path(sysconfig.get_paths()["purelib"])
    share = Path(sysconfig.get_paths()["data"]) / "share" / "occvla_ros"
    pairs = [(repo_root / p, site / p) for p in _source_files(repo_root, "occvla_ros", "*.py")]
    for directory in _DATA_DIRS:
        pairs += [
            (repo_root / p, share / p) for p in _source_files(repo_root, directory, "*") if p.suffix
        ]
    installed_modules = {
        p.relative_to(site)
        for p in (site / "occvla_ros").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    extra = installed_modules - {s.relative_to(repo_root) for s, _ in pairs}
    if extra:
        return f"installed package has modules the source no longer has ({sorted(extra)[0]})"
    for source, installed in pairs:
        if not installed.exists():
            return f"{source.relative_to(repo_root)} is not installed"
        if not filecmp.cmp(source, installed, shallow=False):
            return f"installed copy of {source.relative_to(repo_root)} differs from the source"
    return None
