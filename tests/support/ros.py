"""Helpers for tests that talk to real rclpy nodes, in this process or in others."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# Discovery between processes can take ~1 s on 2 busy cores; leave a wide margin.
DISCOVERY_TIMEOUT_S = 20.0


def python_module_command(module: str, *args: str) -> list[str]:
    """Run ``module`` with this interpreter (the environment's installed package)."""
    return [sys.executable, "-m", module, *args]


class RosProbe:
    """A node on a private rclpy context with a single-threaded executor the test spins."""

    def __init__(self) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"test_probe_{uuid.uuid4().hex[:8]}", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        """Spin until ``condition()`` holds; False if the timeout passes first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return condition()

    def spin_for(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)

    def wait_for_subscribers(self, publisher, count: int = 1, timeout_s=DISCOVERY_TIMEOUT_S):
        return self.spin_until(lambda: publisher.get_subscription_count() >= count, timeout_s)

    def wait_for_publishers(self, subscription, count: int = 1, timeout_s=DISCOVERY_TIMEOUT_S):
        return self.spin_until(lambda: subscription.get_publisher_count() >= count, timeout_s)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


class ProcessHandle:
    """A subprocess whose combined output goes to a log file the test can read."""

    def __init__(self, command: list[str], log_path: Path, env: dict | None = None) -> None:
        self.command = command
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            cwd=REPO_ROOT,
        )

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def log_text(self) -> str:
        if not self._log.closed:  # stop() closes it; the file stays readable
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout_s: float) -> int:
        return self.process.wait(timeout=timeout_s)

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGINT (a clean rclpy shutdown), then SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()
        return self.process.returncode


# The vendored upstream launch/launch_ros/ros2cli wheels that `make test` installs (test tooling,
# never needed at run time: docs/ros.md, Launch files).
ROS2_LAUNCH_VENDOR = REPO_ROOT.parent / "shared" / "vendor" / "ros2-launch"


def ros2_launch_missing() -> str | None:
    """Why the real `ros2 launch` cannot run here, or None when it can."""
    import importlib.util

    if not ROS2_LAUNCH_VENDOR.is_dir():
        return f"{ROS2_LAUNCH_VENDOR} not found: the real launch machinery is not installed"
    missing = [
        name
        for name in ("launch", "launch_ros", "ros2launch", "composition_interfaces")
        if importlib.util.find_spec(name) is None
    ]
    if missing or not (Path(sys.prefix) / "bin" / "ros2").exists():
        return f"ros2 launch not installed from {ROS2_LAUNCH_VENDOR} ({missing}): run `make test`"
    return None


def ros2_launch_command(launch_file: str, *arguments: str) -> list[str]:
    """The `ros2 launch occvla_ros <file> ...` command users type, from this environment."""
    return [str(Path(sys.prefix) / "bin" / "ros2"), "launch", "occvla_ros", launch_file, *arguments]


class CpuHog:
    """Two busy loops at the lowest priority (a loaded 2-core machine); stopped by pid."""

    def __init__(self, count: int = 2) -> None:
        self.processes = [
            subprocess.Popen(["nice", "-n", "19", "sh", "-c", "while :; do :; done"])
            for _ in range(count)
        ]

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait()
