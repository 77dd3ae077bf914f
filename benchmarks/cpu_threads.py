"""Planner.plan vs its CPU threads (``cpu_threads``), on idle cores and beside busy processes.

    .venv/bin/python benchmarks/cpu_threads.py [--checkpoint DIR] [--plans 10] [--rounds 2]
                                               [--busy 1] [--occupancy]

For each thread count from 1 to the number of cores, a fresh process (as a node is) loads a
Planner with that ``cpu_threads`` (PyTorch threads and decoding workers) and times its plans of
the six 1600x900 JPEGs of ros_latency.py. The conditions alternate within each round: idle, then
with ``--busy`` processes each spinning one core (another node, a compiler, a logger on the same
computer). Reports the median and p90 plan time per thread count and condition; with
``--occupancy`` the occupancy branch runs too. Without --checkpoint a randomly initialised tiny
checkpoint is used.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from machine import describe_machine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ros_latency import nuscenes_sized_jpegs, prepare_checkpoint


@contextlib.contextmanager
def busy_processes(count: int):
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        time.sleep(0.5)  # let them reach their loop
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def plan_times(checkpoint: Path, threads: int, plans: int, occupancy: bool) -> list[float]:
    """Plan times (ms) of a fresh process whose Planner has ``cpu_threads=threads``."""
    result = subprocess.run(
        [sys.executable, __file__, "--child", str(threads), "--checkpoint", str(checkpoint),
         "--plans", str(plans), *(["--occupancy"] if occupancy else [])],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    return [float(value) for value in result.stdout.split()]


def child(checkpoint: str, threads: int, plans: int, occupancy: bool) -> None:
    from occvla_ros.runtime.planner import JPEG, CameraFrame, Planner

    frames = {name: CameraFrame(jpeg, JPEG) for name, jpeg in nuscenes_sized_jpegs().items()}
    planner = Planner(checkpoint, device="cpu", cpu_threads=threads)
    planner.plan(frames, (5.0, 0.0, 0.0), with_occupancy=occupancy)  # after the blank warm-up
    for _ in range(plans):
        start = time.perf_counter()
        planner.plan(frames, (5.0, 0.0, 0.0), with_occupancy=occupancy)
        print((time.perf_counter() - start) * 1e3)
    planner.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint")
    parser.add_argument("--plans", type=int, default=10, help="timed plans per process")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--busy", type=int, default=1, help="busy processes in the busy condition")
    parser.add_argument("--occupancy", action="store_true")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.checkpoint, args.child, args.plans, args.occupancy)
        return
    print(describe_machine())

    checkpoint = prepare_checkpoint(args.checkpoint)
    counts = range(1, (os.cpu_count() or 1) + 1)
    busy = f"{args.busy} busy process{'es' if args.busy > 1 else ''}"
    times: dict[tuple[str, int], list[float]] = defaultdict(list)
    for _ in range(args.rounds):
        for n in counts:
            times["idle", n] += plan_times(checkpoint, n, args.plans, args.occupancy)
        with busy_processes(args.busy):
            for n in counts:
                times[busy, n] += plan_times(checkpoint, n, args.plans, args.occupancy)
    print(
        f"{os.cpu_count()} cores, occupancy {'on' if args.occupancy else 'off'}, "
        f"{args.rounds} x {args.plans} plans per cell (median / p90 ms)"
    )
    print(f"{'cpu_threads':>12} {'idle':>18} {busy:>22}")
    for n in counts:
        cells = [
            f"{np.median(times[c, n]):7.1f} / {np.percentile(times[c, n], 90):6.1f}"
            for c in ("idle", busy)
        ]
        print(f"{n:>12} {cells[0]:>18} {cells[1]:>22}")


if __name__ == "__main__":
    main()
