"""Throughput of `occvla bag convert` and `occvla bag play` on a synthetic dataset.

    .venv/bin/python benchmarks/bag_throughput.py [--dataroot DIR] [--scenes 1] [--duration 20]
        [--width 1600] [--height 900] [--rate 50] [--compression zstd]

Generates a synthetic dataset (or uses ``--dataroot``), converts all its scenes to an MCAP bag and
prints the input read (images + point clouds) and the bag written in MB/s, keyframes/s and how
many times faster than real time. Then replays the bag at ``--rate`` times real time with no
subscriber (the player's own cost: reading, /clock, publishing) and prints the achieved speed.
Wall and CPU seconds are both printed: on a shared machine the CPU time is the fairer figure.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from machine import describe_machine

from occvla_ros.bags.nuscenes_to_bag import convert
from occvla_ros.data.synth import SynthConfig, generate_dataset


def blob_megabytes(dataroot: Path) -> float:
    return sum(p.stat().st_size for p in dataroot.glob("s*/*/*") if p.is_file()) / 1e6


def timed(function, *args, **kwargs):
    started, cpu_started = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started, time.process_time() - cpu_started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataroot", type=Path, help="existing dataset (default: generate one)")
    parser.add_argument("--scenes", type=int, default=1)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--rate", type=float, default=50.0, help="replay speed asked for")
    parser.add_argument("--compression", choices=("zstd", "none"), default="zstd")
    args = parser.parse_args()
    print(describe_machine())
    with tempfile.TemporaryDirectory() as scratch:
        dataroot = args.dataroot
        if dataroot is None:
            dataroot = Path(scratch) / "nuscenes"
            generate_dataset(
                dataroot,
                SynthConfig(
                    num_scenes=args.scenes, scene_duration_s=args.duration,
                    image_width=args.width, image_height=args.height,
                ),
            )  # fmt: skip
        bag = Path(scratch) / "bag"
        report, wall, cpu = timed(convert, dataroot, "v1.0-mini", bag, compression=args.compression)
        read_mb = blob_megabytes(dataroot)
        bag_mb = sum(p.stat().st_size for p in bag.iterdir()) / 1e6
        print(
            f"convert ({args.compression}): {len(report.scenes)} scenes, {report.duration_s:.1f} s "
            f"of data, {report.keyframes} keyframes, {sum(report.messages.values())} messages; "
            f"read {read_mb:.0f} MB, wrote {bag_mb:.0f} MB"
        )
        print(
            f"  {wall:.1f} s wall ({cpu:.1f} s CPU): {read_mb / wall:.0f} MB/s read, "
            f"{bag_mb / wall:.0f} MB/s written, {report.keyframes / wall:.1f} keyframes/s, "
            f"{report.duration_s / wall:.1f}x real time"
        )
        replay(bag, report, bag_mb, args.rate)


def replay(bag: Path, report, bag_mb: float, rate: float) -> None:
    import rclpy

    from occvla_ros.ros.bag_player import play

    rclpy.init()
    try:
        played, wall, cpu = timed(play, bag, rate=rate, delay_s=0.0)
    finally:
        rclpy.try_shutdown()
    print(
        f"play at --rate {rate:g}, no subscriber: {sum(played.published.values())} messages in "
        f"{wall:.1f} s wall ({cpu:.1f} s CPU): {bag_mb / wall:.0f} MB/s, "
        f"{report.keyframes / wall:.1f} keyframes/s, {report.duration_s / wall:.1f}x real time"
    )


if __name__ == "__main__":
    main()
