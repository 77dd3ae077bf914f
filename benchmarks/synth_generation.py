"""Time the synthetic dataset generator and count the meta-actions its scenes produce.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 taskset -c 0 \
        .venv/bin/python -m benchmarks.synth_generation [--scenes 2] [--duration 20]
        [--width 1600] [--height 900] [--no-sweeps] [--version v1.0-mini]
        [--meta-action-scenes 40] [--keep DIR]

Generates a dataset into a temporary directory (or DIR) on one core (taskset) and prints the
total, the time per stage (world building, rendering, JPEG encoding, keyframe sensing =
LIDAR_TOP + Occ3D voxelisation and ray casting + annotations, QA), per keyframe and per image.
Then builds ``--meta-action-scenes`` worlds (no sensors) and prints how often each meta-action
occurs when its keyframes are labelled by ``occvla_ros.data.labels``.
"""

from __future__ import annotations

import argparse
import collections
import os
import tempfile
import time
from pathlib import Path

import cv2
from machine import describe_machine

from occvla_ros.data.synth import SynthConfig, generate_dataset, omnidrive
from occvla_ros.data.synth.world import build_world
from occvla_ros.meta_action import MetaActionVocabulary


def time_generation(config: SynthConfig, directory: Path) -> None:
    started, cpu_started = time.perf_counter(), time.process_time()
    summary = generate_dataset(directory, config)
    total = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    size = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
    print(
        f"{config.num_scenes} scenes x {config.scene_duration_s:g} s at "
        f"{config.image_width}x{config.image_height}, sweeps {config.camera_sweeps}: "
        f"{summary.keyframes} keyframes, {summary.images} images, {size / 1e6:.0f} MB"
    )
    # On a shared machine the CPU time of this process is the fairer one-core figure.
    print(f"  total {total:.1f} s wall, {cpu:.1f} s CPU")
    print(f"  {'stage':<18}{'wall':>8}{'CPU':>8}")
    for stage, seconds in summary.seconds.items():
        if stage != "total":
            print(f"  {stage:<18}{seconds:7.2f}s{summary.cpu_seconds[stage]:7.2f}s")
    cpu = summary.cpu_seconds
    camera_seconds = cpu["render"] + cpu["encode"]
    print(
        f"  CPU per image (render + encode + write) {1000 * camera_seconds / summary.images:.1f} ms"
    )
    sensing = cpu["keyframe sensing"] + cpu["qa"]
    per_keyframe = 1000 * sensing / summary.keyframes
    print(f"  CPU per keyframe (lidar, Occ3D, annotations, QA) {per_keyframe:.0f} ms")


def count_meta_actions(seed: int, scenes: int, duration: float) -> None:
    counts: collections.Counter[str] = collections.Counter()
    keyframes = round(duration * 2)
    for index in range(scenes):
        world = build_world(seed, index, duration)
        for k in range(keyframes):
            facts = omnidrive.keyframe_facts(world, k * 0.5, scene_end_s=(keyframes - 1) * 0.5)
            action = omnidrive.meta_action(facts)
            if action is not None:
                counts[action.text] += 1
    vocabulary = MetaActionVocabulary()
    present = sum(1 for text in vocabulary.texts if counts[text])
    print(
        f"meta-actions over {scenes} scenes x {duration:g} s (seed {seed}): "
        f"{present}/{len(vocabulary)} classes present"
    )
    for text in vocabulary.texts:
        print(f"  {counts[text]:5d}  {text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=2)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--no-sweeps", action="store_true")
    parser.add_argument("--version", default="v1.0-mini")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--meta-action-scenes", type=int, default=40)
    parser.add_argument("--keep", type=Path, help="write the dataset here instead of a temp dir")
    args = parser.parse_args()
    print(describe_machine())
    cv2.setNumThreads(1)
    config = SynthConfig(
        seed=args.seed,
        num_scenes=args.scenes,
        scene_duration_s=args.duration,
        image_width=args.width,
        image_height=args.height,
        camera_sweeps=not args.no_sweeps,
        version=args.version,
    )
    if args.keep:
        time_generation(config, args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="synth-benchmark-") as directory:
            time_generation(config, Path(directory) / "nuscenes")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    if args.meta_action_scenes:
        count_meta_actions(args.seed, args.meta_action_scenes, args.duration)


if __name__ == "__main__":
    main()
