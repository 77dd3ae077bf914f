"""Configuration checks, determinism and the `occvla synth` command."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from occvla_ros.cli import main
from occvla_ros.data.synth import SynthConfig
from occvla_ros.errors import ConfigError
from tests.conftest import generate_small_dataset

TINY = {
    "num_scenes": 1,
    "scene_duration_s": 2.0,
    "image_width": 96,
    "image_height": 54,
    "lidar_azimuth_steps": 180,
    "val_fraction": 0.0,
}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("num_scenes", 0, "num_scenes"),
        ("num_scenes", 2.5, "num_scenes"),
        ("scene_duration_s", 0.5, "scene_duration_s"),
        ("image_width", 10, "image_width"),
        ("image_height", True, "image_height"),
        ("jpeg_quality", 101, "jpeg_quality"),
        ("version", "v1.0-test", "version"),
        ("seed", -1, "seed"),
        ("val_fraction", 1.0, "val_fraction"),
        ("num_scenes", 11, "v1.0-trainval"),  # more than the mini split lists name
    ],
)
def test_bad_config_values_raise_config_error(field: str, value, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SynthConfig(**{field: value})


def test_more_scenes_than_the_split_lists_name_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="at most 700 train and 150 val"):
        SynthConfig(num_scenes=850, version="v1.0-trainval")


def test_split_counts_follow_the_version() -> None:
    assert SynthConfig(num_scenes=2).split_counts == (1, 1)
    assert SynthConfig(num_scenes=10).split_counts == (8, 2)
    assert SynthConfig(num_scenes=40, version="v1.0-trainval").split_counts == (32, 8)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.mark.slow
def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path: Path) -> None:
    first = _digest(generate_small_dataset(tmp_path / "a", **TINY))
    second = _digest(generate_small_dataset(tmp_path / "b", **TINY))
    other = _digest(generate_small_dataset(tmp_path / "c", **{**TINY, "seed": 1}))
    assert first == second
    assert any(name.endswith(".jpg") for name in first)
    assert any(name.startswith("v1.0-mini/") for name in first)
    different = [name for name in first if name.endswith(".jpg") and first[name] != other.get(name)]
    assert different and first["v1.0-mini/ego_pose.json"] != other["v1.0-mini/ego_pose.json"]


def test_without_sweeps_only_keyframe_images_are_written(tmp_path: Path) -> None:
    root = generate_small_dataset(tmp_path / "d", camera_sweeps=False, **TINY)
    assert not (root / "sweeps").exists()
    assert len(list((root / "samples" / "CAM_FRONT").iterdir())) == 4


def test_command_reports_bad_arguments_without_a_traceback(tmp_path: Path, caplog) -> None:
    code = main(["synth", "--out", str(tmp_path / "x"), "--scenes", "0"])
    assert code == 2
    assert "num_scenes must be an integer" in caplog.text


def test_command_refuses_to_overwrite_a_dataset(tmp_path: Path, caplog) -> None:
    root = generate_small_dataset(tmp_path / "e", **TINY)
    arguments = [
        "synth",
        "--out",
        str(root),
        "--scenes",
        "1",
        "--duration",
        "2",
        "--width",
        "96",
        "--height",
        "54",
        "--val-fraction",
        "0",
    ]
    assert main(arguments) == 2
    assert "already exists" in caplog.text


def test_command_writes_a_dataset(tmp_path: Path) -> None:
    arguments = [
        "synth",
        "--out",
        str(tmp_path / "f"),
        "--scenes",
        "1",
        "--duration",
        "2",
        "--width",
        "96",
        "--height",
        "54",
        "--no-sweeps",
        "--seed",
        "3",
        "--val-fraction",
        "0",
        "--lidar-azimuth-steps",
        "180",
    ]
    assert main(arguments) == 0
    assert (tmp_path / "f" / "v1.0-mini" / "scene.json").is_file()
