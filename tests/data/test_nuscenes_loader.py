"""The devkit loader on the synthetic dataset, checked against independent computations.

Ground truth is recomputed here from the raw JSON tables with pyquaternion (not the loader's
geometry module nor the devkit), and ego motion against the generator's own world.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from pyquaternion import Quaternion

from occvla_ros.constants import CAMERA_NAMES, LIDAR_NAME, NUM_WAYPOINTS
from occvla_ros.data import labels
from occvla_ros.data.nuscenes_loader import load_records
from occvla_ros.data.records import (
    EGO_STATE_FROM_CAN_BUS,
    EGO_STATE_FROM_EGO_POSE,
    save_records,
)
from occvla_ros.data.records import (
    load_records as read_records,
)
from occvla_ros.errors import ConfigError, DataError
from tests.conftest import CAN_ACCELERATION, CAN_YAW_RATE, can_speed_at

VERSION = "v1.0-mini"
SCENE_INDEX = {"scene-0061": 0, "scene-0103": 1}  # generation order of the synthetic scenes


class RawTables:
    """The tables as plain dicts, read with json alone."""

    def __init__(self, dataroot: Path) -> None:
        def table(name):
            rows = json.loads((dataroot / VERSION / f"{name}.json").read_text())
            return {row["token"]: row for row in rows}

        self.sample = table("sample")
        self.scene = table("scene")
        self.ego_pose = table("ego_pose")
        self.calibrated_sensor = table("calibrated_sensor")
        self.annotation = table("sample_annotation")
        sensors = table("sensor")
        self.lidar_data = {}
        for data in table("sample_data").values():
            calib = self.calibrated_sensor[data["calibrated_sensor_token"]]
            if data["is_key_frame"] and sensors[calib["sensor_token"]]["channel"] == LIDAR_NAME:
                self.lidar_data[data["sample_token"]] = data

    def pose(self, sample_token: str) -> tuple[np.ndarray, Quaternion]:
        pose = self.ego_pose[self.lidar_data[sample_token]["ego_pose_token"]]
        return np.array(pose["translation"]), Quaternion(pose["rotation"])

    def lidar_calibration(self, sample_token: str) -> tuple[np.ndarray, Quaternion]:
        calib = self.calibrated_sensor[self.lidar_data[sample_token]["calibrated_sensor_token"]]
        return np.array(calib["translation"]), Quaternion(calib["rotation"])

    def following(self, token: str, count: int) -> list[str]:
        tokens = []
        while len(tokens) < count and self.sample[token]["next"]:
            token = self.sample[token]["next"]
            tokens.append(token)
        return tokens


@pytest.fixture(scope="module")
def raw(synthetic_dataroot) -> RawTables:
    return RawTables(synthetic_dataroot)


@pytest.fixture(scope="module")
def records(synthetic_dataroot):
    return {
        split: load_records(synthetic_dataroot, VERSION, split)
        for split in ("mini_train", "mini_val")
    }


def test_every_keyframe_of_each_split_is_loaded(records, raw):
    for split, scene in (("mini_train", "scene-0061"), ("mini_val", "scene-0103")):
        assert {r.scene_name for r in records[split]} == {scene}
    assert sum(len(r) for r in records.values()) == len(raw.sample)
    for split_records in records.values():
        times = [r.timestamp_us for r in split_records]
        assert times == sorted(times)


def test_future_trajectory_equals_an_independent_transform(records, raw):
    checked = 0
    for record in (*records["mini_train"], *records["mini_val"]):
        t0, q0 = raw.pose(record.token)
        lidar_t, lidar_q = raw.lidar_calibration(record.token)
        future = raw.following(record.token, NUM_WAYPOINTS)
        assert record.future_mask.tolist() == [i < len(future) for i in range(NUM_WAYPOINTS)]
        for step, token in enumerate(future):
            position, _ = raw.pose(token)
            in_ego = q0.inverse.rotate(position - t0)
            in_lidar = lidar_q.inverse.rotate(in_ego - lidar_t)
            np.testing.assert_allclose(record.future_ego[step], in_ego[:2], atol=1e-6)
            np.testing.assert_allclose(record.future_lidar[step], in_lidar[:2], atol=1e-6)
            checked += 1
        assert not record.future_ego[len(future) :].any()
    assert checked > 100


def test_masks_at_scene_ends(records, raw):
    for split_records in records.values():
        count = len(split_records)
        for k, record in enumerate(split_records):
            assert record.future_mask.sum() == min(NUM_WAYPOINTS, count - 1 - k)
            assert record.past_mask.sum() == min(len(record.past_mask), k)
            assert record.past_mask.tolist() == sorted(record.past_mask.tolist())  # newest last
        assert split_records[-1].meta_action == ""  # no future: no label
        assert not split_records[0].past_mask.any()


def test_past_trajectory_is_the_previous_keyframes(records, raw):
    record = records["mini_train"][6]
    t0, q0 = raw.pose(record.token)
    token = record.token
    for slot in range(len(record.past_mask) - 1, -1, -1):  # newest is the last slot
        token = raw.sample[token]["prev"]
        position, _ = raw.pose(token)
        np.testing.assert_allclose(
            record.past_ego[slot], q0.inverse.rotate(position - t0)[:2], atol=1e-6
        )


def world_velocity(world, t: float, h: float = 0.01) -> float:
    """Longitudinal velocity of the generator's ego at ``t`` (fine central difference)."""
    before, after, now = world.ego_pose(t - h), world.ego_pose(t + h), world.ego_pose(t)
    velocity = (np.array(after[:2]) - np.array(before[:2])) / (2 * h)
    return float(velocity @ [math.cos(now[2]), math.sin(now[2])])


def odometry_chain(dataroot: Path, keyframe_token: str) -> list[dict]:
    """The CAM_FRONT sample_data of a keyframe and every one before it, oldest first, from the
    raw tables."""

    def table(name):
        return json.loads((dataroot / VERSION / f"{name}.json").read_text())

    sensors = {row["token"]: row["channel"] for row in table("sensor")}
    channel_of = {row["token"]: sensors[row["sensor_token"]] for row in table("calibrated_sensor")}
    data = {row["token"]: row for row in table("sample_data")}
    poses = {row["token"]: row for row in table("ego_pose")}
    current = next(
        row
        for row in data.values()
        if row["sample_token"] == keyframe_token
        and row["is_key_frame"]
        and channel_of[row["calibrated_sensor_token"]] == "CAM_FRONT"
    )
    chain = [current]
    while chain[-1]["prev"]:
        chain.append(data[chain[-1]["prev"]])
    for row in chain:
        row["pose"] = poses[row["ego_pose_token"]]
    return chain[::-1]


def independent_causal_state(chain: list[dict], can_speed=None, can_yaw_rate=None) -> list[float]:
    """Speed and yaw rate of the newest sample, each from its pose step since its predecessor (or
    the CAN bus functions of a time), acceleration over the newest sample 0.5 s or more older."""
    samples = []  # (time us, speed, yaw rate)
    for before, row in zip([None, *chain[:-1]], chain, strict=True):
        t = row["timestamp"]
        if can_speed is not None:
            samples.append((t, can_speed(t), can_yaw_rate(t)))
            continue
        if before is None:
            continue  # no predecessor: no twist
        yaw = Quaternion(row["pose"]["rotation"]).yaw_pitch_roll[0]
        yaw_before = Quaternion(before["pose"]["rotation"]).yaw_pitch_roll[0]
        dt = (t - before["timestamp"]) / 1e6
        dx = row["pose"]["translation"][0] - before["pose"]["translation"][0]
        dy = row["pose"]["translation"][1] - before["pose"]["translation"][1]
        turn = math.remainder(yaw - yaw_before, 2 * math.pi)
        samples.append((t, (dx * math.cos(yaw) + dy * math.sin(yaw)) / dt, turn / dt))
    if not samples:
        return [0.0, 0.0, 0.0]
    now, speed, yaw_rate = samples[-1]
    old = [sample for sample in samples if sample[0] <= now - 500_000] or samples[:1]
    then, old_speed, _ = old[-1]
    accel = (speed - old_speed) / ((now - then) / 1e6) if then < now else 0.0
    return [speed, accel, yaw_rate]


def test_ego_state_is_causal_and_matches_an_independent_computation(records, synthetic_dataroot):
    """Only poses at or before the keyframe: the same numbers as a computation that never reads
    a later pose; close to the generator's own motion half a camera frame earlier."""
    from occvla_ros.data.synth.world import build_world
    from tests.conftest import SYNTHETIC_DEFAULTS

    for split_records in records.values():
        scene = split_records[0].scene_name
        world = build_world(
            SYNTHETIC_DEFAULTS["seed"], SCENE_INDEX[scene], SYNTHETIC_DEFAULTS["scene_duration_s"]
        )
        start = split_records[0].timestamp_us
        for record in split_records:
            assert record.ego_state_source == EGO_STATE_FROM_EGO_POSE
            chain = odometry_chain(synthetic_dataroot, record.token)
            assert chain[-1]["timestamp"] == record.timestamp_us
            np.testing.assert_allclose(
                record.ego_state, independent_causal_state(chain), rtol=0, atol=1e-9
            )
            t = (record.timestamp_us - start) * 1e-6
            if t > 0:  # a backward difference over the last 1/12 s is the speed 1/24 s ago
                lag = 1.0 / 24.0
                assert record.ego_state[0] == pytest.approx(
                    world_velocity(world, t - lag), abs=0.05
                )


def test_a_scene_starts_without_ego_history(records):
    """Without CAN data the first keyframe has no earlier pose: no speed can be known."""
    for split_records in records.values():
        np.testing.assert_array_equal(split_records[0].ego_state, np.zeros(3))


def test_command_and_situation_come_from_the_route_annotation(records, synthetic_dataroot):
    for split_records in records.values():
        scene = split_records[0].scene_name
        path = synthetic_dataroot / "world" / f"{scene}.json"
        annotation = json.loads(path.read_text())["keyframes"]
        assert len(annotation) == len(split_records)
        for record in split_records:
            assert record.command == annotation[record.token]["command"]
            assert record.situation == annotation[record.token]["situation"]
            assert not record.command_is_future_derived


def test_without_route_annotations_the_command_is_future_derived(synthetic_dataroot, tmp_path):
    dataroot = tmp_path / "nuscenes"
    dataroot.mkdir()
    for child in synthetic_dataroot.iterdir():
        if child.name != "world":
            (dataroot / child.name).symlink_to(child)
    for record in load_records(dataroot, VERSION, "mini_val"):
        assert record.command == labels.driving_command(record.future_ego, record.future_mask)
        assert record.command_is_future_derived
        assert record.situation == ""


def test_labels_follow_the_label_rules(records):
    for record in records["mini_train"]:
        if record.has_future:
            expected = labels.label_meta_action(
                record.future_ego, record.future_mask, record.ego_state[0]
            )
            assert record.meta_action == expected.text


def test_cameras_occupancy_and_qa(records, raw, synthetic_dataroot):
    record = records["mini_val"][3]
    assert len(record.image_paths) == len(CAMERA_NAMES)
    for channel, path in zip(CAMERA_NAMES, record.image_paths, strict=True):
        assert Path(path).is_file() and f"/samples/{channel}/" in path
    assert record.camera_intrinsics.shape == (6, 3, 3)
    assert np.allclose(record.camera_to_ego[:, 3], [0, 0, 0, 1])
    assert record.occupancy_path == str(
        synthetic_dataroot / "gts" / "scene-0103" / record.token / "labels.npz"
    )
    vqa = json.loads(
        (synthetic_dataroot / "omnidrive/vqa/val" / f"{record.token}.json").read_text()
    )
    assert record.qa == tuple((p["question"], p["answer"]) for p in vqa)
    assert record.description


def test_agent_boxes_in_ego_and_lidar_frames(records, raw):
    record = records["mini_train"][4]
    t0, q0 = raw.pose(record.token)
    lidar_t, lidar_q = raw.lidar_calibration(record.token)
    now = record.agents.at_step(0)
    current = [a for a in raw.annotation.values() if a["sample_token"] == record.token]
    assert len(now) == len(current) > 0
    future = raw.following(record.token, NUM_WAYPOINTS)
    annotations = [a for a in raw.annotation.values() if a["sample_token"] == future[1]]
    rows = record.agents.at_step(2)
    assert len(rows) == len(annotations) > 0
    by_center = {tuple(np.round(record.agents.center_ego[r], 4)): r for r in rows}
    for annotation in annotations:
        in_ego = q0.inverse.rotate(np.array(annotation["translation"]) - t0)
        row = by_center[tuple(np.round(in_ego, 4))]
        yaw_ego = (q0.inverse * Quaternion(annotation["rotation"])).yaw_pitch_roll[0]
        assert math.cos(record.agents.yaw_ego[row] - yaw_ego) == pytest.approx(1.0)
        np.testing.assert_allclose(
            record.agents.center_lidar[row], lidar_q.inverse.rotate(in_ego - lidar_t), atol=1e-6
        )
        assert record.agents.size[row].tolist() == annotation["size"]
    assert record.agents.frame_exists.all()
    assert not records["mini_train"][-1].agents.frame_exists[1:].any()


def test_records_round_trip_through_json_and_npz(records, tmp_path):
    original = records["mini_val"]
    save_records(original, tmp_path / "r.json", tmp_path / "r.npz")
    loaded = read_records(tmp_path / "r.json", tmp_path / "r.npz")
    assert len(loaded) == len(original)
    for a, b in zip(original, loaded, strict=True):
        assert a.token == b.token and a.qa == b.qa and a.agents.category == b.agents.category
        np.testing.assert_array_equal(a.future_lidar, b.future_lidar)
        np.testing.assert_array_equal(a.agents.center_lidar, b.agents.center_lidar)


def test_can_bus_expansion_is_used_when_present(can_bus_dataroot):
    """A dataroot with a CAN bus folder: pose messages for scene-0061, none for scene-0103."""
    dataroot, start_us = can_bus_dataroot
    train = load_records(dataroot, VERSION, "mini_train")

    def newest_message_speed(t_us):  # CAN pose messages every 20 ms from start_us
        return can_speed_at(start_us + (t_us - start_us) // 20_000 * 20_000, start_us)

    for record in train:
        assert record.ego_state_source == EGO_STATE_FROM_CAN_BUS
        chain = odometry_chain(dataroot, record.token)
        expected = independent_causal_state(chain, newest_message_speed, lambda t: CAN_YAW_RATE)
        np.testing.assert_allclose(record.ego_state, expected, rtol=0, atol=1e-9)
        assert record.ego_state[0] == pytest.approx(can_speed_at(record.timestamp_us, start_us))
        if record.timestamp_us - start_us >= 500_000:  # a full window: the ramp's slope
            assert record.ego_state[1] == pytest.approx(CAN_ACCELERATION, rel=0.05)
    # The last keyframe reads the full acceleration, not half of it (no one-sided derivative).
    assert train[-1].ego_state[1] == pytest.approx(CAN_ACCELERATION, rel=0.05)
    val = load_records(dataroot, VERSION, "mini_val")
    assert {r.ego_state_source for r in val} == {EGO_STATE_FROM_EGO_POSE}


def test_bad_arguments_and_directories(synthetic_dataroot, tmp_path):
    with pytest.raises(ConfigError, match="unknown split"):
        load_records(synthetic_dataroot, VERSION, "nonsense")
    with pytest.raises(DataError, match="mini_train / mini_val"):
        load_records(synthetic_dataroot, VERSION, "test")
    with pytest.raises(DataError, match="no nuScenes tables"):
        load_records(tmp_path, VERSION, "mini_train")
