"""Time the planning metrics on a nuScenes-val-sized synthetic set, without the model.

    .venv/bin/python benchmarks/evaluation_metrics.py [--samples 6019] [--seed 0]

Synthetic arrays of the real size: 6,019 samples of 6 waypoints (0.5 s apart, ~0-15 m/s), 10-40
agent boxes per future step (cars, trucks, pedestrians; some appearing only in future frames), 15 %
of samples with a truncated future. Every convention rasterises its own agent occupancy, as in
evaluation. Prints one line per convention and the total.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from machine import describe_machine

from occvla_ros.constants import NUM_WAYPOINTS
from occvla_ros.evaluation.planning import PRESETS, PlanningMetric
from occvla_ros.evaluation.rasterize import FutureBoxes

CATEGORIES = np.array(
    ["vehicle.car", "vehicle.truck", "human.pedestrian.adult", "vehicle.bus.rigid"], dtype=object
)


def synthetic_sample(
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, FutureBoxes]:
    """(prediction, gt [T, 2], gt_mask [T], boxes) of one sample in a forward-is-x frame."""
    speed = rng.uniform(0.0, 15.0)
    steps = np.arange(1, NUM_WAYPOINTS + 1) * 0.5
    gt = np.stack([speed * steps, rng.normal(0, 0.1 * speed) * steps**2 / 4], axis=-1)
    prediction = gt + rng.normal(0, 0.3, gt.shape).cumsum(axis=0)
    gt_mask = np.ones(NUM_WAYPOINTS, bool)
    if rng.uniform() < 0.15:
        gt_mask[rng.integers(1, NUM_WAYPOINTS) :] = False
    per_step = rng.integers(10, 41, NUM_WAYPOINTS)
    count = int(per_step.sum())
    return (
        prediction,
        gt,
        gt_mask,
        FutureBoxes(
            step=np.repeat(np.arange(NUM_WAYPOINTS), per_step),
            center=rng.uniform(-40, 40, (count, 2)),
            size=np.stack([rng.uniform(0.6, 2.5, count), rng.uniform(0.6, 10.0, count)], -1),
            yaw=rng.uniform(-np.pi, np.pi, count),
            category=CATEGORIES[rng.integers(0, len(CATEGORIES), count)],
            tracked=rng.uniform(size=count) < 0.85,
            visibility=rng.integers(1, 5, count),
            frame_exists=gt_mask.copy(),
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=6019)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(describe_machine())
    rng = np.random.default_rng(args.seed)
    samples = [synthetic_sample(rng) for _ in range(args.samples)]
    boxes_per_step = np.mean([len(s[3].step) / NUM_WAYPOINTS for s in samples])
    print(f"{args.samples} samples, {boxes_per_step:.1f} boxes per step on average")
    total = 0.0
    for name in PRESETS:
        metric = PlanningMetric(name)
        start = time.perf_counter()
        for prediction, gt, gt_mask, boxes in samples:
            metric.update(prediction[None], gt[None], gt_mask[None], [boxes])
        result = metric.compute()
        elapsed = time.perf_counter() - start
        total += elapsed
        print(
            f"{name:<10} {elapsed:7.2f} s  ({1e3 * elapsed / args.samples:.2f} ms/sample)  "
            f"samples {result.sample_count}  L2 avg {result.table['l2']['avg']:.3f} m  "
            f"collision avg {100 * result.table['collision']['avg']:.2f} %"
        )
    print(f"all        {total:7.2f} s")


if __name__ == "__main__":
    main()
