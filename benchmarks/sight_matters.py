"""How much sight matters in the synthetic world, measured on held-out scenes.

Trains the ego+command MLP (ego state, past trajectory, route command: what the model gets besides
its cameras) and the privileged oracle (the same plus the world state a perfect perception would
read) on training scenes, and scores them with constant velocity on held-out scenes (ST-P3 L2 over
the valid samples, whose 6 future keyframes all exist), overall and per situation. The oracle's L2
over the ego+command MLP's is the share of the error that sight can remove; the issue asks for at
most 0.5.

    .venv/bin/python -m benchmarks.sight_matters                        # 200 + 20 worlds
    .venv/bin/python -m benchmarks.sight_matters --dataroot DIR --version v1.0-trainval

By default the keyframes come straight from the generator's worlds (``build_world``, seed 0:
scenes 0..N-1 train, the next ones held out), without writing images: the ego poses at the 12 Hz
camera times through the loader's causal ego state (:mod:`occvla_ros.data.ego_state`), past and
future positions at the 2 Hz keyframes, and the route command, situation and world state from the
same functions ``occvla synth`` writes to ``world/<scene>.json``. The oracle needs many scenes
(it overfits 40); writing 200 scenes of images would take most of an hour on 2 cores. With
``--dataroot`` the same runs on a generated dataset's train / val splits through the loader.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks.machine import describe_machine
from occvla_ros.data import world_annotations
from occvla_ros.data.nuscenes_loader import load_records, open_nuscenes
from occvla_ros.evaluation.baselines import (
    EgoMLPConfig,
    constant_velocity,
    ego_features,
    train_ego_baseline,
)
from occvla_ros.evaluation.planning import MEAN_UNTIL, reduce_per_horizon, table_from_per_step
from occvla_ros.evaluation.sources import fill_past


def ego_frame(world, t: float, times: np.ndarray) -> np.ndarray:
    """Ego positions at ``times`` [N] in the ego frame at ``t`` (x forward, y left), [N, 2]."""
    x, y, yaw = world.ego_pose(t)
    to_ego = np.array([[np.cos(yaw), np.sin(yaw)], [-np.sin(yaw), np.cos(yaw)]])
    return np.array([to_ego @ (np.array(world.ego_pose(u)[:2]) - (x, y)) for u in times])


def world_arrays(indices: range, seed: int) -> dict:
    """Keyframes (t = 0, 0.5, ... 19.5 s) of generated 20 s worlds, as the loader would read a
    dataset with camera sweeps."""
    from occvla_ros.data.ego_state import ego_state_at, twist_from_poses
    from occvla_ros.data.synth import situation
    from occvla_ros.data.synth.world import build_world

    rows = defaultdict(list)
    camera_times = np.arange(0, 20.0 * 12 - 11) / 12.0  # the 12 Hz frames of a 20 s scene
    for index in indices:
        world = build_world(seed, index, 20.0)
        poses = np.array([world.ego_pose(t) for t in camera_times])
        speed, yaw_rate = twist_from_poses(camera_times, poses)
        for k in range(40):
            t = 0.5 * k
            state = ego_state_at(camera_times, speed, yaw_rate, t + 1e-9)
            past_times = t - 0.5 * np.arange(4, 0, -1)
            future_times = t + 0.5 * np.arange(1, 7)
            keyframe = situation.keyframe_world(world, t)
            rows["ego_state"].append(np.zeros(3) if state is None else state)
            rows["past_ego"].append(ego_frame(world, t, np.maximum(past_times, 0.0)))
            rows["past_mask"].append(past_times >= 0.0)
            rows["commands"].append(keyframe.command)
            rows["world"].append(keyframe.state)
            rows["future"].append(ego_frame(world, t, future_times))
            rows["mask"].append(future_times <= 19.5 + 1e-9)
            rows["situation"].append(keyframe.situation)
    data = {name: np.array(values) for name, values in rows.items() if name != "commands"}
    data["commands"] = rows["commands"]
    data["past"] = fill_past(data.pop("past_ego"), data.pop("past_mask"))
    data["scenes"] = len(indices)
    return data


def split_arrays(dataroot: Path, version: str, split: str, nusc) -> dict:
    records = [r for r in load_records(dataroot, version, split, nusc=nusc) if r.has_future]
    worlds = {}
    for scene in sorted({r.scene_name for r in records}):
        worlds.update(world_annotations.read_scene(dataroot, scene))
    if not worlds:
        raise SystemExit(f"{dataroot} has no world/ annotations: generate it with occvla synth")
    return {
        "ego_state": np.stack([r.ego_state for r in records]),
        "past": fill_past(
            np.stack([r.past_ego for r in records]), np.stack([r.past_mask for r in records])
        ),
        "commands": [r.command for r in records],
        "world": np.array([worlds[r.token].state for r in records]),
        "future": np.stack([r.future_ego for r in records]),
        "mask": np.stack([r.future_mask for r in records]),
        "situation": np.array([r.situation for r in records]),
        "scenes": len({r.scene_name for r in records}),
    }


def l2_per_step(predictions: np.ndarray, data: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample per-step L2 [S, 6] of the ST-P3 valid samples, and their situations [S]."""
    valid = data["mask"].all(axis=1)
    l2 = np.linalg.norm(predictions - data["future"], axis=-1)[valid]
    return l2, data["situation"][valid]


def scores(predictions: np.ndarray, data: dict) -> dict[str, float]:
    """ST-P3 avg L2 overall and per situation (mean of the 1 s, 2 s, 3 s means)."""
    l2, situations = l2_per_step(predictions, data)
    row = {"all": table_from_per_step(reduce_per_horizon(l2, MEAN_UNTIL))["avg"]}
    for situation in world_annotations.SITUATIONS:
        chosen = l2[situations == situation]
        if len(chosen):
            row[situation] = table_from_per_step(reduce_per_horizon(chosen, MEAN_UNTIL))["avg"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataroot", type=Path, help="a generated dataset (else worlds)")
    parser.add_argument("--version", default="v1.0-trainval")
    parser.add_argument("--train-scenes", type=int, default=200)
    parser.add_argument("--val-scenes", type=int, default=20)
    parser.add_argument("--world-seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args()
    print(describe_machine())
    started = time.perf_counter()
    if args.dataroot is not None:
        nusc = open_nuscenes(args.dataroot.absolute(), args.version)
        train = split_arrays(args.dataroot, args.version, "train", nusc)
        val = split_arrays(args.dataroot, args.version, "val", nusc)
    else:
        train = world_arrays(range(args.train_scenes), args.world_seed)
        held_out = range(args.train_scenes, args.train_scenes + args.val_scenes)
        val = world_arrays(held_out, args.world_seed)
    print(
        f"train: {train['scenes']} scenes, {len(train['commands'])} samples; held out: "
        f"{val['scenes']} scenes, {int(val['mask'].all(axis=1).sum())} valid samples"
    )
    names = world_annotations.STATE_FEATURES
    methods = {
        "ego MLP (no command)": (EgoMLPConfig(), False, False),
        "ego+command MLP": (EgoMLPConfig(use_command=True), True, False),
        "oracle (+ world state)": (
            EgoMLPConfig(use_command=True, world_features=names),
            True,
            True,
        ),
    }
    results: dict[str, list[dict[str, float]]] = defaultdict(list)
    results["constant velocity"].append(scores(constant_velocity(val["ego_state"]), val))
    for seed in args.seeds:
        for name, (config, command, world) in methods.items():

            def features(data, command=command, world=world):
                return ego_features(
                    data["ego_state"],
                    data["past"],
                    data["commands"] if command else None,
                    data["world"] if world else None,
                )

            model = train_ego_baseline(
                features(train),
                train["future"],
                train["mask"],
                config,
                epochs=args.epochs,
                seed=seed,
            )
            predictions = model.predict(
                val["ego_state"], val["past"], val["commands"], val["world"]
            )
            results[name].append(scores(predictions, val))
    columns = ["all", *world_annotations.SITUATIONS]
    counts = l2_per_step(val["future"], val)[1]
    print(f"\nST-P3 avg L2 [m] on the held-out scenes, mean +- std over seeds {args.seeds}")
    print(
        "| method | "
        + " | ".join(
            f"{c} ({int((counts == c).sum()) if c != 'all' else len(counts)})" for c in columns
        )
        + " |"
    )
    print("|---" * (len(columns) + 1) + "|")
    for name, rows in results.items():
        cells = []
        for column in columns:
            values = [row[column] for row in rows if column in row]
            cells.append(f"{np.mean(values):.3f} +- {np.std(values):.3f}" if values else "-")
        print(f"| {name} | " + " | ".join(cells) + " |")
    ego = np.mean([row["all"] for row in results["ego+command MLP"]])
    oracle = np.mean([row["all"] for row in results["oracle (+ world state)"]])
    print(f"\noracle / ego+command MLP = {oracle / ego:.2f} (the issue asks for <= 0.50)")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
