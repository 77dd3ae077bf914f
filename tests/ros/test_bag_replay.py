"""A converted synthetic nuScenes scene replayed (`occvla bag play`) into the launched planner.

Separate processes: the planner (through `occvla launch`, on simulated time), the bag player, and
this test's probe. In real time and in lockstep (with the replay recorded and turned into a
report); without a planner; the first second's pacing; /tf and the latched /tf_static.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections import defaultdict

import pytest

from occvla_ros.bags.nuscenes_to_bag import convert
from occvla_ros.constants import CAMERA_NAMES, GROUND_TRUTH_TOPIC, NUM_WAYPOINTS, camera_image_topic
from occvla_ros.evaluation.replay import score_replay
from occvla_ros.ros.bag_player import message_class, path_to_stamped
from occvla_ros.ros.conversions import stamp_to_ns
from tests.ros.rig import Outputs
from tests.support.ros import ProcessHandle, RosProbe, python_module_command

pytestmark = [pytest.mark.ros, pytest.mark.slow]
SCENE = "scene-0061"


def test_a_converted_scene_replays_into_the_planner(
    installed_share_dir, tiny_checkpoint, synthetic_dataroot, tmp_path
):
    from diagnostic_msgs.msg import DiagnosticArray
    from nav_msgs.msg import Path
    from rosbags.rosbag2 import Reader

    bag = tmp_path / "bag"
    report = convert(synthetic_dataroot, "v1.0-mini", bag, scene_names=[SCENE])
    with Reader(bag) as reader:
        front = [c for c in reader.connections if c.topic == camera_image_topic("CAM_FRONT")]
        camera_stamps = {stamp for _, stamp, _ in reader.messages(connections=front)}
    probe = RosProbe()
    outputs = Outputs(probe)
    ground_truth = []
    probe.node.create_subscription(Path, GROUND_TRUTH_TOPIC, ground_truth.append, 50)
    diagnostics = []
    probe.node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 50)
    launcher = ProcessHandle(
        [
            *python_module_command("occvla_ros.cli", "launch"),
            f"checkpoint:={tiny_checkpoint}",
            "device:=cpu",
            "use_sim_time:=true",
            f"config:={installed_share_dir / 'config' / 'replay.yaml'}",
        ],
        tmp_path / "launch.log",
    )
    try:
        assert probe.spin_until(lambda: "ready:" in launcher.log_text(), 60.0), launcher.log_text()
        player = ProcessHandle(
            [
                *python_module_command("occvla_ros.cli", "bag", "play", str(bag)),
                *("--score", "/occvla_planner/trajectory"),
                *(
                    "--wait-for",
                    GROUND_TRUTH_TOPIC,
                    "/odom",
                    *map(camera_image_topic, CAMERA_NAMES),
                ),
            ],
            tmp_path / "play.log",
        )
        assert probe.spin_until(lambda: player.returncode is not None, 60.0), player.log_text()
        ended_with = len(diagnostics)
        probe.spin_for(2.0)  # the last plans
        # /clock has stopped with the bag; the status still comes (steady-clock timer).
        assert len(diagnostics) > ended_with

        def counters() -> dict[str, int]:
            values = {kv.key: kv.value for kv in diagnostics[-1].status[0].values}
            keys = ("sets", "dropped_sets", "plans", "failed_plans", "no_odometry", "sync late")
            return {key: int(values[key]) for key in keys}

        def settled() -> bool:  # every set planned or counted, and every plan received here
            c = counters()
            outcomes = c["plans"] + c["dropped_sets"] + c["failed_plans"] + c["no_odometry"]
            return outcomes == c["sets"] and len(outputs.paths) == c["plans"]

        assert probe.spin_until(settled, 10.0), (counters(), len(outputs.paths))
        # How many sets complete depends on the load as well: config/replay.yaml's camera
        # queues (reliable, depth 50) hold about 4 s of images, and with the CPU short a plan can
        # take longer (50 of 91 sets completed beside a 3B-parameter benchmark). On any machine
        # no set is counted twice, and each one has an outcome (settled above).
        assert 1 <= counters()["sets"] <= len(camera_stamps), counters()
        if message_class("tf2_msgs/msg/TFMessage") is None:  # no ROS install
            assert "not published: /tf" in player.log_text()
        # Reliable: every ground-truth path arrives.
        assert len(ground_truth) == report.messages[GROUND_TRUTH_TOPIC]
        stamps = [stamp_to_ns(path.header.stamp) for path in outputs.paths]
        # How many 12 Hz sets get a plan depends on the machine's load (91 of 91 on an idle
        # 2-core VM, 17 beside other jobs): the rest were replaced by newer sets while a plan ran,
        # and counted (settled above). Lockstep replay is the load-independent score.
        # Only the scene's first set may lack odometry: its pose has no predecessor, so the bag
        # has no causal twist for it (see bags/nuscenes_to_bag.py).
        assert counters()["failed_plans"] == 0 and counters()["no_odometry"] <= 1, counters()
        assert len(stamps) >= 1, launcher.log_text()
        assert set(stamps) <= camera_stamps and stamps == sorted(stamps)
        assert all(len(path.poses) == NUM_WAYPOINTS for path in outputs.paths)
        # use_sim_time: the planner's clock is the bag's.
        diagnostics_ns = [stamp_to_ns(array.header.stamp) for array in diagnostics]
        assert any(min(camera_stamps) <= t <= max(camera_stamps) + 10**9 for t in diagnostics_ns)
        assert launcher.returncode is None, launcher.log_text()
        # The player's score equals one computed here from the Paths this probe received.
        expected = score_replay(
            [path_to_stamped(p) for p in outputs.paths],
            [path_to_stamped(p) for p in ground_truth],
            tolerance_ns=50_000_000,
        )
        assert expected.ground_truths > 0
        # How many match depends on the sets dropped; none matched is an error exit, named.
        if expected.matched:
            assert player.returncode == 0, player.log_text()
            assert expected.summary() in player.log_text(), player.log_text()
        else:
            assert player.returncode == 1, player.log_text()
            assert "matched any of the" in player.log_text(), player.log_text()
    finally:
        code = launcher.stop()
        probe.close()
    assert code == 0, launcher.log_text()


def launch_planner(checkpoint, share_dir, log_path, *extra: str) -> ProcessHandle:
    return ProcessHandle(
        [
            *python_module_command("occvla_ros.cli", "launch"),
            f"checkpoint:={checkpoint}",
            "device:=cpu",
            "use_sim_time:=true",
            f"config:={share_dir / 'config' / 'replay.yaml'}",
            *extra,
        ],
        log_path,
    )


def read_recording(path) -> tuple[set[str], dict[str, list]]:
    """Chunk compressions and the decoded messages by topic, with the independent reader."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    messages = defaultdict(list)
    with path.open("rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        compressions = {chunk.compression for chunk in reader.get_summary().chunk_indexes}
        for _, channel, message, decoded in reader.iter_decoded_messages(log_time_order=True):
            messages[channel.topic].append((message.log_time, decoded))
    return compressions, messages


# Lockstep waits for every plan, so this test takes as long as the planner needs: seconds on a
# quiet machine, minutes beside other CPU-bound work (the first plan with occupancy once took
# over 30 s at a load average of 15).
@pytest.mark.timeout(900)
def test_lockstep_scores_every_keyframe_and_records_the_nodes_outputs(
    installed_share_dir, tiny_checkpoint, synthetic_dataroot, tmp_path
):
    bag, recording = tmp_path / "bag", tmp_path / "replay.mcap"
    report = convert(synthetic_dataroot, "v1.0-mini", bag, scene_names=[SCENE], keyframes_only=True)
    sets = report.messages[camera_image_topic("CAM_FRONT")]
    probe = RosProbe()
    launcher = launch_planner(
        tiny_checkpoint, installed_share_dir, tmp_path / "launch.log", "occupancy:=true"
    )
    try:
        assert probe.spin_until(lambda: "ready:" in launcher.log_text(), 60.0), launcher.log_text()
        player = ProcessHandle(
            [
                *python_module_command("occvla_ros.cli", "bag", "play", str(bag), "--lockstep"),
                *("--lockstep-timeout", "300", "--wait-timeout", "120"),
                *("--score", "/occvla_planner/trajectory", "--record", str(recording)),
                *("--wait-for", "/odom", *map(camera_image_topic, CAMERA_NAMES)),
            ],
            tmp_path / "play.log",
        )
        assert probe.spin_until(lambda: player.returncode is not None, 800.0), player.log_text()
        assert player.returncode == 0, player.log_text()
    finally:
        code = launcher.stop()
        probe.close()
    assert code == 0, launcher.log_text()
    log = player.log_text()
    # Every set answered: planned, or skipped for a reason the planner counts (the bag's first
    # pose has no odometry, so its first set has none within the tolerance).
    [skipped] = re.findall(rf"lockstep: {sets} camera sets, (\d+) skipped by the planner", log)
    assert int(skipped) <= 1 and ", 0 not answered within" in log, log
    compressions, messages = read_recording(recording)
    assert compressions == {"zstd"}
    assert not list(tmp_path.glob(".replay.mcap.partial*"))
    # The bag's inputs (/tf too where tf2_msgs is not built and it is not published) ...
    inputs = (*map(camera_image_topic, CAMERA_NAMES), "/odom", GROUND_TRUTH_TOPIC, "/LIDAR_TOP")
    for topic in (*inputs, "/tf", "/tf_static"):
        assert len(messages[topic]) == report.messages[topic], topic
    # ... and every output of the nodes: one plan and meta-action per camera set.
    plans = [path for _, path in messages["/occvla_planner/trajectory"]]
    assert len(plans) == len(messages["/occvla_planner/meta_action"]) == sets - int(skipped)
    assert messages["/occvla_occupancy/markers"] and messages["/diagnostics"]
    assert all(len(path.poses) == NUM_WAYPOINTS for path in plans)
    # The player's score, from the plans in the recording: every scorable keyframe matched.
    expected = score_replay(
        [path_to_stamped(p) for p in plans],
        [path_to_stamped(p) for _, p in messages[GROUND_TRUTH_TOPIC]],
        tolerance_ns=50_000_000,
    )
    assert expected.ground_truths - int(skipped) <= expected.matched <= expected.ground_truths
    assert expected.summary() in log, log
    # The report: every scored keyframe in the table, one video frame per plan.
    import cv2

    baseline = tmp_path / "ego_mlp"
    train = subprocess.run(
        [*python_module_command("occvla_ros.cli", "train-ego-baseline"),
         *("--dataroot", str(synthetic_dataroot), "--split", "mini_train", "--epochs", "5"),
         *("--cache-dir", str(tmp_path / "cache"), "--out", str(baseline))],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    report_dir = tmp_path / "report"
    made = subprocess.run(
        [*python_module_command("occvla_ros.cli", "replay-report", str(recording)),
         *("--dataroot", str(synthetic_dataroot), "--baseline-checkpoint", str(baseline)),
         *("--out", str(report_dir))],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    summary = (report_dir / "summary.md").read_text()
    assert f"{expected.matched} of {expected.ground_truths} keyframes" in summary
    for name in ("OccVLA (published plans)", "ego-status MLP", "constant velocity"):
        assert f"| {name} |" in summary
    assert "- inference: p50 " in summary
    video = cv2.VideoCapture(str(report_dir / "replay.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == len(plans)
    assert cv2.imread(str(report_dir / "frame.png")) is not None


def test_a_replay_without_a_planner_fails_clearly(synthetic_dataroot, tmp_path):
    bag = tmp_path / "bag"
    convert(synthetic_dataroot, "v1.0-mini", bag, scene_names=[SCENE], keyframes_only=True)
    play = python_module_command("occvla_ros.cli", "bag", "play", str(bag))
    lockstep = subprocess.run(
        [*play, "--lockstep", "--wait-timeout", "1"], capture_output=True, text=True, timeout=120
    )
    assert lockstep.returncode == 2, lockstep.stderr
    assert "no planner: nothing publishes /occvla_planner/trajectory" in lockstep.stderr
    scored = subprocess.run(
        [*play, "--rate", "20", "--score", "/occvla_planner/trajectory"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert scored.returncode == 1, scored.stderr
    assert "nothing scored" in scored.stderr and "nan" not in scored.stdout + scored.stderr


def test_the_first_second_is_played_in_real_time_not_in_a_burst(synthetic_dataroot, tmp_path):
    """The player imports what it needs before its clock starts (torch through an import inside
    the loop once held the first 3.4 s back, then published them at once)."""
    from sensor_msgs.msg import CompressedImage

    bag = tmp_path / "bag"
    convert(synthetic_dataroot, "v1.0-mini", bag, scene_names=[SCENE])
    probe = RosProbe()
    arrivals = []  # (arrival monotonic s, stamp ns)
    topic = camera_image_topic("CAM_FRONT")
    probe.node.create_subscription(
        CompressedImage, topic,
        lambda m: arrivals.append((time.monotonic(), stamp_to_ns(m.header.stamp))), 100,
    )  # fmt: skip
    player = ProcessHandle(
        [*python_module_command("occvla_ros.cli", "bag", "play", str(bag)),
         "--delay", "0", "--wait-for", topic],
        tmp_path / "play.log",
    )  # fmt: skip
    try:
        first_second = lambda: [a for a in arrivals if a[1] - arrivals[0][1] <= 1_000_000_000]  # noqa: E731
        assert probe.spin_until(lambda: len(first_second()) < len(arrivals), 60.0), (
            player.log_text()
        )
    finally:
        player.stop()
        probe.close()
    played = first_second()
    stamp_span_s = (played[-1][1] - played[0][1]) * 1e-9
    arrival_span_s = played[-1][0] - played[0][0]
    assert len(played) >= 10 and stamp_span_s > 0.8
    # In real time the first second's images arrive over about a second; a burst delivers them
    # together. A loaded machine delays messages, which only widens the arrival span.
    assert arrival_span_s >= 0.5 * stamp_span_s, (arrival_span_s, stamp_span_s)


def test_the_player_publishes_tf_and_latched_tf_static(synthetic_dataroot, tmp_path):
    tf_message = message_class("tf2_msgs/msg/TFMessage")
    if tf_message is None:
        pytest.skip("tf2_msgs is not importable here: build it with `make tf2-msgs` (cmake, C++)")
    from rclpy.qos import DurabilityPolicy, QoSProfile

    bag = tmp_path / "bag"
    convert(synthetic_dataroot, "v1.0-mini", bag, scene_names=[SCENE], keyframes_only=True)
    probe = RosProbe()
    received = defaultdict(list)
    probe.node.create_subscription(tf_message, "/tf", received["/tf"].append, 100)
    player = ProcessHandle(
        [*python_module_command("occvla_ros.cli", "bag", "play", str(bag)), "--wait-for", "/tf"],
        tmp_path / "play.log",
    )  # fmt: skip
    try:
        assert probe.spin_until(lambda: received["/tf"], 60.0), player.log_text()
        # Subscribed after it was published, while the player runs: latched, it still arrives.
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        probe.node.create_subscription(
            tf_message, "/tf_static", received["/tf_static"].append, latched
        )
        assert probe.spin_until(lambda: received["/tf_static"], 20.0), player.log_text()
    finally:
        player.stop()
        probe.close()
    transform = received["/tf"][0].transforms[0]
    assert (transform.header.frame_id, transform.child_frame_id) == ("map", "base_link")
    frames = {tf.child_frame_id for tf in received["/tf_static"][0].transforms}
    assert frames == {*CAMERA_NAMES, "LIDAR_TOP"}
