"""Fixtures of the data tests."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture
def writable_tables_dataroot(synthetic_dataroot, tmp_path):
    """The synthetic dataset with its own copy of the v1.0-mini tables (which tests change); the
    other folders are links to the shared, read-only dataset."""
    root = tmp_path / "nuscenes"
    root.mkdir()
    for child in synthetic_dataroot.iterdir():
        if child.name == "v1.0-mini":
            shutil.copytree(child, root / child.name)
        else:
            (root / child.name).symlink_to(child)
    return root
