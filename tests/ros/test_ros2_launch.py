"""The launch files under the real launch machinery: `ros2 launch occvla_ros ...` as users type it.

`ros2`, `launch`, `launch_ros` and `composition_interfaces` come from the vendored upstream wheels
and sources (../shared/vendor/ros2-launch) that `make test` installs into .venv; the package runs
without them. The nodes are fed by this test's own publishers (tests/ros/rig.py), as in the other
ROS tests.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import sys
from pathlib import Path

import pytest

from occvla_ros.ros.conversions import stamp_to_ns
from occvla_ros.ros.node_set import OCCUPANCY, PACKAGE, PLANNER
from tests.ros.rig import SECOND, CameraRig, Outputs, drive
from tests.support.ros import (
    CpuHog,
    ProcessHandle,
    RosProbe,
    ros2_launch_command,
    ros2_launch_missing,
)

pytestmark = [
    pytest.mark.ros,
    pytest.mark.skipif(bool(ros2_launch_missing()), reason=str(ros2_launch_missing())),
]

TEST_PARAMETERS = """\
/**:
  ros__parameters:
    diagnostics_period_s: 0.5
    startup_error_linger_s: 0.5
"""
# Longer than the nodes' stop timeout (15 s) plus the process start, on a loaded machine.
EXIT_TIMEOUT_S = 40.0


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "planner_test.yaml"
    path.write_text(TEST_PARAMETERS)
    return path


def started_processes(log: str) -> list[str]:
    """Executables launch reports as started (`[INFO] [planner_node-1]: process started ...`)."""
    return [
        line.split("[")[2].split("-")[0] for line in log.splitlines() if "process started" in line
    ]


def test_pip_install_puts_the_node_executables_where_launch_ros_looks():
    """Defect (a): launch_ros looks only in <prefix>/lib/<package>/, pip puts scripts in bin/."""
    libexec = Path(sys.prefix) / "lib" / PACKAGE
    for spec in (PLANNER, OCCUPANCY):
        executable = libexec / spec.executable
        assert executable.is_file(), f"{executable} missing: run `make install`"
        assert executable.stat().st_mode & stat.S_IXUSR
    # It runs the node with this environment's Python: a wrongly typed parameter is the node's
    # own one-line startup error, exit 2.
    node = ProcessHandle(
        [str(libexec / OCCUPANCY.executable), "--ros-args", "-p", "max_voxels:=many"],
        Path(os.environ["ROS_LOG_DIR"]).parent / "libexec_occupancy.log",
    )
    assert node.wait(60.0) == 2, node.log_text()
    assert "startup failed" in node.log_text() and "max_voxels" in node.log_text()


@pytest.mark.slow
def test_planner_launch_plans_and_stops_cleanly_on_sigint_under_load(
    installed_share_dir, tiny_checkpoint, config, tmp_path
):
    from visualization_msgs.msg import MarkerArray

    probe = RosProbe()
    outputs = Outputs(probe)
    markers = []
    probe.node.create_subscription(MarkerArray, "/occvla_occupancy/markers", markers.append, 5)
    launch = ProcessHandle(
        ros2_launch_command(
            "planner.launch.py", f"checkpoint:={tiny_checkpoint}", "device:=cpu",
            "occupancy:=true", f"config:={config}",
        ),
        tmp_path / "launch.log",
    )  # fmt: skip
    hog = None
    try:
        rig = CameraRig(probe)
        assert rig.wait_for_node(), launch.log_text()
        assert probe.spin_until(lambda: "ready:" in launch.log_text(), 60.0), launch.log_text()
        published = [int((50 + 0.5 * i) * SECOND) for i in range(20)]
        assert drive(probe, rig, published, lambda: outputs.paths), launch.log_text()
        # The occupancy follows its plan: decoded, sent to the occupancy node, drawn, sent here.
        assert probe.spin_until(lambda: markers, 60.0), launch.log_text()
        assert sorted(started_processes(launch.log_text())) == ["occupancy_node", "planner_node"]
        hog = CpuHog()
        launch.process.send_signal(signal.SIGINT)
        code = launch.wait(EXIT_TIMEOUT_S)
    finally:
        if hog is not None:
            hog.stop()
        launch.stop()
        probe.close()
    log = launch.log_text()
    assert code == 0, log
    # Each node stopped on SIGINT within its stop timeout: no escalation to SIGTERM.
    assert log.count("process has finished cleanly") == 2, log
    assert "SIGTERM" not in log and "Traceback" not in log, log
    # Only the current Fast DDS variable is set: no deprecation warning, no second profile load.
    assert "XMLPARSER" not in log and "FASTRTPS_DEFAULT_PROFILES_FILE" not in log, log


@pytest.mark.slow
def test_planner_launch_without_occupancy_starts_the_planner_alone_with_its_arguments(
    installed_share_dir, tiny_checkpoint, config, tmp_path
):
    from rclpy.parameter_client import AsyncParameterClient

    probe = RosProbe()
    launch = ProcessHandle(
        ros2_launch_command(
            "planner.launch.py", f"checkpoint:={tiny_checkpoint}", "device:=cpu",
            "occupancy:=false", "use_sim_time:=true", f"config:={config}",
        ),
        tmp_path / "launch.log",
    )  # fmt: skip
    try:
        assert probe.spin_until(lambda: "ready:" in launch.log_text(), 60.0), launch.log_text()
        client = AsyncParameterClient(probe.node, PLANNER.name)
        assert client.wait_for_services(timeout_sec=20.0)
        future = client.get_parameters(
            ["use_sim_time", "device", "checkpoint", "diagnostics_period_s"]
        )
        assert probe.spin_until(future.done, 20.0)
        values = [value for value in future.result().values]
        assert values[0].bool_value is True
        assert values[1].string_value == "cpu"
        assert values[2].string_value == str(tiny_checkpoint)
        assert values[3].double_value == 0.5  # from config:=
        assert started_processes(launch.log_text()) == ["planner_node"]
        assert OCCUPANCY.name not in probe.node.get_node_names()
        launch.process.send_signal(signal.SIGINT)
        code = launch.wait(EXIT_TIMEOUT_S)
    finally:
        launch.stop()
        probe.close()
    assert code == 0, launch.log_text()


def test_planner_launch_exits_non_zero_when_the_planner_cannot_start(config, tmp_path):
    """Defect (c): the planner's startup failure used to end `ros2 launch` with status 0."""
    launch = ProcessHandle(
        ros2_launch_command(
            "planner.launch.py", "checkpoint:=/does/not/exist", "device:=cpu", f"config:={config}"
        ),
        tmp_path / "launch.log",
    )
    code = launch.wait(90.0)
    log = launch.log_text()
    assert code != 0, log
    assert "checkpoint directory /does/not/exist does not exist" in log
    assert f"{PLANNER.name} exited with status 1" in log


def test_a_mistyped_boolean_launch_argument_is_refused(tmp_path):
    launch = ProcessHandle(
        ros2_launch_command("planner.launch.py", "occupancy:=ture"), tmp_path / "launch.log"
    )
    code = launch.wait(60.0)
    log = launch.log_text()
    assert code != 0, log
    assert "launch argument occupancy:='ture' is not a boolean: expected true or false" in log
    assert "process started" not in log


@pytest.mark.slow
def test_replay_launch_plays_a_bag_into_both_nodes_and_ends_with_it(
    installed_share_dir, tiny_checkpoint, synthetic_dataroot, tmp_path
):
    from diagnostic_msgs.msg import DiagnosticArray
    from nav_msgs.msg import Path as PathMessage
    from visualization_msgs.msg import MarkerArray

    from occvla_ros.bags.nuscenes_to_bag import convert
    from occvla_ros.constants import GROUND_TRUTH_TOPIC

    bag = tmp_path / "bag"
    convert(synthetic_dataroot, "v1.0-mini", bag, scene_names=["scene-0103"])
    probe = RosProbe()
    outputs = Outputs(probe)
    markers, ground_truth = [], []
    probe.node.create_subscription(MarkerArray, "/occvla_occupancy/markers", markers.append, 5)
    probe.node.create_subscription(PathMessage, GROUND_TRUTH_TOPIC, ground_truth.append, 50)
    status_stamps = []
    probe.node.create_subscription(
        DiagnosticArray,
        "/diagnostics",
        lambda m: status_stamps.append(stamp_to_ns(m.header.stamp)),
        50,
    )
    launch = ProcessHandle(
        ros2_launch_command(
            "replay.launch.py", f"bag:={bag}", f"checkpoint:={tiny_checkpoint}", "device:=cpu",
            # Lockstep: every set is answered before the next one is played, on any machine.
            "lockstep:=true",
        ),
        tmp_path / "launch.log",
    )  # fmt: skip
    try:
        assert probe.spin_until(lambda: launch.returncode is not None, 240.0), launch.log_text()
        probe.spin_for(1.0)
    finally:
        launch.stop()
        probe.close()
    log = launch.log_text()
    # The bag played to its end, then everything stopped.
    assert launch.returncode == 0, log
    assert sorted(started_processes(log)) == ["bag_player", "occupancy_node", "planner_node"], log
    # The player's end is what stopped the nodes.
    player_end = log.index("[bag_player-3]: process has finished cleanly")
    assert player_end < log.index("sending signal 'SIGINT' to process[planner_node"), log
    assert log.count("process has finished cleanly") == 3, log
    assert outputs.paths and markers and ground_truth
    # The player scored the planner's answers, and lockstep left no plannable keyframe out.
    assert re.search(r"scored \d+ of \d+ ground-truth paths against \d+ plans", log), log
    assert "error: lockstep" not in log, log
    # use_sim_time (the replay default): the planner's clock is the bag's.
    bag_start = min(stamp_to_ns(path.header.stamp) for path in ground_truth)
    bag_end = max(stamp_to_ns(path.header.stamp) for path in ground_truth)
    assert any(bag_start <= stamp <= bag_end + SECOND for stamp in status_stamps), status_stamps


def test_replay_launch_without_a_bag_is_refused(tiny_checkpoint, tmp_path):
    launch = ProcessHandle(
        ros2_launch_command("replay.launch.py", f"checkpoint:={tiny_checkpoint}"),
        tmp_path / "launch.log",
    )
    assert launch.wait(60.0) != 0, launch.log_text()
    assert "bag" in launch.log_text() and "process started" not in launch.log_text()
