"""How much sight matters in the synthetic world, measured on held-out scenes.

Trains, on the train split of a synthetic dataset, the ego+command MLP (ego state, past
trajectory, route command: what the model gets besides its cameras) and the privileged oracle (the
same plus the world state a perfect perception would read), and scores them with constant
velocity on the val split (ST-P3 L2, valid samples: all 6 future keyframes exist), overall and per
situation. The oracle's L2 over the ego+command MLP's is the share of the error that sight can
remove; the issue asks for at most 0.5.

    .venv/bin/python -m benchmarks.sight_matters                    # generates 52 scenes first
    .venv/bin/python -m benchmarks.sight_matters --dataroot DIR --version v1.0-trainval

Without ``--dataroot`` a dataset (v1.0-trainval, 20 s scenes, 320x180 keyframe images, 13 of the
scenes in val) is generated into ``--workdir`` (kept, reused when it is there).
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


def generate(workdir: Path, scenes: int, val_fraction: float) -> Path:
    from occvla_ros.data.synth import SynthConfig, generate_dataset

    config = SynthConfig(
        num_scenes=scenes,
        scene_duration_s=20.0,
        version="v1.0-trainval",
        val_fraction=val_fraction,
        image_width=320,
        image_height=180,
        camera_sweeps=False,
        lidar_azimuth_steps=360,
    )
    if not (workdir / config.version).exists():
        started = time.perf_counter()
        generate_dataset(workdir, config)
        print(f"generated {scenes} scenes in {time.perf_counter() - started:.0f} s: {workdir}")
    return workdir


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
    parser.add_argument("--dataroot", type=Path, help="an existing synthetic dataset")
    parser.add_argument("--version", default="v1.0-trainval")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/occvla_sight"))
    parser.add_argument("--scenes", type=int, default=52)
    parser.add_argument("--val-fraction", type=float, default=0.25)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=300)
    args = parser.parse_args()
    print(describe_machine())
    dataroot = args.dataroot or generate(args.workdir, args.scenes, args.val_fraction)
    nusc = open_nuscenes(dataroot.absolute(), args.version)
    train = split_arrays(dataroot, args.version, "train", nusc)
    val = split_arrays(dataroot, args.version, "val", nusc)
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


if __name__ == "__main__":
    main()
