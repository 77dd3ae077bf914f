"""End-to-end latency of planner_node vs the bare Planner call, side by side in one run.

    .venv/bin/python benchmarks/ros_latency.py [--checkpoint DIR] [--sets 20] [--stagger-ms 0]
                                               [--malloc-defaults] [--echo-floor]

Per iteration (nothing else running in between): publish six 1600x900 JPEG cameras + odometry
from this process and time until the Path arrives here (camera stamp -> Path received in another
process), then call ``Planner.plan`` in this process on the same JPEG bytes. Occupancy off. Without
--checkpoint a randomly initialised tiny checkpoint is saved to a temporary directory.

The odometry message of the instant goes out first, outside the timed span: it is not a camera,
and a real odometry stream (50-100 Hz, its own driver) has delivered it by the time the cameras'
images are encoded. (Publishing this Odometry from Python takes about 0.45 ms.) By default the
six images then go out back to back and the time runs from building the first. With
``--stagger-ms X`` they go out X ms apart, as on a rig whose cameras fire in turn (nuScenes: about
40 ms from the first to the last), and the time runs from the last one's publish: the latency a
plan has after its last image. ``--malloc-defaults`` runs the node and this process with glibc's
default malloc thresholds and arena count instead of ``occvla_ros.runtime.heap``'s.

``--echo-floor`` adds a third timing to each iteration: the same six images published to
``ros_echo_floor.py``'s echo node in a third process, which answers each complete set without
decoding, timed from building the first message to the answer. That is the transport's own round
trip, measured beside the node's overhead in the same run.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
from occvla_ros.runtime.heap import limit_malloc_arenas

# The bare call runs with the node's allocator settings: like the node's module, this caps the
# arenas before numpy's threads fix glibc's limit (--malloc-defaults, parsed later: glibc's count).
if "--malloc-defaults" not in sys.argv:
    limit_malloc_arenas()

import numpy as np
from machine import describe_machine

PROFILE = str(REPO_ROOT / "config" / "fastdds.xml")
os.environ.update(
    {
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_DOMAIN_ID": os.environ.get("ROS_DOMAIN_ID", str(random.randint(101, 200))),
        # Only the current name: with the deprecated FASTRTPS_... too, Fast DDS warns and fails
        # to load the profile a second time (occvla_ros.ros.node_set.dds_environment).
        "FASTDDS_DEFAULT_PROFILES_FILE": PROFILE,
        "HF_HUB_OFFLINE": "1",
    }
)


# glibc's own arena limit on 64-bit machines, which the node's limit_malloc_arenas() replaces.
GLIBC_DEFAULT_ARENAS = {"MALLOC_ARENA_MAX": str(8 * (os.cpu_count() or 1))}


def nuscenes_sized_jpegs(seed: int = 0) -> dict[str, bytes]:
    import cv2

    from occvla_ros.constants import CAMERA_NAMES

    rng = np.random.default_rng(seed)
    jpegs = {}
    for name in CAMERA_NAMES:
        image = cv2.resize(rng.integers(0, 255, (45, 80, 3), dtype=np.uint8), (1600, 900))
        image = cv2.add(image, rng.integers(0, 30, image.shape, dtype=np.uint8))  # texture
        jpegs[name] = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    return jpegs


def prepare_checkpoint(checkpoint: str | None) -> Path:
    if checkpoint:
        return Path(checkpoint)
    from tests.runtime.tiny_checkpoint import save_tiny_checkpoint

    return save_tiny_checkpoint(Path(tempfile.mkdtemp(prefix="occvla-bench-")) / "tiny")


def start_node(
    checkpoint: Path, log_path: Path, *parameters: str, environment: dict[str, str] | None = None
) -> subprocess.Popen:
    command = [sys.executable, "-m", "occvla_ros.ros.planner_node", "--ros-args"]
    command += [
        "-r",
        "__node:=occvla_planner",
        "--params-file",
        str(REPO_ROOT / "config/planner.yaml"),
    ]
    for parameter in (f"checkpoint:={checkpoint}", "device:=cpu", *parameters):
        command += ["-p", parameter]
    return subprocess.Popen(
        command,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
        env=os.environ | (environment or {}),
    )


@contextlib.contextmanager
def running_planner(checkpoint_argument: str | None, *, malloc_defaults: bool = False):
    """A started planner_node and a connected probe: (checkpoint, node, probe, rig, outputs).

    The rig publishes nuScenes-sized JPEGs; everything is stopped on exit. ``malloc_defaults``
    starts the node with ``fixed_malloc_thresholds:=false`` and glibc's default arena count.
    """
    from tests.ros.rig import CameraRig, Outputs
    from tests.support.ros import RosProbe

    checkpoint = prepare_checkpoint(checkpoint_argument)
    log_path = Path(tempfile.mkdtemp(prefix="occvla-bench-log-")) / "planner.log"
    node = start_node(
        checkpoint,
        log_path,
        f"fixed_malloc_thresholds:={str(not malloc_defaults).lower()}",
        environment=GLIBC_DEFAULT_ARENAS if malloc_defaults else None,
    )
    probe = RosProbe()
    try:
        rig, outputs = CameraRig(probe), Outputs(probe)
        if not rig.wait_for_node() or not probe.spin_until(
            lambda: "ready:" in log_path.read_text(errors="replace"), 120.0
        ):
            sys.exit("planner_node did not start:\n" + log_path.read_text(errors="replace"))
        # array.array: a CompressedImage takes it as is; from bytes it costs ~1.1 ms per 500 kB
        # image in this Python process (a per-element conversion no C++ camera driver pays).
        rig.jpegs = {name: array.array("B", jpeg) for name, jpeg in nuscenes_sized_jpegs().items()}
        yield checkpoint, node, probe, rig, outputs
    finally:
        probe.close()
        node.terminate()
        node.wait(20)


@contextlib.contextmanager
def echo_round_trip(probe, rig, malloc_defaults: bool):
    """A started ros_echo_floor.py echo node; yields a function timing one set's round trip (ms,
    None when no answer came) from building its first camera message to the answer."""
    from rclpy.qos import qos_profile_sensor_data
    from ros_echo_floor import REPLY_TOPIC, TOPICS
    from sensor_msgs.msg import CompressedImage
    from std_msgs.msg import Header

    from occvla_ros.constants import CAMERA_NAMES
    from tests.ros.rig import SECOND

    mode = "defaults" if malloc_defaults else "fixed"
    echo = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "ros_echo_floor.py"), "--echo", mode],
        cwd=REPO_ROOT, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    publishers = [
        probe.node.create_publisher(CompressedImage, topic, qos_profile_sensor_data)
        for topic in TOPICS
    ]
    answers: list[Header] = []
    answer_subscription = probe.node.create_subscription(Header, REPLY_TOPIC, answers.append, 10)
    try:
        if not (
            probe.wait_for_subscribers(publishers[-1], 1, 60.0)
            and probe.wait_for_publishers(answer_subscription, 1, 60.0)
        ):
            sys.exit("the echo node did not connect")
        probe.spin_for(1.0)

        def time_one(index: int) -> float | None:
            second = 100_000 + index  # the echo matches a set's images by their whole seconds
            # After the bare call, as between ros_echo_floor.py's sets: this process's PyTorch
            # threads go idle before the images go out.
            probe.spin_for(0.03)
            start = time.perf_counter()
            for name, publisher in zip(CAMERA_NAMES, publishers, strict=True):
                publisher.publish(rig.camera_message(name, second * SECOND))
            answered = probe.spin_until(
                lambda: any(answer.stamp.sec == second for answer in answers), 5.0
            )
            return (time.perf_counter() - start) * 1e3 if answered else None

        yield time_one
    finally:
        echo.terminate()
        try:
            echo.wait(10)
        except subprocess.TimeoutExpired:
            echo.kill()


def node_value(outputs, key: str) -> str:
    """The latest value of ``key`` in the planner's /diagnostics status, as the node reports it."""
    for status in reversed(outputs.statuses):
        for pair in status.values:
            if pair.key == key:
                return pair.value
    return "n/a"


def publish_cameras(rig, stamp_ns: int, stagger_s: float) -> tuple[float, float]:
    """Odometry, then the cameras ``stagger_s`` apart: perf_counter() when the first camera
    message is built and when the last one is published."""
    from occvla_ros.constants import CAMERA_NAMES

    rig.publish_odometry(stamp_ns)
    first_start = time.perf_counter()
    for name in CAMERA_NAMES:
        if stagger_s > 0:
            time.sleep(stagger_s)
        message = rig.camera_message(name, stamp_ns)
        last_start = time.perf_counter()
        rig.cameras[name].publish(message)
    return first_start, last_start


def summary(values_ms: list[float]) -> str:
    p50, p90 = np.percentile(values_ms, [50, 90])
    return f"median {p50:7.1f} ms  p90 {p90:7.1f} ms  (n={len(values_ms)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint")
    parser.add_argument("--sets", type=int, default=20)
    parser.add_argument("--stagger-ms", type=float, default=0.0)
    parser.add_argument(
        "--malloc-defaults",
        action="store_true",
        help="glibc's malloc defaults in the node and in this process (the bare call's)",
    )
    parser.add_argument(
        "--echo-floor",
        action="store_true",
        help="also time each set's round trip through ros_echo_floor.py's echo node",
    )
    args = parser.parse_args()
    print(describe_machine())

    from occvla_ros.constants import CAMERA_NAMES
    from occvla_ros.ros.conversions import stamp_to_ns
    from occvla_ros.ros.parameters import PLANNER_PARAMETERS
    from occvla_ros.runtime.heap import keep_frame_buffers_in_heap
    from occvla_ros.runtime.planner import JPEG, CameraFrame, Planner
    from tests.ros.rig import SECOND

    started = running_planner(args.checkpoint, malloc_defaults=args.malloc_defaults)
    with (
        started as (checkpoint, _, probe, rig, outputs),
        (
            echo_round_trip(probe, rig, args.malloc_defaults)
            if args.echo_floor
            else contextlib.nullcontext()
        ) as echo,
    ):
        planner = Planner(checkpoint, device="cpu")
        if not args.malloc_defaults:
            keep_frame_buffers_in_heap(PLANNER_PARAMETERS["heap_reserve_mib"][0] << 20)
        frames = {name: CameraFrame(bytes(rig.jpegs[name]), JPEG) for name in CAMERA_NAMES}
        node_ms, bare_ms, echo_ms = [], [], []
        for index in range(args.sets + 2):  # the first two warm all paths up
            stamp_ns = int((5000 + index * 0.5) * SECOND)
            first_start, last_start = publish_cameras(rig, stamp_ns, args.stagger_ms * 1e-3)
            start = last_start if args.stagger_ms > 0 else first_start
            arrived = probe.spin_until(
                lambda s=stamp_ns: any(stamp_to_ns(p.header.stamp) == s for p in outputs.paths),
                30.0,
            )
            elapsed = (time.perf_counter() - start) * 1e3
            bare_start = time.perf_counter()
            planner.plan(frames, (5.0, 0.0, 0.0))
            bare = (time.perf_counter() - bare_start) * 1e3
            echoed = echo(index) if echo else None
            if index >= 2 and arrived:
                node_ms.append(elapsed)
                bare_ms.append(bare)
                if echoed is not None:
                    echo_ms.append(echoed)
        node_median, bare_median = np.median(node_ms), np.median(bare_ms)
        print(f"node end-to-end  : {summary(node_ms)}")
        print(f"bare Planner.plan: {summary(bare_ms)}")
        print(
            f"node overhead    : median {node_median - bare_median:+.1f} ms "
            f"({100 * (node_median / bare_median - 1):+.1f} %)"
        )
        if echo_ms:
            echo_median = np.median(echo_ms)
            print(f"echo round trip  : {summary(echo_ms)}")
            print(f"overhead - echo  : median {node_median - bare_median - echo_median:+.1f} ms")
        print(f"lost sets        : {args.sets - len(node_ms)}")
        probe.spin_for(1.5)  # one more diagnostics message
        print(
            f"node's own view  : inference {node_value(outputs, 'inference ms')} ms, set complete"
        )
        print(f"                   -> Path published {node_value(outputs, 'end-to-end ms')} ms")
        counters = ("sets", "dropped_sets", "plans", "no_odometry", "bad_images", "sync late")
        print("node counters    : " + ", ".join(f"{k} {node_value(outputs, k)}" for k in counters))


if __name__ == "__main__":
    main()
