"""Test-wide environment and fixtures.

The environment is set here, once, at import time: before any test imports rclpy, transformers
or matplotlib, and inherited by every process a test starts.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
_RUN_DIR = Path(tempfile.mkdtemp(prefix="occvla-tests-"))
_FASTDDS_PROFILE = str(REPO_ROOT / "config" / "fastdds.xml")

os.environ.update(
    {
        # Keep DDS traffic on this machine, and away from any other test run on it.
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_DOMAIN_ID": str(random.randint(1, 100)),
        "ROS_LOG_DIR": str(_RUN_DIR / "ros_log"),
        # Only the current name: given the deprecated FASTRTPS_DEFAULT_PROFILES_FILE as well, Fast
        # DDS warns and fails to load the file a second time (occvla_ros.ros.node_set).
        "FASTDDS_DEFAULT_PROFILES_FILE": _FASTDDS_PROFILE,
        # ament_index_python finds share/occvla_ros of the package installed in this environment.
        "AMENT_PREFIX_PATH": os.pathsep.join(
            p for p in (sys.prefix, os.environ.get("AMENT_PREFIX_PATH")) if p
        ),
        # No model hub here: fail at once instead of retrying for ~26 s.
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "MPLBACKEND": "Agg",
        "TOKENIZERS_PARALLELISM": "false",
        # One intra-op thread in every test process: the tests run one at a time, and torch's two
        # OpenMP threads beside a busy neighbour (a CPU hog, another job) wait on each other: a
        # tiny training step took 3 s with two threads there and 0.2 s with one.
        "OMP_NUM_THREADS": "1",
    }
)


@pytest.fixture(scope="session")
def installed_share_dir() -> Path:
    """share/occvla_ros of the installed package, checked to match the source tree.

    In-process tests and `python -m` node processes (started from the repository root) import the
    source tree; ament-index lookups (config/, launch/) and console scripts use the installed copy.
    Tests that rely on the installed copy take this fixture so a stale install fails loudly.
    """
    from ament_index_python.packages import get_package_share_directory

    from tests.support.install import stale_install_reason

    reason = stale_install_reason(REPO_ROOT)
    if reason:
        pytest.fail(f"{reason}: run `make install` (or `make test`) first")
    return Path(get_package_share_directory("occvla_ros"))


SYNTHETIC_DEFAULTS = {
    "seed": 0,
    "num_scenes": 2,  # one mini_train scene (scene-0061) and one mini_val scene (scene-0103)
    "scene_duration_s": 8.0,
    "version": "v1.0-mini",
    "image_width": 384,
    "image_height": 216,
    "camera_sweeps": True,
    "lidar_azimuth_steps": 540,
}


def generate_small_dataset(directory: Path, **overrides) -> Path:
    """Generate a small synthetic nuScenes-format dataset into ``directory`` and return it.

    Fields of :class:`occvla_ros.data.synth.SynthConfig` override ``SYNTHETIC_DEFAULTS``.
    """
    from occvla_ros.data.synth import SynthConfig, generate_dataset

    generate_dataset(directory, SynthConfig(**{**SYNTHETIC_DEFAULTS, **overrides}))
    return directory


@pytest.fixture(scope="session")
def synthetic_dataroot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic dataset (``SYNTHETIC_DEFAULTS``), generated once per test session.

    Tables, 12 Hz camera images, LIDAR_TOP keyframes, maps, Occ3D labels (gts/) and OmniDrive QA
    (omnidrive/); treat it as read-only.
    """
    return generate_small_dataset(tmp_path_factory.mktemp("synthetic") / "nuscenes")


# CAN bus pose messages written by `can_bus_dataroot` for scene-0061 (none for scene-0103): the
# speed ramps up from 5 m/s by 1 m/s per second, the yaw rate is constant.
CAN_SPEED_AT_START, CAN_ACCELERATION, CAN_YAW_RATE = 5.0, 1.0, 0.125


def can_speed_at(timestamp_us: int, start_us: int) -> float:
    return CAN_SPEED_AT_START + 1e-6 * CAN_ACCELERATION * (timestamp_us - start_us)


@pytest.fixture
def can_bus_dataroot(synthetic_dataroot: Path, tmp_path: Path) -> tuple[Path, int]:
    """The synthetic dataset (symlinked) plus a CAN bus expansion covering scene-0061 at 50 Hz;
    returns (dataroot, the first keyframe's time in microseconds)."""
    import json

    dataroot = tmp_path / "nuscenes"
    dataroot.mkdir()
    for child in synthetic_dataroot.iterdir():
        (dataroot / child.name).symlink_to(child)
    (dataroot / "can_bus").mkdir()
    samples = json.loads((synthetic_dataroot / "v1.0-mini" / "sample.json").read_text())
    start_us = min(s["timestamp"] for s in samples)
    messages = [
        {"utime": int(u), "vel": [can_speed_at(u, start_us), 0.0, 0.0],
         "accel": [CAN_ACCELERATION, 0.0, 9.8], "rotation_rate": [0.0, 0.0, CAN_YAW_RATE],
         "pos": [0.0, 0.0, 0.0], "orientation": [1.0, 0.0, 0.0, 0.0]}
        for u in start_us + np.arange(0, 9_000_000, 20_000)
    ]  # fmt: skip
    (dataroot / "can_bus" / "scene-0061_pose.json").write_text(json.dumps(messages))
    return dataroot, start_us


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A per-test scratch directory (alias of tmp_path with an explicit name)."""
    return tmp_path


@pytest.fixture
def ros_probe():
    """An rclpy node in the test process, on its own context, with spin helpers."""
    from tests.support.ros import RosProbe

    probe = RosProbe()
    yield probe
    probe.close()


@pytest.fixture
def node_process(tmp_path: Path):
    """Factory: start a command (usually a node) as a subprocess; stopped at teardown."""
    from tests.support.ros import ProcessHandle

    handles: list[ProcessHandle] = []

    def start(command: list[str], name: str = "process", env: dict | None = None):
        handle = ProcessHandle(command, tmp_path / f"{name}.log", env=env)
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.stop()
