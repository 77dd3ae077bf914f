"""A hand-made nuScenes-format dataset with known geometry, for the evaluation context tests.

One scene of 8 keyframes 0.5 s apart; the ego drives north (global +y, yaw 90 degrees) at 5 m/s
from (100, 200). LIDAR_TOP sits 0.94 m ahead of the ego origin, rotated -90 degrees about z (x
right, y forward), as on the nuScenes car. A car drives 10 m ahead of the ego at the same speed
throughout; a pedestrian appears at keyframe 3, 4 m to the ego's left at keyframe 0's position.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from occvla_ros.geometry import yaw_to_quat_wxyz

VERSION = "v1.0-mini"
SCENE_NAME = "scene-0061"  # a mini_train scene name
NUM_SAMPLES = 8
SPEED = 5.0
START = np.array([100.0, 200.0, 0.0])
EGO_YAW = math.pi / 2
LIDAR_TRANSLATION = [0.94, 0.0, 1.84]
LIDAR_YAW = -math.pi / 2


def ego_position(index: int) -> np.ndarray:
    return START + np.array([0.0, SPEED * 0.5 * index, 0.0])


def write(dataroot: Path) -> list[str]:
    """Write the dataset under ``dataroot``; returns the sample tokens in order."""
    tables: dict[str, list[dict]] = {}
    quat = [float(v) for v in yaw_to_quat_wxyz(EGO_YAW)]
    tables["sensor"] = [{"token": "sensor-lidar", "channel": "LIDAR_TOP", "modality": "lidar"}]
    tables["calibrated_sensor"] = [
        {
            "token": "calib-lidar",
            "sensor_token": "sensor-lidar",
            "translation": LIDAR_TRANSLATION,
            "rotation": [float(v) for v in yaw_to_quat_wxyz(LIDAR_YAW)],
            "camera_intrinsic": [],
        }
    ]
    tables["log"] = [
        {
            "token": "log-0",
            "logfile": "tiny",
            "vehicle": "tiny",
            "date_captured": "2026-01-01",
            "location": "singapore-onenorth",
        }
    ]
    tables["map"] = [
        {
            "token": "map-0",
            "filename": "maps/tiny.png",
            "log_tokens": ["log-0"],
            "category": "semantic_prior",
        }
    ]
    tokens = [f"sample-{i}" for i in range(NUM_SAMPLES)]
    tables["scene"] = [
        {
            "token": "scene-0",
            "name": SCENE_NAME,
            "description": "tiny",
            "log_token": "log-0",
            "nbr_samples": NUM_SAMPLES,
            "first_sample_token": tokens[0],
            "last_sample_token": tokens[-1],
        }
    ]
    tables["category"] = [
        {"token": "cat-car", "name": "vehicle.car", "description": "", "index": 0},
        {"token": "cat-ped", "name": "human.pedestrian.adult", "description": "", "index": 1},
    ]
    tables["attribute"] = []
    tables["visibility"] = [
        {"token": str(v), "level": f"v{v}", "description": ""} for v in range(1, 5)
    ]
    tables["instance"] = [
        {
            "token": "inst-car",
            "category_token": "cat-car",
            "nbr_annotations": NUM_SAMPLES,
            "first_annotation_token": "ann-car-0",
            "last_annotation_token": f"ann-car-{NUM_SAMPLES - 1}",
        },
        {
            "token": "inst-ped",
            "category_token": "cat-ped",
            "nbr_annotations": NUM_SAMPLES - 3,
            "first_annotation_token": "ann-ped-3",
            "last_annotation_token": f"ann-ped-{NUM_SAMPLES - 1}",
        },
    ]
    samples, sample_data, poses, annotations = [], [], [], []
    for i, token in enumerate(tokens):
        timestamp = 1_000_000 + 500_000 * i
        samples.append(
            {
                "token": token,
                "timestamp": timestamp,
                "prev": tokens[i - 1] if i else "",
                "next": tokens[i + 1] if i + 1 < NUM_SAMPLES else "",
                "scene_token": "scene-0",
            }
        )
        poses.append(
            {
                "token": f"pose-{i}",
                "timestamp": timestamp,
                "translation": ego_position(i).tolist(),
                "rotation": quat,
            }
        )
        sample_data.append(
            {
                "token": f"sd-{i}",
                "sample_token": token,
                "ego_pose_token": f"pose-{i}",
                "calibrated_sensor_token": "calib-lidar",
                "timestamp": timestamp,
                "fileformat": "pcd",
                "is_key_frame": True,
                "height": 0,
                "width": 0,
                "filename": f"samples/LIDAR_TOP/{i}.pcd.bin",
                "prev": f"sd-{i - 1}" if i else "",
                "next": f"sd-{i + 1}" if i + 1 < NUM_SAMPLES else "",
            }
        )
        car = ego_position(i) + np.array([0.0, 10.0, 0.0])
        annotations.append(
            _annotation(
                f"ann-car-{i}",
                token,
                "inst-car",
                car,
                [2.0, 4.5, 1.6],
                i=i,
                count=NUM_SAMPLES,
                kind="car",
            )
        )
        if i >= 3:
            person = ego_position(0) + np.array([-4.0, 0.0, 0.0])
            annotations.append(
                _annotation(
                    f"ann-ped-{i}",
                    token,
                    "inst-ped",
                    person,
                    [0.6, 0.6, 1.7],
                    i=i,
                    count=NUM_SAMPLES,
                    kind="ped",
                    first=3,
                )
            )
    tables["sample"], tables["sample_data"], tables["ego_pose"] = samples, sample_data, poses
    tables["sample_annotation"] = annotations
    (dataroot / VERSION).mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        (dataroot / VERSION / f"{name}.json").write_text(json.dumps(rows))
    (dataroot / "maps").mkdir(exist_ok=True)
    from PIL import Image

    Image.new("L", (10, 10)).save(dataroot / "maps" / "tiny.png")
    return tokens


def _annotation(token, sample, instance, position, size, *, i, count, kind, first=0) -> dict:
    return {
        "token": token,
        "sample_token": sample,
        "instance_token": instance,
        "translation": position.tolist(),
        "size": size,
        "rotation": [float(v) for v in yaw_to_quat_wxyz(EGO_YAW)],
        "prev": f"ann-{kind}-{i - 1}" if i > first else "",
        "next": f"ann-{kind}-{i + 1}" if i + 1 < count else "",
        "visibility_token": "4",
        "attribute_tokens": [],
        "num_lidar_pts": 10,
        "num_radar_pts": 0,
    }
