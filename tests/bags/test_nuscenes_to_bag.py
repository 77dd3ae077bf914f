"""nuScenes -> rosbag2 on the synthetic dataset, read back with the independent mcap reader."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from occvla_ros.bags.nuscenes_to_bag import convert
from occvla_ros.constants import (
    CAMERA_NAMES,
    GROUND_TRUTH_TOPIC,
    camera_image_topic,
    camera_info_topic,
)
from occvla_ros.data.nuscenes_loader import load_records
from occvla_ros.errors import ConfigError, DataError
from occvla_ros.geometry import quat_wxyz_to_yaw
from occvla_ros.runtime.ego import EgoStateEstimator, OdometrySample

SCENE = "scene-0061"


def tables(dataroot: Path) -> dict[str, list[dict]]:
    names = ("sample_data", "calibrated_sensor", "sensor", "ego_pose", "scene", "sample")
    return {n: json.loads((dataroot / "v1.0-mini" / f"{n}.json").read_text()) for n in names}


def scene_camera_data(dataroot: Path, scene_name: str) -> dict[str, list[dict]]:
    """Every camera sample_data of the scene by channel, in time order, from the raw tables."""
    t = tables(dataroot)
    scene = next(s for s in t["scene"] if s["name"] == scene_name)
    samples = {s["token"] for s in t["sample"] if s["scene_token"] == scene["token"]}
    sensors = {s["token"]: s["channel"] for s in t["sensor"]}
    channel_of = {c["token"]: sensors[c["sensor_token"]] for c in t["calibrated_sensor"]}
    by_channel = defaultdict(list)
    for data in t["sample_data"]:
        if data["sample_token"] in samples:
            by_channel[channel_of[data["calibrated_sensor_token"]]].append(data)
    return {c: sorted(v, key=lambda d: d["timestamp"]) for c, v in by_channel.items()}


def read_mcap(bag: Path) -> dict[str, list]:
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    [path] = bag.glob("*.mcap")
    messages = defaultdict(list)
    with path.open("rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        for _, channel, message, decoded in reader.iter_decoded_messages(log_time_order=True):
            messages[channel.topic].append((message.log_time, decoded))
    return messages


def stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def odometry_sample(message) -> OdometrySample:
    """What the planner node takes from a nav_msgs/Odometry message."""
    pose, twist = message.pose.pose, message.twist.twist
    q = pose.orientation
    return OdometrySample(
        stamp_ns(message.header),
        twist.linear.x,
        twist.angular.z,
        (pose.position.x, pose.position.y, pose.position.z),
        (q.w, q.x, q.y, q.z),
        message.header.frame_id,
    )


@pytest.fixture(scope="module")
def converted(synthetic_dataroot, tmp_path_factory):
    bag = tmp_path_factory.mktemp("bags") / "scene"
    report = convert(synthetic_dataroot, "v1.0-mini", bag, scene_names=[SCENE])
    return bag, report, read_mcap(bag)


def test_every_camera_image_is_in_the_bag_as_stored(converted, synthetic_dataroot):
    _, report, messages = converted
    calibrations = {c["token"]: c for c in tables(synthetic_dataroot)["calibrated_sensor"]}
    expected = scene_camera_data(synthetic_dataroot, SCENE)
    assert report.scenes == [SCENE] and not report.skipped_images
    for camera in CAMERA_NAMES:
        images, infos = messages[camera_image_topic(camera)], messages[camera_info_topic(camera)]
        assert len(images) == len(infos) == len(expected[camera]) > 20  # sweeps included
        for (log_ns, image), data in zip(images, expected[camera], strict=True):
            assert log_ns == stamp_ns(image.header) == data["timestamp"] * 1000
            assert image.header.frame_id == camera and image.format == "jpeg"
        middle = expected[camera][len(images) // 2]
        stored = (synthetic_dataroot / middle["filename"]).read_bytes()
        assert bytes(images[len(images) // 2][1].data) == stored
        info = infos[0][1]
        intrinsic = calibrations[expected[camera][0]["calibrated_sensor_token"]]["camera_intrinsic"]
        assert (info.width, info.height) == (384, 216) and info.distortion_model == "plumb_bob"
        np.testing.assert_allclose(np.reshape(info.k, (3, 3)), intrinsic)


def test_odometry_follows_the_ego_poses_and_gt_paths_the_loader(converted, synthetic_dataroot):
    _, report, messages = converted
    t = tables(synthetic_dataroot)
    poses = {p["token"]: p for p in t["ego_pose"]}
    front = scene_camera_data(synthetic_dataroot, SCENE)["CAM_FRONT"]
    odometry = messages["/odom"]
    # The first pose has no predecessor, so no twist: it is on /tf only.
    assert len(odometry) == len(front) - 1 == len(messages["/tf"]) - 1
    for (_, message), data in zip(odometry, front[1:], strict=True):
        pose = poses[data["ego_pose_token"]]
        position = message.pose.pose.position
        np.testing.assert_allclose([position.x, position.y], pose["translation"][:2])
        assert message.header.frame_id == "map" and message.child_frame_id == "base_link"
    records = load_records(synthetic_dataroot, "v1.0-mini", "all", scene_names=[SCENE])
    # The node's ego state and past trajectory from the bag's odometry are the loader's.
    estimator = EgoStateEstimator(tolerance_ns=20_000_000)
    pending = list(odometry)
    for record in records:
        stamp = record.timestamp_us * 1000
        while pending and stamp_ns(pending[0][1].header) <= stamp:
            estimator.add(odometry_sample(pending.pop(0)[1]))
        state = estimator.state_at(stamp)
        if record is records[0]:
            assert state is None  # no odometry yet: the node skips the set
            continue
        np.testing.assert_allclose(state.as_array(), record.ego_state, rtol=0, atol=1e-5)
        # The scene's first pose (no odometry message) is the one past position it lacks.
        first = record.past_mask & ~state.past_mask
        assert first.sum() <= 1 and (not first.any() or first[np.argmax(record.past_mask)])
        np.testing.assert_allclose(
            state.past_trajectory[state.past_mask], record.past_ego[state.past_mask], atol=1e-9
        )
    paths = messages[GROUND_TRUTH_TOPIC]
    with_future = [r for r in records if r.future_mask.any()]
    assert len(paths) == len(with_future) == report.messages[GROUND_TRUTH_TOPIC]
    for (_, path), record in zip(paths, with_future, strict=True):
        assert stamp_ns(path.header) == record.timestamp_us * 1000
        assert path.header.frame_id == "base_link"
        xy = np.array([[p.pose.position.x, p.pose.position.y] for p in path.poses])
        np.testing.assert_allclose(xy, record.future_ego[record.future_mask])
        heading = quat_wxyz_to_yaw([path.poses[0].pose.orientation.w, 0, 0,
                                    path.poses[0].pose.orientation.z])  # fmt: skip
        assert heading == pytest.approx(np.arctan2(xy[0, 1], xy[0, 0]), abs=1e-6)
    [(_, static)] = messages["/tf_static"]
    assert {tf.child_frame_id for tf in static.transforms} == {*CAMERA_NAMES, "LIDAR_TOP"}
    log_times = [log_ns for topic in messages.values() for log_ns, _ in topic]
    assert min(log_times) == front[0]["timestamp"] * 1000


def chunk_compressions(bag: Path) -> set[str]:
    from mcap.reader import make_reader

    [path] = bag.glob("*.mcap")
    with path.open("rb") as stream:
        summary = make_reader(stream).get_summary()
    return {chunk.compression for chunk in summary.chunk_indexes}


def test_chunks_are_zstd_and_lidar_clouds_are_the_stored_points(converted, synthetic_dataroot):
    bag, report, messages = converted
    assert chunk_compressions(bag) == {"zstd"}
    sweeps = scene_camera_data(synthetic_dataroot, SCENE)["LIDAR_TOP"]
    clouds = messages["/LIDAR_TOP"]
    assert len(clouds) == len(sweeps) == report.messages["/LIDAR_TOP"] > 5
    assert not report.skipped_clouds
    for (log_ns, cloud), data in zip(clouds, sweeps, strict=True):
        assert log_ns == stamp_ns(cloud.header) == data["timestamp"] * 1000
        assert cloud.header.frame_id == "LIDAR_TOP"
        assert [f.name for f in cloud.fields] == ["x", "y", "z", "intensity", "ring"]
        assert all(f.datatype == 7 for f in cloud.fields)  # FLOAT32
        stored = np.fromfile(synthetic_dataroot / data["filename"], dtype=np.float32)
        points = np.frombuffer(bytes(cloud.data), dtype=np.float32)
        assert cloud.width * cloud.point_step == len(cloud.data) and cloud.point_step == 20
        np.testing.assert_array_equal(points, stored)
    [(_, static)] = messages["/tf_static"]
    lidar = next(tf for tf in static.transforms if tf.child_frame_id == "LIDAR_TOP")
    assert lidar.header.frame_id == "base_link"


def test_uncompressed_and_zstd_choices(synthetic_dataroot, tmp_path):
    convert(synthetic_dataroot, "v1.0-mini", tmp_path / "plain", scene_names=[SCENE],
            keyframes_only=True, compression="none")  # fmt: skip
    assert chunk_compressions(tmp_path / "plain") == {""}
    with pytest.raises(ConfigError, match="use --storage mcap"):
        convert(synthetic_dataroot, "v1.0-mini", tmp_path / "sq", storage="sqlite3",
                compression="zstd")  # fmt: skip


def test_missing_blob_folders_are_all_named_before_work(synthetic_dataroot, tmp_path):
    dataroot = tmp_path / "copy"
    shutil.copytree(synthetic_dataroot, dataroot)
    shutil.rmtree(dataroot / "samples" / "CAM_BACK")
    shutil.rmtree(dataroot / "sweeps" / "CAM_FRONT")
    with pytest.raises(DataError, match="samples/CAM_BACK, sweeps/CAM_FRONT"):
        convert(dataroot, "v1.0-mini", tmp_path / "bag", scene_names=[SCENE])
    assert not (tmp_path / "bag").exists()
    # Keyframes only: the sweeps are not needed.
    with pytest.raises(DataError, match=r"blob folder\(s\) samples/CAM_BACK that"):
        convert(dataroot, "v1.0-mini", tmp_path / "bag", scene_names=[SCENE], keyframes_only=True)


def test_an_interrupted_conversion_leaves_nothing_that_blocks_the_rerun(
    synthetic_dataroot, tmp_path, monkeypatch
):
    from occvla_ros.bags import nuscenes_to_bag

    bag = tmp_path / "bag"

    def interrupted(path):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(nuscenes_to_bag, "read_point_cloud", interrupted)
        with pytest.raises(KeyboardInterrupt):
            convert(synthetic_dataroot, "v1.0-mini", bag, scene_names=[SCENE], keyframes_only=True)
    assert sorted(tmp_path.iterdir()) == []  # neither the bag nor the partial copy
    # A killed conversion (no clean-up) leaves its partial copy: the rerun replaces it.
    (tmp_path / ".bag.partial" / "bag").mkdir(parents=True)
    report = convert(synthetic_dataroot, "v1.0-mini", bag, scene_names=[SCENE], keyframes_only=True)
    assert report.messages["/LIDAR_TOP"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"]
    assert (bag / "metadata.yaml").is_file()


def test_close_gaps_starts_each_scene_after_the_previous_one(synthetic_dataroot, tmp_path):
    from rosbags.rosbag2 import Reader

    def widest_pause(bag: Path) -> tuple[int, int]:
        """(the stamp before, the stamp after) the longest pause between two messages."""
        with Reader(bag) as reader:
            stamps = sorted(stamp for _, stamp, _ in reader.messages())
        index = int(np.argmax(np.diff(stamps)))
        return stamps[index], stamps[index + 1]

    both = ["scene-0061", "scene-0103"]
    convert(synthetic_dataroot, "v1.0-mini", tmp_path / "apart", scene_names=both,
            keyframes_only=True)  # fmt: skip
    convert(synthetic_dataroot, "v1.0-mini", tmp_path / "closed", scene_names=both,
            keyframes_only=True, close_gaps_s=0.75)  # fmt: skip
    end, start = widest_pause(tmp_path / "closed")
    assert start - end == 750_000_000
    end_apart, start_apart = widest_pause(tmp_path / "apart")
    assert end == end_apart and start_apart - end_apart > 10**9  # the recordings lie apart
    with pytest.raises(ConfigError, match="gap between scenes must be positive"):
        convert(synthetic_dataroot, "v1.0-mini", tmp_path / "x", close_gaps_s=0.0)


def test_humble_sqlite3_bag_reads_back_with_rosbags(synthetic_dataroot, tmp_path):
    from rosbags.rosbag2 import Reader

    bag = tmp_path / "humble"
    convert(synthetic_dataroot, "v1.0-mini", bag, scene_names=[SCENE], storage="sqlite3",
            humble=True, keyframes_only=True)  # fmt: skip
    assert "version: 8" in (bag / "metadata.yaml").read_text()
    with Reader(bag) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        messages = [(stamp, c.topic) for c, stamp, _ in reader.messages()]
    stamps = [stamp for stamp, _ in messages]
    # At each instant the odometry is read (and played) before the images that complete a set.
    first_index = {}
    for index, message in enumerate(messages):
        first_index.setdefault(message, index)
    front = camera_image_topic("CAM_FRONT")
    image_stamps = [stamp for stamp, topic in first_index if topic == front]
    assert len(image_stamps) > 5
    # (The scene's first instant has no odometry: its pose has no twist yet.)
    assert (image_stamps[0], "/odom") not in first_index
    assert all(first_index[(s, "/odom")] < first_index[(s, front)] for s in image_stamps[1:])
    keyframes = sum(
        d["is_key_frame"] for d in scene_camera_data(synthetic_dataroot, SCENE)["CAM_BACK"]
    )
    assert counts[camera_image_topic("CAM_BACK")] == keyframes  # no sweeps
    assert stamps == sorted(stamps)


def test_a_missing_image_is_skipped_and_counted(synthetic_dataroot, tmp_path):
    dataroot = tmp_path / "copy"
    shutil.copytree(synthetic_dataroot, dataroot)
    victim = scene_camera_data(dataroot, SCENE)["CAM_BACK"][3]
    (dataroot / victim["filename"]).unlink()
    report = convert(dataroot, "v1.0-mini", tmp_path / "bag", scene_names=[SCENE])
    assert (
        len(report.skipped_images) == 1
        and victim["filename"].split("/")[-1] in report.skipped_images[0]
    )
    messages = read_mcap(tmp_path / "bag")
    assert (
        len(messages[camera_image_topic("CAM_BACK")])
        == len(messages[camera_image_topic("CAM_FRONT")]) - 1
    )


def test_bad_arguments_are_clear(synthetic_dataroot, tmp_path):
    with pytest.raises(ConfigError, match="no scene"):
        convert(synthetic_dataroot, "v1.0-mini", tmp_path / "a", scene_names=["scene-9999"])
    (tmp_path / "exists").mkdir()
    with pytest.raises(ConfigError, match="exists already"):
        convert(synthetic_dataroot, "v1.0-mini", tmp_path / "exists")
    with pytest.raises(DataError, match="no nuScenes tables"):
        convert(tmp_path, "v1.0-mini", tmp_path / "b")
    with pytest.raises(ConfigError, match="storage"):
        convert(synthetic_dataroot, "v1.0-mini", tmp_path / "c", storage="rosbag1")


def test_play_refuses_bad_arguments_clearly(converted, tmp_path):
    import subprocess
    import sys

    from occvla_ros.ros.bag_player import play

    bag, _, _ = converted
    with pytest.raises(ConfigError, match="rate"):
        play(bag, rate=0.0)
    with pytest.raises(DataError, match="not a rosbag2 directory"):
        play(tmp_path)
    with pytest.raises(ConfigError, match="looping replay cannot be recorded"):
        play(bag, loop=True, record=tmp_path / "replay.mcap")
    (tmp_path / "metadata.yaml").write_text("rosbag2_bagfile_information: {version: 99}\n")
    with pytest.raises(DataError, match="cannot read bag"):
        play(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "occvla_ros.cli", "bag", "play", str(bag), "--wait-for", "/nope"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "cannot wait for ['/nope']: not published from this bag" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_recording_refuses_a_bad_path_before_playing(converted, tmp_path):
    import rclpy

    from occvla_ros.ros.bag_player import play

    bag, _, _ = converted
    (tmp_path / "taken.mcap").write_text("a user's file\n")
    rclpy.init()
    try:
        with pytest.raises(ConfigError, match=r"must be an \.mcap file"):
            play(bag, record=tmp_path / "replay.bag", wait_for=["/odom"])
        with pytest.raises(ConfigError, match="exists already"):
            play(bag, record=tmp_path / "taken.mcap", wait_for=["/odom"])
    finally:
        rclpy.try_shutdown()
    assert (tmp_path / "taken.mcap").read_text() == "a user's file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.mcap"]


def test_loop_plays_the_bag_again_until_stopped(synthetic_dataroot, tmp_path):
    import time

    import rclpy

    from occvla_ros.ros.bag_player import message_class, play

    bag = tmp_path / "keyframes"
    report = convert(synthetic_dataroot, "v1.0-mini", bag, scene_names=[SCENE], keyframes_only=True)
    rclpy.init()
    started = None  # the first question comes when playback starts, after the start-up

    def should_stop() -> bool:
        nonlocal started
        started = started or time.monotonic()
        return time.monotonic() - started > 3.0  # the 8 s scene takes 0.2 s at 40x

    try:
        played = play(bag, rate=40.0, loop=True, delay_s=0.0, score_wait_s=0.0,
                      score_topic="/occvla_planner/trajectory",
                      should_stop=should_stop)  # fmt: skip
    finally:
        rclpy.try_shutdown()
    assert played.loops >= 2
    # Scoring keeps the ground truth of one pass, not one copy per loop.
    assert 0 < played.score.ground_truths <= report.messages[GROUND_TRUTH_TOPIC]
    topic = camera_image_topic("CAM_FRONT")
    assert played.published[topic] >= played.loops * report.messages[topic]
    without_tf = message_class("tf2_msgs/msg/TFMessage") is None  # no ROS install
    assert set(played.skipped_topics) == ({"/tf", "/tf_static"} if without_tf else set())


@pytest.mark.parametrize("humble", [False, True])
def test_recorded_qos_latches_tf_static_and_the_player_follows_it(
    synthetic_dataroot, tmp_path, humble
):
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy
    from rosbags.rosbag2 import Reader

    from occvla_ros.ros.bag_player import recorded_qos

    bag = tmp_path / "bag"
    convert(synthetic_dataroot, "v1.0-mini", bag, scene_names=[SCENE], keyframes_only=True,
            storage="sqlite3" if humble else "mcap", humble=humble)  # fmt: skip
    with Reader(bag) as reader:
        qos = {c.topic: recorded_qos(c.ext.offered_qos_profiles) for c in reader.connections}
    assert qos["/tf_static"].durability == DurabilityPolicy.TRANSIENT_LOCAL
    odometry = qos["/odom"]
    assert odometry.durability == DurabilityPolicy.VOLATILE
    assert odometry.reliability == ReliabilityPolicy.RELIABLE
    assert recorded_qos([]).reliability == ReliabilityPolicy.RELIABLE  # a bag without a record


def test_odometry_twist_comes_from_the_can_bus_when_it_covers_the_scene(can_bus_dataroot, tmp_path):
    from tests.conftest import CAN_YAW_RATE, can_speed_at

    dataroot, start_us = can_bus_dataroot
    convert(dataroot, "v1.0-mini", tmp_path / "bag", scene_names=[SCENE])
    odometry = read_mcap(tmp_path / "bag")["/odom"]
    assert len(odometry) > 20
    for _, message in odometry:
        twist = message.twist.twist
        # The newest CAN message at or before the pose (messages every 20 ms from start_us).
        stamp_us = stamp_ns(message.header) // 1000
        newest_us = start_us + (stamp_us - start_us) // 20_000 * 20_000
        assert twist.linear.x == pytest.approx(can_speed_at(newest_us, start_us))
        assert twist.angular.z == pytest.approx(CAN_YAW_RATE)
