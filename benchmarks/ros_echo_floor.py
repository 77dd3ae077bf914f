"""The rclpy transport floor for one camera set, with glibc's malloc defaults and fixed thresholds.

    .venv/bin/python benchmarks/ros_echo_floor.py [--sets 100] [--rounds 2]

An echo node in another process subscribes to six camera topics (sensor-data QoS, as the planner
does) and answers each complete set with its header; this process publishes the six 1600x900
JPEGs of ros_latency.py and times the round trip. No decoding, no model: what any Python node
pays to receive 3 MB per set. The two allocator settings alternate, each in a fresh pair of
processes (``occvla_ros.runtime.heap`` cannot be undone in a process). Per received image, the
echo process counts its page faults and its executor thread's CPU time (rclpy taking and
converting the message, and the callback); this process counts its CPU time per publish.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from machine import describe_machine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ros_latency import REPO_ROOT, nuscenes_sized_jpegs  # also sets the DDS environment

TOPICS = [f"/echo_floor/camera_{index}" for index in range(6)]
REPLY_TOPIC = "/echo_floor/reply"


def apply(mode: str) -> None:
    if mode == "fixed":
        from occvla_ros.runtime.heap import keep_frame_buffers_in_heap

        if not keep_frame_buffers_in_heap():
            sys.exit("mallopt refused the thresholds")


def echo(mode: str) -> None:
    """Answer each complete set; the reply's frame_id carries the page faults and the CPU time
    (ns) of this process's executor thread from the set's first image callback to its last."""
    apply(mode)
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage
    from std_msgs.msg import Header

    rclpy.init()
    node = rclpy.create_node("echo_floor")
    reply = node.create_publisher(Header, REPLY_TOPIC, 10)
    received: dict[int, int] = {}
    first: dict[int, tuple[int, int]] = {}  # stamp -> (faults, thread CPU ns) at its first image

    def on_image(message) -> None:
        now = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.thread_time_ns())
        key = message.header.stamp.sec
        first.setdefault(key, now)
        received[key] = received.get(key, 0) + 1
        if received[key] == 6:  # from the first callback to this one: 5 images taken
            del received[key]
            faults, cpu_ns = (a - b for a, b in zip(now, first.pop(key), strict=True))
            reply.publish(Header(stamp=message.header.stamp, frame_id=f"{faults} {cpu_ns}"))

    for topic in TOPICS:
        node.create_subscription(CompressedImage, topic, on_image, qos_profile_sensor_data)
    with contextlib.suppress(KeyboardInterrupt, ExternalShutdownException):  # terminate()
        rclpy.spin(node)


def measure(mode: str, sets: int) -> None:
    """Print 'round-trip median ms, faults per image, sets, CPU ms per image taken by the echo's
    executor thread, CPU ms per publish here' for one allocator mode."""
    apply(mode)
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage
    from std_msgs.msg import Header

    from tests.support.ros import RosProbe

    echo_process = subprocess.Popen(
        [sys.executable, __file__, "--echo", mode], cwd=REPO_ROOT, stderr=subprocess.DEVNULL
    )
    probe = RosProbe()
    try:
        publishers = [
            probe.node.create_publisher(CompressedImage, topic, qos_profile_sensor_data)
            for topic in TOPICS
        ]
        replies: list[Header] = []
        reply = probe.node.create_subscription(Header, REPLY_TOPIC, replies.append, 10)
        messages = [
            CompressedImage(format="jpeg", data=array.array("B", jpeg))
            for jpeg in nuscenes_sized_jpegs().values()
        ]
        if not (
            probe.wait_for_subscribers(publishers[-1], 1, 60.0)
            and probe.wait_for_publishers(reply, 1, 60.0)
        ):
            sys.exit("the echo node did not connect")
        probe.spin_for(1.0)
        round_trips, faults, take_ms, publish_ms = [], [], [], []
        for index in range(sets + 5):  # the first five warm up
            for message in messages:
                message.header.stamp.sec = 1000 + index
            start, start_cpu = time.perf_counter(), time.thread_time()
            for publisher, message in zip(publishers, messages, strict=True):
                publisher.publish(message)
            published_cpu = time.thread_time() - start_cpu
            arrived = probe.spin_until(
                lambda i=index: any(r.stamp.sec == 1000 + i for r in replies), 5.0
            )
            if arrived and index >= 5:
                round_trips.append((time.perf_counter() - start) * 1e3)
                set_faults, set_cpu_ns = map(int, replies[-1].frame_id.split())
                faults.append(set_faults / 5)
                take_ms.append(set_cpu_ns / 5 * 1e-6)
                publish_ms.append(published_cpu / 6 * 1e3)
            probe.spin_for(0.03)
        trip, fault, take, publish = (
            np.median(values) for values in (round_trips, faults, take_ms, publish_ms)
        )
        print(f"{trip:.2f} {fault:.1f} {len(round_trips)} {take:.3f} {publish:.3f}")
    finally:
        probe.close()
        echo_process.terminate()
        echo_process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--echo", choices=("defaults", "fixed"), help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=("defaults", "fixed"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo:
        return echo(args.echo)
    if args.measure:
        return measure(args.measure, args.sets)
    print(describe_machine())
    print(
        "allocator            round trip (median)  page faults per image  sets"
        "  CPU per image: taken by the echo / published here"
    )
    for _ in range(args.rounds):
        for mode in ("defaults", "fixed"):
            result = subprocess.run(
                [sys.executable, __file__, "--measure", mode, "--sets", str(args.sets)],
                cwd=REPO_ROOT, capture_output=True, text=True, check=True,
            )  # fmt: skip
            median_ms, faults, count, take_ms, publish_ms = result.stdout.split()
            label = "glibc defaults" if mode == "defaults" else "fixed thresholds"
            print(
                f"{label:20s} {float(median_ms):8.2f} ms {float(faults):17.1f} {int(count):10d}"
                f"  {float(take_ms):8.3f} ms / {float(publish_ms):.3f} ms"
            )


if __name__ == "__main__":
    main()
