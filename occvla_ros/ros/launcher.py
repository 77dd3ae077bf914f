"""``occvla launch [checkpoint:=DIR] [occupancy:=true] ...``: the node set without ``ros2 launch``.

Starts the nodes declared in :mod:`occvla_ros.ros.node_set` (the same declaration
``launch/planner.launch.py`` reads) as separate processes with the Fast DDS profile in their
environment, forwards SIGINT/SIGTERM to them, and exits non-zero when a node fails: at startup
(e.g. a missing checkpoint) or later. No rclpy import here: the launcher is not a node.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from occvla_ros.errors import ConfigError
from occvla_ros.resources import share_directory
from occvla_ros.ros.node_set import (
    LAUNCH_ARGUMENTS,
    STOP_TIMEOUT_S,
    PlannedNode,
    dds_environment,
    plan_nodes,
)

logger = logging.getLogger(__name__)


def parse_launch_arguments(tokens: list[str]) -> dict[str, str]:
    """``name:=value`` tokens -> dict; ConfigError naming a malformed or unknown one."""
    known = {argument.name for argument in LAUNCH_ARGUMENTS}
    values: dict[str, str] = {}
    for token in tokens:
        name, separator, value = token.partition(":=")
        if not separator or name not in known:
            raise ConfigError(
                f"bad launch argument {token!r}: expected NAME:=VALUE with NAME in {sorted(known)}"
            )
        values[name] = value
    return values


def _parameter_text(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def node_command(planned: PlannedNode) -> list[str]:
    """The command line starting one planned node with ``python -m``."""
    command = [sys.executable, "-m", planned.spec.module, "--ros-args"]
    command += ["-r", f"__node:={planned.spec.name}"]
    for path in planned.parameters_files:
        command += ["--params-file", str(path)]
    for name, value in planned.parameters.items():
        command += ["-p", f"{name}:={_parameter_text(value)}"]
    for source, target in planned.spec.remappings:
        command += ["-r", f"{source}:={target}"]
    return command


def run_nodes(planned_nodes: list[PlannedNode], share_dir: Path) -> int:
    environment = {**os.environ, **dds_environment(share_dir)}
    processes = {}
    received: list[int] = []

    def forward(signum, _frame) -> None:
        received.append(signum)
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signum)

    # Before any node starts, for two reasons. A signal arriving while they start is forwarded
    # to those already running (and stops the rest from starting). And a signal ignored here
    # (`occvla launch ... &` from a script starts with SIGINT ignored) would be inherited as
    # ignored by the nodes, which then miss the forwarded SIGINT until rclpy has installed its
    # handler; a handled signal is reset to its default in a child.
    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for planned in planned_nodes:
            if received:
                break
            command = node_command(planned)
            logger.info("starting %s: %s", planned.spec.name, " ".join(command))
            processes[planned.spec.name] = subprocess.Popen(command, env=environment)
        failed = None
        while not received and failed is None:
            for name, process in processes.items():
                if process.poll() is not None and (process.returncode != 0 or failed is None):
                    failed = failed or (name, process.returncode)
            if failed is None and all(p.poll() is not None for p in processes.values()):
                break
            time.sleep(0.1)
        if failed is not None and not received:
            name, code = failed
            if code != 0:
                logger.error("%s exited with status %d: stopping the other nodes", name, code)
            forward(signal.SIGINT, None)
        return _wait_all(processes, failed)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _wait_all(processes: dict, failed: tuple[str, int] | None) -> int:
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if failed is not None and failed[1] != 0:
        return failed[1]
    # A node ended by our forwarded SIGINT exits 0; anything else is a failure.
    codes = [p.returncode for p in processes.values() if p.returncode not in (0, -2, -15)]
    return codes[0] if codes else 0


def add_arguments(parser) -> None:
    listing = "; ".join(
        f"{a.name} (default {a.default!r}): {a.description}" for a in LAUNCH_ARGUMENTS
    )
    parser.add_argument("arguments", nargs="*", metavar="NAME:=VALUE", help=listing)


def run(args) -> int:
    values = parse_launch_arguments(args.arguments)
    share_dir = share_directory()
    try:
        planned = plan_nodes(share_dir, values)
    except ValueError as error:
        raise ConfigError(str(error)) from error
    missing = [str(f) for p in planned for f in p.parameters_files if not f.is_file()]
    if missing:
        raise ConfigError(f"parameter file(s) not found: {missing}")
    return run_nodes(planned, share_dir)
