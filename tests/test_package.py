"""The ament_python package installs like a ROS package: share/, index marker, entry points."""

from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARE_CONTENT = ("package.xml", "launch", "config", "rviz")


def test_share_directory_is_found_through_the_ament_index(installed_share_dir):
    share = installed_share_dir
    for entry in SHARE_CONTENT:
        assert (share / entry).exists(), f"{entry} missing from {share}"
    assert (share / "config" / "fastdds.xml").is_file()


def test_package_xml_is_format_3_with_ros_dependencies():
    from catkin_pkg.package import parse_package

    package = parse_package(str(REPO_ROOT / "package.xml"))
    assert package.package_format == 3
    assert package.name == "occvla_ros"
    exec_depends = {d.name for d in package.exec_depends}
    for needed in ("rclpy", "sensor_msgs", "nav_msgs", "visualization_msgs", "std_msgs"):
        assert needed in exec_depends
    assert package.get_build_type() == "ament_python"


def test_fastdds_profile_gives_shared_memory_a_large_segment():
    namespace = {"dds": "http://www.eprosima.com"}
    root = ET.parse(REPO_ROOT / "config" / "fastdds.xml").getroot()
    shm = [
        d
        for d in root.iterfind(".//dds:transport_descriptor", namespace)
        if d.findtext("dds:type", namespaces=namespace) == "SHM"
    ]
    assert len(shm) == 1
    assert int(shm[0].findtext("dds:segment_size", namespaces=namespace)) >= 64 * 2**20


def test_console_script_runs_the_cli(installed_share_dir):
    occvla = Path(sys.executable).parent / "occvla"
    result = subprocess.run([occvla, "--help"], capture_output=True, text=True, check=True)
    assert "doctor" in result.stdout


@pytest.mark.slow
def test_colcon_build_installs_share_directory(tmp_path):
    colcon = shutil.which("colcon", path=str(Path(sys.executable).parent))
    assert colcon, "colcon is part of requirements/dev.txt"
    source = tmp_path / "src" / "occvla_ros"
    shutil.copytree(
        REPO_ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "build", "install", "log", "*.egg-info", "__pycache__", "outputs"
        ),
    )
    result = subprocess.run(
        [colcon, "build", "--base-paths", "src", "--event-handlers", "console_direct-"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    share = tmp_path / "install" / "occvla_ros" / "share" / "occvla_ros"
    for entry in SHARE_CONTENT:
        assert (share / entry).exists(), f"{entry} missing from colcon's {share}"
    executables = tmp_path / "install" / "occvla_ros" / "lib" / "occvla_ros"
    for name in ("occvla", "planner_node", "occupancy_node"):
        assert (executables / name).is_file(), f"`ros2 run occvla_ros {name}` would not find it"


def test_share_directory_is_found_without_a_sourced_ros_environment(
    installed_share_dir, monkeypatch
):
    from occvla_ros.resources import share_directory

    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    assert share_directory() == installed_share_dir
