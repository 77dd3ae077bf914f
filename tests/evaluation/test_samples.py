"""The evaluation context read with the real nuScenes devkit from a dataset of known geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest

from occvla_ros.errors import DataError
from occvla_ros.evaluation.samples import NuScenesContext, ego_to_lidar
from tests.evaluation import tiny_nuscenes


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_nuscenes")
    tokens = tiny_nuscenes.write(root)
    return root, tokens, NuScenesContext(root, tiny_nuscenes.VERSION)


def test_future_boxes_in_ego_and_lidar_frames(tiny):
    _, tokens, context = tiny
    sample = context(tokens[0])
    boxes = sample.boxes_ego
    cars = boxes.category == "vehicle.car"
    # The car keeps 10 m ahead of where the ego will be: 10 + 2.5 (t + 1) m ahead of keyframe 0.
    np.testing.assert_allclose(
        boxes.center[cars], [[10 + 2.5 * (t + 1), 0] for t in range(6)], atol=1e-9
    )
    np.testing.assert_allclose(boxes.yaw[cars], 0.0, atol=1e-9)
    np.testing.assert_allclose(boxes.size[cars], [[2.0, 4.5]] * 6)
    assert boxes.tracked[cars].all() and (boxes.visibility == 4).all()
    people = boxes.category == "human.pedestrian.adult"
    assert boxes.step[people].tolist() == [2, 3, 4, 5]  # keyframes 3..6
    assert not boxes.tracked[people].any()  # not annotated at keyframe 0
    np.testing.assert_allclose(boxes.center[people], [[0.0, 4.0]] * 4, atol=1e-9)
    assert boxes.frame_exists.all()
    # LIDAR_TOP: 0.94 m ahead, x right, y forward.
    lidar = sample.boxes_lidar
    np.testing.assert_allclose(lidar.center[cars][0], [0.0, 12.5 - 0.94], atol=1e-9)
    np.testing.assert_allclose(lidar.center[people][0], [-4.0, -0.94], atol=1e-9)
    np.testing.assert_allclose(lidar.yaw[cars], math.pi / 2, atol=1e-9)
    np.testing.assert_allclose(
        ego_to_lidar(np.array([[10.0, 1.0]]), sample.lidar_from_ego), [[-1.0, 9.06]]
    )


def test_scene_end(tiny):
    _, tokens, context = tiny
    late = context(tokens[5])  # keyframes 6 and 7 follow: 2 future frames
    assert late.boxes_ego.frame_exists.tolist() == [True, True, False, False, False, False]
    assert set(late.boxes_ego.step.tolist()) == {0, 1}


def test_missing_dataset_and_token_are_clear_errors(tiny, tmp_path):
    _, _, context = tiny
    with pytest.raises(DataError, match="no nuScenes tables"):
        NuScenesContext(tmp_path, "v1.0-mini")
    with pytest.raises(DataError, match="not-a-token"):
        context("not-a-token")


def test_boxes_agree_with_the_data_loaders_records(synthetic_dataroot):
    """The evaluation reads instance and visibility itself; its boxes must be the records' boxes."""
    from occvla_ros.data.nuscenes_loader import load_records

    records = load_records(synthetic_dataroot, "v1.0-mini", "mini_val")
    context = NuScenesContext(synthetic_dataroot, "v1.0-mini")
    compared = 0
    for record in records[::3]:
        sample = context(record.token)
        np.testing.assert_allclose(
            sample.lidar_from_ego @ record.lidar_to_ego, np.eye(4), atol=1e-9
        )
        np.testing.assert_array_equal(sample.boxes_ego.frame_exists, record.agents.frame_exists[1:])
        future = record.agents.step >= 1
        order = np.lexsort(
            (
                record.agents.center_ego[future, 1],
                record.agents.center_ego[future, 0],
                record.agents.step[future],
            )
        )
        mine = np.lexsort(
            (sample.boxes_ego.center[:, 1], sample.boxes_ego.center[:, 0], sample.boxes_ego.step)
        )
        np.testing.assert_array_equal(
            sample.boxes_ego.step[mine] + 1, record.agents.step[future][order]
        )
        for frame, centre, yaw in (
            ("ego", record.agents.center_ego, record.agents.yaw_ego),
            ("lidar", record.agents.center_lidar, record.agents.yaw_lidar),
        ):
            boxes = sample.boxes_ego if frame == "ego" else sample.boxes_lidar
            np.testing.assert_allclose(boxes.center[mine], centre[future][order][:, :2], atol=1e-6)
            difference = np.angle(np.exp(1j * (boxes.yaw[mine] - yaw[future][order])))
            np.testing.assert_allclose(difference, 0.0, atol=1e-6)
        np.testing.assert_allclose(
            sample.boxes_ego.size[mine], record.agents.size[future][order][:, :2]
        )
        compared += len(mine)
    assert compared > 50
