"""Table preflight: a missing or malformed nuScenes table is one error line naming the file."""

from __future__ import annotations

import json
import logging

import pytest

from occvla_ros import cli
from occvla_ros.data.nuscenes_loader import open_nuscenes
from occvla_ros.data.tables import REQUIRED_FIELDS, check_tables
from occvla_ros.errors import DataError

VERSION = "v1.0-mini"


@pytest.fixture
def dataroot(writable_tables_dataroot):
    return writable_tables_dataroot


def test_real_tables_pass_and_every_devkit_table_is_checked(dataroot):
    check_tables(dataroot / VERSION)
    assert len(REQUIRED_FIELDS) == 13  # the devkit's table_names
    assert open_nuscenes(dataroot, VERSION).scene


def index_error(dataroot, tmp_path, caplog) -> str:
    """The one error line of `occvla index` (exit 2, no traceback)."""
    argv = ["index", "--dataroot", str(dataroot), "--version", VERSION, "--split", "mini_val"]
    with caplog.at_level(logging.ERROR):
        assert cli.main([*argv, "--cache-dir", str(tmp_path / "cache")]) == 2
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None
    return errors[0].getMessage()


def test_a_table_holding_one_object_is_named(dataroot, tmp_path, caplog):
    scene = dataroot / VERSION / "scene.json"
    scene.write_text(json.dumps(json.loads(scene.read_text())[0]))
    message = index_error(dataroot, tmp_path, caplog)
    assert str(scene) in message and "one JSON object" in message


def test_a_missing_table_is_named(dataroot, tmp_path, caplog):
    (dataroot / VERSION / "sample_data.json").unlink()
    message = index_error(dataroot, tmp_path, caplog)
    assert message.endswith(f"nuScenes table {dataroot / VERSION / 'sample_data.json'} is missing")


@pytest.mark.parametrize(
    ("table", "content", "expected"),
    [
        ("ego_pose", lambda text: text[: len(text) // 2], "is truncated"),
        ("sample", lambda text: "", "an empty file"),
        ("instance", lambda text: json.dumps([["not", "a", "record"]]), "lists list values"),
        (
            "sample_annotation",
            lambda text: json.dumps([{k: v for k, v in r.items() if k != "instance_token"}
                                     for r in json.loads(text)]),
            "records lack ['instance_token']",
        ),
    ],
)  # fmt: skip
def test_malformed_tables_are_named(dataroot, table, content, expected):
    path = dataroot / VERSION / f"{table}.json"
    path.write_text(content(path.read_text()))
    with pytest.raises(DataError, match="nuScenes table") as raised:
        open_nuscenes(dataroot, VERSION)
    assert str(path) in str(raised.value) and expected in str(raised.value)
