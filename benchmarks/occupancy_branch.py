"""Parameter counts and the cost of one occupancy-branch training step, tiny and real presets.

    .venv/bin/python -m benchmarks.occupancy_branch [--presets tiny real] [--repeats 3]

For each preset: trainable / frozen parameter counts, then the median wall time of the branch's
forward alone and of forward + loss + backward at batch 1 (random weights and inputs: the cost
does not depend on them), and the process's peak resident memory growth over the run. The
visual input is 6 views x 256 tokens of the backbone's width (2304 for PaliGemma2-3B, 128 for
the tiny backbone).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch
from machine import describe_machine

from occvla_ros.constants import NUM_CAMERAS, NUM_OCC_CLASSES, OCC_GRID_SHAPE
from occvla_ros.model.occupancy import OccupancyBranch, OccupancyBranchConfig

TOKENS_PER_VIEW = 256
PRESETS = {
    "tiny": (OccupancyBranchConfig.tiny, 128),
    "real": (OccupancyBranchConfig, 2304),
}


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _median_seconds(step, repeats: int) -> float:
    step()  # warm-up: allocator, kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(preset: str, repeats: int) -> None:
    make_config, visual_dim = PRESETS[preset]
    torch.manual_seed(0)
    branch = OccupancyBranch(make_config(), visual_dim=visual_dim).train()
    trainable = sum(p.numel() for p in branch.trainable_parameters())
    frozen = sum(p.numel() for p in branch.vqvae.parameters())
    visual = torch.randn(1, NUM_CAMERAS * TOKENS_PER_VIEW, visual_dim, requires_grad=True)
    occupancy = torch.randint(0, NUM_OCC_CLASSES, (1, *OCC_GRID_SHAPE))
    camera_mask = torch.rand(1, *OCC_GRID_SHAPE) < 0.5
    rss_before = _peak_rss_mib()

    def forward() -> None:
        with torch.no_grad():
            branch(visual)

    def training_step() -> None:
        loss, _ = branch.loss(branch(visual), occupancy, camera_mask)
        loss.backward()
        branch.zero_grad(set_to_none=True)
        visual.grad = None

    forward_s = _median_seconds(forward, repeats)
    step_s = _median_seconds(training_step, repeats)
    print(
        f"{preset:5s} visual_dim {visual_dim:5d}  trainable {trainable:>11,d}"
        f"  frozen {frozen:>11,d}"
        f"  forward {forward_s:6.2f} s  forward+loss+backward {step_s:6.2f} s"
        f"  peak RSS growth {_peak_rss_mib() - rss_before:7.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", choices=sorted(PRESETS), default=["tiny", "real"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(describe_machine())
    print(f"{torch.get_num_threads()} torch threads")
    for preset in args.presets:
        measure(preset, args.repeats)


if __name__ == "__main__":
    main()
