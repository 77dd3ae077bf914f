"""The synthetic dataset read back with the real nuScenes devkit (shared session fixture)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from occvla_ros.constants import (
    CAMERA_NAMES,
    FREE_CLASS,
    LIDAR_NAME,
    NUM_WAYPOINTS,
    OCC_CLASS_ID,
    OCC_GRID_SHAPE,
)
from occvla_ros.data.labels import label_meta_action
from occvla_ros.geometry import make_transform, quat_wxyz_to_yaw, transform_points
from occvla_ros.meta_action import MetaActionVocabulary

VERSION = "v1.0-mini"


@pytest.fixture(scope="module")
def nusc(synthetic_dataroot: Path):
    from nuscenes.nuscenes import NuScenes

    return NuScenes(version=VERSION, dataroot=str(synthetic_dataroot), verbose=False)


def _ego_pose(nusc, sample_data_token: str) -> np.ndarray:
    pose = nusc.get("ego_pose", nusc.get("sample_data", sample_data_token)["ego_pose_token"])
    return make_transform(pose["translation"], pose["rotation"])


def test_devkit_loads_every_table_and_the_splits_name_the_scenes(nusc) -> None:
    from nuscenes.utils.splits import create_splits_scenes

    names = [scene["name"] for scene in nusc.scene]
    assert names == ["scene-0061", "scene-0103"]
    splits = create_splits_scenes()
    assert names[0] in splits["mini_train"] and names[1] in splits["mini_val"]
    assert len(nusc.sample) == 2 * 16  # 8 s at 2 Hz per scene
    assert {c["name"] for c in nusc.category} >= {
        "vehicle.car",
        "vehicle.truck",
        "vehicle.bus.rigid",
        "human.pedestrian.adult",
        "movable_object.barrier",
        "movable_object.trafficcone",
    }
    assert [s["channel"] for s in nusc.sensor] == [*CAMERA_NAMES, LIDAR_NAME]
    # Every sample_data has its own ego pose at its own timestamp (microseconds).
    for record in nusc.sample_data:
        pose = nusc.get("ego_pose", record["ego_pose_token"])
        assert pose["timestamp"] == record["timestamp"]
        assert abs(np.linalg.norm(pose["rotation"]) - 1.0) < 1e-9
    for map_record in nusc.map:
        assert map_record["log_tokens"]
        assert (Path(nusc.dataroot) / map_record["filename"]).is_file()


def test_camera_sweeps_at_12_hz_point_at_the_next_keyframe(nusc) -> None:
    scene = nusc.scene[0]
    sample = nusc.get("sample", scene["first_sample_token"])
    token = sample["data"]["CAM_FRONT"]
    chain = []
    while token:
        chain.append(nusc.get("sample_data", token))
        token = chain[-1]["next"]
    assert len(chain) == 6 * 15 + 1  # 12 Hz between the first and last keyframe
    steps = np.diff([record["timestamp"] for record in chain])
    assert np.all(np.abs(steps - 1e6 / 12) <= 1)
    keyframe_times = {s["token"]: s["timestamp"] for s in nusc.sample}
    for index, record in enumerate(chain):
        assert record["is_key_frame"] == (index % 6 == 0)
        assert record["filename"].startswith("samples/" if index % 6 == 0 else "sweeps/")
        owner_time = keyframe_times[record["sample_token"]]
        if record["is_key_frame"]:
            assert owner_time == record["timestamp"]
        else:  # a sweep belongs to the next keyframe
            assert 0 < owner_time - record["timestamp"] < 500_000
        if index:
            assert record["prev"] == chain[index - 1]["token"]
        assert (Path(nusc.dataroot) / record["filename"]).is_file()


def test_annotation_chains_and_instances_are_consistent(nusc) -> None:
    for instance in nusc.instance:
        token, count = instance["first_annotation_token"], 0
        previous = ""
        while token:
            annotation = nusc.get("sample_annotation", token)
            assert annotation["prev"] == previous
            assert annotation["instance_token"] == instance["token"]
            previous, token, count = token, annotation["next"], count + 1
        assert previous == instance["last_annotation_token"]
        assert count == instance["nbr_annotations"]
    moving = [a for a in nusc.sample_annotation if a["attribute_tokens"]]
    assert moving and all(a["visibility_token"] in "1234" for a in nusc.sample_annotation)
    assert any(a["num_lidar_pts"] > 0 for a in nusc.sample_annotation)


def test_devkit_renders_a_camera_sample_data(nusc, tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    token = nusc.sample[4]["data"]["CAM_FRONT"]
    output = tmp_path / "cam_front.png"
    nusc.render_sample_data(token, out_path=str(output), verbose=False)
    plt.close("all")
    assert output.stat().st_size > 10_000


def test_a_visible_annotation_projects_onto_its_object(nusc) -> None:
    """The devkit's projection of a fully visible box centre lands on the object's pixels:
    rendering the same frame without that object changes the pixel there.

    Visibility levels come from a coarse depth map, so an object may be marked fully visible
    while its exact centre pixel is just hidden: most, not all, centres must be on the object.
    """
    from nuscenes.utils.geometry_utils import BoxVisibility, view_points

    from occvla_ros.data.synth.nuscenes_writer import NuScenesTables
    from occvla_ros.data.synth.render import SceneRenderer
    from occvla_ros.data.synth.rig import build_rig
    from occvla_ros.data.synth.world import build_world

    tokens = NuScenesTables(seed=0)
    cameras = build_rig(384, 216, 540).cameras
    on_object = []
    for scene_index, scene in enumerate(nusc.scene):
        world = build_world(0, scene_index, 8.0)
        renderer = SceneRenderer(world, cameras)
        agent_of = {tokens.token("instance", scene_index, i): i for i in range(len(world.agents))}
        sample = nusc.get("sample", scene["first_sample_token"])
        for keyframe in range(0, 16, 5):
            for channel in CAMERA_NAMES:
                path, boxes, intrinsic = nusc.get_sample_data(
                    sample["data"][channel], box_vis_level=BoxVisibility.ALL
                )
                for box in boxes:
                    annotation = nusc.get("sample_annotation", box.token)
                    if annotation["visibility_token"] != "4" or np.linalg.norm(box.center) > 20:
                        continue
                    u, v = view_points(box.center[:, None], intrinsic, normalize=True)[:2, 0]
                    ego_to_global = _ego_pose(nusc, sample["data"][channel])
                    t = keyframe * 0.5
                    with_object = renderer.render(t, ego_to_global)[channel]
                    agent = world.agents[agent_of[annotation["instance_token"]]]
                    present = agent.active.copy()
                    agent.active[:] = False
                    without_object = renderer.render(t, ego_to_global)[channel]
                    agent.active[:] = present
                    row, col = int(v), int(u)
                    on_object.append((with_object[row, col] != without_object[row, col]).any())
                    # The JPEG written to the dataset is that rendering.
                    written = cv2.imread(path)[row, col].astype(int)
                    assert np.abs(written - with_object[row, col]).max() < 40
            if not sample["next"]:
                break
            for _ in range(5):
                sample = nusc.get("sample", sample["next"]) if sample["next"] else sample
    assert len(on_object) >= 5
    assert np.mean(on_object) >= 0.8, on_object


def test_lidar_keyframes_load_with_the_devkit(nusc) -> None:
    from nuscenes.utils.data_classes import LidarPointCloud

    record = nusc.get("sample_data", nusc.sample[3]["data"][LIDAR_NAME])
    cloud = LidarPointCloud.from_file(str(Path(nusc.dataroot) / record["filename"]))
    points = cloud.points  # [4, N]: x, y, z, intensity in the lidar frame
    assert points.shape[1] > 5_000
    # The ground is hit 1.84 m below the sensor.
    assert np.percentile(points[2], 5) == pytest.approx(-1.84, abs=0.1)
    raw = np.fromfile(Path(nusc.dataroot) / record["filename"], dtype=np.float32).reshape(-1, 5)
    assert set(np.unique(raw[:, 4])) <= set(range(32))


def test_occ3d_labels_for_every_keyframe(nusc) -> None:
    root = Path(nusc.dataroot) / "gts"
    for sample in nusc.sample:
        scene = nusc.get("scene", sample["scene_token"])
        with np.load(root / scene["name"] / sample["token"] / "labels.npz") as labels:
            semantics = labels["semantics"]
            mask_camera, mask_lidar = labels["mask_camera"], labels["mask_lidar"]
        assert semantics.dtype == np.uint8 and semantics.shape == OCC_GRID_SHAPE
        assert mask_camera.dtype == np.uint8 and mask_camera.shape == OCC_GRID_SHAPE
        assert mask_lidar.dtype == np.uint8 and set(np.unique(mask_lidar)) <= {0, 1}
        assert semantics.max() <= FREE_CLASS
        # The ego stands on the road: the ground layer (z = 0 in voxel layer 2) under it.
        assert (
            semantics[99:101, 99:101, 2].tolist() == [[OCC_CLASS_ID["driveable_surface"]] * 2] * 2
        )
        assert (semantics[:, :, :2] == FREE_CLASS).all()  # nothing below the ground
        assert not mask_camera[:, :, :2].any()
        assert 0.05 < mask_camera.mean() < 0.9 and 0.05 < mask_lidar.mean() < 0.9
    classes = set(np.unique(semantics))
    assert {
        OCC_CLASS_ID["driveable_surface"],
        OCC_CLASS_ID["sidewalk"],
        OCC_CLASS_ID["manmade"],
    } <= classes


def test_occupancy_holds_the_annotated_vehicles(nusc) -> None:
    """Voxels at annotated car centres (in the keyframe's ego frame) are labelled car."""
    root = Path(nusc.dataroot) / "gts"
    hits = 0
    for sample in nusc.sample[:8]:
        scene = nusc.get("scene", sample["scene_token"])
        semantics = np.load(root / scene["name"] / sample["token"] / "labels.npz")["semantics"]
        global_to_ego = np.linalg.inv(_ego_pose(nusc, sample["data"][LIDAR_NAME]))
        for token in sample["anns"]:
            annotation = nusc.get("sample_annotation", token)
            if annotation["category_name"] != "vehicle.car":
                continue
            x, y, _ = transform_points(global_to_ego, np.array(annotation["translation"]))
            i, j = int((x + 40) / 0.4), int((y + 40) / 0.4)
            if 0 <= i < 200 and 0 <= j < 200:
                assert OCC_CLASS_ID["car"] in semantics[i, j, 2:6]
                hits += 1
    assert hits > 0


def _parse_trajectory(answer: str) -> np.ndarray:
    match = re.fullmatch(r"Here is the planning trajectory \[PT, (.*)\]\.", answer)
    assert match, answer
    pairs = re.findall(r"\(([+-]\d+\.\d{2}), ([+-]\d+\.\d{2})\)", match.group(1))
    return np.array(pairs, dtype=float)


def test_omnidrive_qa_matches_the_ego_poses(nusc) -> None:
    from nuscenes.utils.splits import create_splits_scenes

    splits = create_splits_scenes()
    vocabulary = MetaActionVocabulary()
    root = Path(nusc.dataroot) / "omnidrive"
    planned = 0
    for scene in nusc.scene:
        split = "train" if scene["name"] in splits["mini_train"] else "val"
        samples = [nusc.get("sample", scene["first_sample_token"])]
        while samples[-1]["next"]:
            samples.append(nusc.get("sample", samples[-1]["next"]))
        poses = [_ego_pose(nusc, s["data"][LIDAR_NAME]) for s in samples]
        for index, sample in enumerate(samples):
            vqa = json.loads((root / "vqa" / split / f"{sample['token']}.json").read_text())
            desc = json.loads((root / "desc" / split / f"{sample['token']}.json").read_text())
            keywords = json.loads(
                (root / "keywords" / split / f"{sample['token']}.json").read_text()
            )
            assert set(desc) == {"description", "action"} and isinstance(keywords, list)
            answers = {qa["question"]: qa["answer"] for qa in vqa}
            future = [p[:3, 3] for p in poses[index + 1 : index + 1 + NUM_WAYPOINTS]]
            expected = transform_points(
                np.linalg.inv(poses[index]), np.array(future or [[0, 0, 0]])
            )
            question = "Please provide the planning trajectory for the ego car without reasons."
            if len(future) == NUM_WAYPOINTS:
                trajectory = _parse_trajectory(answers[question])
                np.testing.assert_allclose(trajectory, expected[:, :2], atol=0.0051)
                planned += 1
            else:
                assert question not in answers  # the 3 s future leaves the scene
            meta = answers.get("What is the next meta-action of the ego car?")
            if not future:
                assert meta is None
                continue
            action = vocabulary.parse(meta)
            mask = np.arange(NUM_WAYPOINTS) < len(future)
            padded = np.zeros((NUM_WAYPOINTS, 2))
            padded[: len(future)] = expected[:, :2]
            # The direction does not depend on the current speed: recompute it from the poses.
            assert label_meta_action(padded, mask, 0.0).direction == action.direction
    assert planned == 2 * (16 - NUM_WAYPOINTS)


def test_ego_motion_is_smooth(nusc) -> None:
    """Keyframe ego poses: bounded acceleration and yaw rate (a kinematic model drove)."""
    for scene in nusc.scene:
        token = nusc.get("sample", scene["first_sample_token"])["data"]["CAM_FRONT"]
        poses = []
        while token:
            record = nusc.get("sample_data", token)
            pose = nusc.get("ego_pose", record["ego_pose_token"])
            poses.append(
                (
                    record["timestamp"] / 1e6,
                    *pose["translation"][:2],
                    quat_wxyz_to_yaw(pose["rotation"]),
                )
            )
            token = record["next"]
        t, x, y, yaw = np.array(poses).T
        speed = np.hypot(np.diff(x), np.diff(y)) / np.diff(t)
        accel = np.diff(speed) / np.diff(t)[1:]
        yaw_rate = np.diff(np.unwrap(yaw)) / np.diff(t)
        assert speed.max() < 20.0
        assert np.abs(accel).max() < 6.5
        assert np.abs(yaw_rate).max() < math.radians(60)
