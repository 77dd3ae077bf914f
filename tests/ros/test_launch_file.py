"""`occvla launch` (the plain-Python launcher) and what it shares with the launch files.

The launch files themselves run under the real launch machinery in test_ros2_launch.py.
"""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import time

import pytest

from occvla_ros.ros.launcher import parse_launch_arguments
from tests.support.ros import REPO_ROOT, ProcessHandle, python_module_command


def test_node_scripts_exist_for_the_declared_executables():
    from occvla_ros.ros import node_set

    setup_text = (REPO_ROOT / "setup.py").read_text()
    for spec in (node_set.PLANNER, node_set.OCCUPANCY):
        assert f'"{spec.executable}": "{spec.module}"' in setup_text
        assert importlib.util.find_spec(spec.module) is not None


def test_bad_launch_arguments_are_named():
    from occvla_ros.errors import ConfigError

    with pytest.raises(ConfigError, match="'checkpoint=/x'"):
        parse_launch_arguments(["checkpoint=/x"])
    with pytest.raises(ConfigError, match="'speed:=3'"):
        parse_launch_arguments(["speed:=3"])


@pytest.mark.ros
def test_a_mistyped_boolean_launch_argument_is_refused(tmp_path):
    launcher = ProcessHandle(
        [*python_module_command("occvla_ros.cli", "launch"), "occupancy:=ture"],
        tmp_path / "launch.log",
    )
    assert launcher.wait(60.0) == 2, launcher.log_text()
    assert "launch argument occupancy:='ture' is not a boolean: expected true or false" in (
        launcher.log_text()
    )
    assert "starting" not in launcher.log_text()


@pytest.mark.ros
@pytest.mark.slow
def test_launched_in_the_background_sigint_still_stops_every_node(tiny_checkpoint, tmp_path):
    """`occvla launch ... &` in a script starts with SIGINT ignored, and so did its nodes: a SIGINT
    while they were still importing was lost, and they ran on."""
    log_path = tmp_path / "launch.log"
    command = [
        *python_module_command("occvla_ros.cli", "launch"),
        f"checkpoint:={tiny_checkpoint}", "device:=cpu", "occupancy:=true",
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        # As a non-interactive shell starts a background job: SIGINT ignored, kept across exec.
        launcher = subprocess.Popen(
            ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *command],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, start_new_session=True,
        )  # fmt: skip
    try:
        # Both nodes started, still importing their modules (seconds on this machine).
        deadline = time.monotonic() + 30.0
        while log_path.read_text().count("starting occvla_") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        launcher.send_signal(signal.SIGINT)
        code = launcher.wait(timeout=30.0)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    text = log_path.read_text()
    # Exit 0: every node ended on the forwarded SIGINT (one that ignored it would have been killed
    # after the stop timeout, and the launcher would exit non-zero).
    assert code == 0, text
    assert "RCLError" not in text, text
