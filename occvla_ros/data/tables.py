"""Preflight of a nuScenes table directory, before the devkit reads it.

The devkit loads 13 JSON tables and indexes them; a missing table surfaces as a bare
``FileNotFoundError`` and a table of the wrong shape (``scene.json`` holding one object instead of
a list) as a ``TypeError`` deep inside it, neither naming the file. :func:`check_tables` reads only
the start and the end of each table (the devkit then parses them in full), so it costs
milliseconds even on trainval: each table must exist, be a JSON list that is closed at its end,
and its first record must be an object with the fields the devkit and this project read.
"""

from __future__ import annotations

import json
from pathlib import Path

from occvla_ros.errors import DataError

# Bytes read from each end of a table; a first record longer than this is not a nuScenes record.
_HEAD_BYTES = 1 << 20
_TAIL_BYTES = 64

# Table -> fields its records must have: what the devkit's reverse index and this project's
# loader, evaluation and bag converter read (optional fields, such as visibility_token, are not).
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "category": ("token", "name"),
    "attribute": ("token",),
    "visibility": ("token",),
    "instance": ("token", "category_token"),
    "sensor": ("token", "channel", "modality"),
    "calibrated_sensor": ("token", "sensor_token", "translation", "rotation", "camera_intrinsic"),
    "ego_pose": ("token", "translation", "rotation", "timestamp"),
    "log": ("token",),
    "scene": ("token", "name", "first_sample_token", "nbr_samples"),
    "sample": ("token", "timestamp", "prev", "next"),
    "sample_data": (
        "token",
        "sample_token",
        "calibrated_sensor_token",
        "ego_pose_token",
        "is_key_frame",
        "filename",
        "timestamp",
        "prev",
        "next",
    ),
    "sample_annotation": (
        "token",
        "sample_token",
        "instance_token",
        "translation",
        "size",
        "rotation",
    ),
    "map": ("token", "log_tokens", "filename"),
}


def check_tables(table_dir: Path) -> None:
    """Raise :class:`DataError` naming the first table of ``table_dir`` the devkit cannot use."""
    table_dir = Path(table_dir)
    if not table_dir.is_dir():
        raise DataError(f"no nuScenes tables at {table_dir} (check --dataroot and --version)")
    for name, fields in REQUIRED_FIELDS.items():
        check_table(table_dir / f"{name}.json", fields)


def check_table(path: Path, fields: tuple[str, ...]) -> None:
    """One table: a JSON list, closed, whose first record (if any) is an object with ``fields``."""
    try:
        with path.open("rb") as file:
            head = file.read(_HEAD_BYTES).decode("utf-8", errors="replace")
            file.seek(max(0, path.stat().st_size - _TAIL_BYTES))
            tail = file.read().decode("utf-8", errors="replace")
    except FileNotFoundError as error:
        raise DataError(f"nuScenes table {path} is missing") from error
    except OSError as error:
        raise DataError(f"cannot read nuScenes table {path}: {error}") from error
    text = head.lstrip()
    if not text.startswith("["):
        found = {"{": "one JSON object", "": "an empty file"}.get(text[:1], "no JSON list")
        raise DataError(f"nuScenes table {path} holds {found}; expected a JSON list of records")
    if not tail.rstrip().endswith("]"):
        raise DataError(f"nuScenes table {path} is truncated: its JSON list is not closed")
    body = text[1:].lstrip()
    if body.startswith("]"):
        return  # an empty table
    try:
        first, _ = json.JSONDecoder().raw_decode(body)
    except ValueError as error:
        raise DataError(f"nuScenes table {path}: its first record is not valid JSON") from error
    if not isinstance(first, dict):
        raise DataError(
            f"nuScenes table {path} lists {type(first).__name__} values; expected records "
            f"(JSON objects)"
        )
    missing = [field for field in fields if field not in first]
    if missing:
        raise DataError(
            f"nuScenes table {path}: records lack {missing} (the first has {sorted(first)})"
        )
