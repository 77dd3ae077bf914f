"""One line naming the machine a benchmark ran on, printed first by every benchmark here.

These machines are shared virtual ones whose speed changes from day to day
(docs/ros-performance.md has runs where the same call took twice as long), so a result is only
worth recording with the CPU, its cores, how busy it was at the start, the versions and the date.
A GPU benchmark names its GPU itself.
"""

from __future__ import annotations

import datetime
import os
import platform
from importlib import metadata
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or the architecture where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine() -> str:
    # torch's version comes from its metadata, not an import: the ROS benchmarks print this line
    # before they cap their process's malloc arenas, which must precede any library's threads.
    return (
        f"machine: {cpu_model()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
        f"python {platform.python_version()}, torch {metadata.version('torch')}; "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
    )
