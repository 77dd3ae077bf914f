"""Sustained input: six 1600x900 JPEG cameras + odometry at 12 Hz into planner_node.

    .venv/bin/python benchmarks/ros_sustained.py [--checkpoint DIR] [--seconds 60] [--rate 12]
                                                 [--rest-every-s 60] [--malloc-defaults]
                                                 [--burst-s 0]

Publishes from this process on a fixed 12 Hz schedule (nuScenes' camera rate) for --seconds of
input, samples the node process's resident memory (VmRSS, RssAnon) and its malloc heap (in use and
free, from /diagnostics) once a second and counts the Paths that come back. Reports the memory
after warm-up (first 10 s) and at the end, the fitted growth per minute over the steady state,
plans per second, the node's own set / dropped-set counters from /diagnostics, the median heap in
use in the first and last steady minute, and whether the node was still alive. Exit status 1 when
the node died or its anonymous memory at rest (its heap and other private allocations) grew by
more than 2 MiB from before the input to after it. Occupancy off (nobody subscribes to it).

At rest: before the input, after each ``--rest-every-s`` seconds of it (0: never) and after the
last set, publishing pauses for 3 s, and the node's memory is read once it has planned its last
set and sent a /diagnostics status. These readings are taken at like points, with no frames in
flight (the samples above swing by 10-30 MiB with them), so the change from one to the next is
what that stretch of input left behind: memory in use (a leak, or a pool reaching its size) or
free memory the heap keeps. The pauses shift the stamps, not the rate.

``--burst-s S`` publishes the first S seconds at three times the rate, so that inference falls
behind and the node has the most sets in flight before the measured span; the warm-up then ends
10 s after the burst. (It did not stop the creep: docs/ros-performance.md, What the creep is.)
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
from machine import describe_machine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ros_latency import node_value, running_planner

WARM_UP_S = 10.0
REST_S = 3.0
BURST_FACTOR = 3
SAMPLED_KEYS = ("heap in use (MiB)", "heap free (MiB)", "dropped_sets")  # from /diagnostics
MAX_ANONYMOUS_GROWTH_MIB = 2.0


def resident_mib(pid: int, field: str = "VmRSS") -> float:
    """A resident-memory field of /proc/<pid>/status (VmRSS, RssAnon, RssShmem...) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {field} for process {pid}")


def reading_at_rest(probe, outputs, pid: int) -> tuple[float, float, float, str, str, str]:
    """VmRSS, RssAnon, RssShmem and SAMPLED_KEYS once the node has planned its last set."""
    probe.spin_for(REST_S)
    outputs.statuses.clear()
    probe.spin_until(lambda: bool(outputs.statuses), 5.0)  # a status the node sent at rest
    resident = (resident_mib(pid, field) for field in ("VmRSS", "RssAnon", "RssShmem"))
    return *resident, *(node_value(outputs, key) for key in SAMPLED_KEYS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=12.0)
    parser.add_argument(
        "--malloc-defaults", action="store_true", help="glibc's malloc defaults in the node"
    )
    parser.add_argument(
        "--rest-every-s",
        type=float,
        default=60.0,
        help=f"pause {REST_S:.0f} s after this much input and read the memory at rest (0: never)",
    )
    parser.add_argument(
        "--burst-s",
        type=float,
        default=0.0,
        help=f"publish the first seconds at {BURST_FACTOR}x the rate (warm-up counts from after)",
    )
    args = parser.parse_args()
    print(describe_machine())
    warm_up_s = args.burst_s + WARM_UP_S

    from tests.ros.rig import SECOND

    started = running_planner(args.checkpoint, malloc_defaults=args.malloc_defaults)
    with started as (_, node, probe, rig, outputs):
        period = 1.0 / args.rate
        # (s since start, VmRSS MiB, RssAnon MiB, *SAMPLED_KEYS)
        samples: list[tuple[float, float, float, str, str, str]] = []
        # (s of input, VmRSS MiB, RssAnon MiB, RssShmem MiB, *SAMPLED_KEYS) at rest
        at_rest = [(0.0, *reading_at_rest(probe, outputs, node.pid))]
        start = time.monotonic()
        published, next_sample, scheduled = 0, 0.0, 0.0  # scheduled: s of input after start
        next_rest = args.rest_every_s or float("inf")
        while scheduled < args.seconds and node.poll() is None:
            elapsed = time.monotonic() - start
            rig.publish_set(int((1000.0 + scheduled) * SECOND))
            published += 1
            scheduled += period / BURST_FACTOR if scheduled < args.burst_s else period
            if elapsed >= next_sample:
                resident = (resident_mib(node.pid, field) for field in ("VmRSS", "RssAnon"))
                samples.append(
                    (elapsed, *resident, *map(partial(node_value, outputs), SAMPLED_KEYS))
                )
                next_sample += 1.0
            if scheduled >= next_rest:
                rest_started = time.monotonic()
                at_rest.append((scheduled, *reading_at_rest(probe, outputs, node.pid)))
                start += time.monotonic() - rest_started  # the pause is not input time
                next_rest += args.rest_every_s
            probe.spin_until(lambda: False, max(0.0, start + scheduled - time.monotonic()))
        if at_rest[-1][0] < scheduled and node.poll() is None:
            at_rest.append((scheduled, *reading_at_rest(probe, outputs, node.pid)))
        alive = node.poll() is None
        times, memory = (np.array([sample[index] for sample in samples]) for index in (0, 1))
        steady = times >= warm_up_s
        warm = float(memory[steady][0]) if steady.any() else float(memory[-1])
        growth = (memory[-1] - warm) / warm
        slope = np.polyfit(times[steady], memory[steady], 1)[0] * 60.0 if steady.sum() > 2 else 0.0
        print(
            f"published {published} sets in {time.monotonic() - start:.1f} s "
            f"({published / args.seconds:.1f} Hz x 6 cameras, 1600x900 JPEG "
            f"{np.mean([len(j) for j in rig.jpegs.values()]) / 1e3:.0f} kB each)"
        )
        print(f"plans received : {len(outputs.paths)} ({len(outputs.paths) / args.seconds:.1f}/s)")
        print(
            f"node counters  : sets {node_value(outputs, 'sets')}, "
            f"dropped sets {node_value(outputs, 'dropped_sets')}, "
            f"plans {node_value(outputs, 'plans')}"
        )
        print(
            f"node memory    : {memory[0]:.0f} MiB at start, {warm:.0f} MiB after "
            f"{warm_up_s:.0f} s, {memory[-1]:.0f} MiB at the end, max {memory.max():.0f} MiB; "
            f"after warm-up {100 * growth:+.1f} % (fit {slope:+.2f} MiB/min)"
        )
        # The live heap swings with the sets in flight at the sampled instant: compare medians.
        in_use = [float(sample[3]) for sample in samples[int(warm_up_s) :] if sample[3] != "n/a"]
        if len(in_use) >= 120:
            first, last = np.median(in_use[:60]), np.median(in_use[-60:])
            print(
                f"heap in use    : median {first:.1f} MiB in the first steady minute, "
                f"{last:.1f} MiB in the last ({last - first:+.1f} MiB)"
            )
        if len(at_rest) > 1:
            print(
                f"node at rest (publishing paused {REST_S:.0f} s): RSS, of it anonymous and "
                "shared (DDS segments); heap in use / free (MiB); change of the anonymous memory "
                "since the previous reading; dropped sets"
            )
            for index, (seconds, rss, anonymous, shared, in_use, free, dropped) in enumerate(
                at_rest
            ):
                change = f"{anonymous - at_rest[index - 1][2]:+6.1f}" if index else " " * 6
                print(
                    f"  after {seconds:6.0f} s  {rss:6.1f}  {anonymous:6.1f}  {shared:6.1f}   "
                    f"{in_use} / {free}   {change}   {dropped}"
                )
        print(f"node alive     : {alive}")
        if not alive or len(at_rest) < 2:
            return 1
        anonymous_growth = at_rest[-1][2] - at_rest[0][2]
        print(
            f"anonymous memory at rest: {at_rest[0][2]:.1f} MiB before the input, "
            f"{at_rest[-1][2]:.1f} MiB after it ({anonymous_growth:+.1f} MiB; "
            f"limit +{MAX_ANONYMOUS_GROWTH_MIB:.0f})"
        )
        return 0 if anonymous_growth <= MAX_ANONYMOUS_GROWTH_MIB else 1


if __name__ == "__main__":
    sys.exit(main())
