"""Report figures (matplotlib, Agg backend): BEV trajectories over occupancy, confusion matrices.

BEV plots are in the keyframe's ego frame with x (forward) pointing up and y (left) pointing
left, so they read like a map seen from above with the car driving up the page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from occvla_ros.constants import (
    FREE_CLASS,
    OCC3D_CLASS_COLORS,
    OCC_RANGE_MAX,
    OCC_RANGE_MIN,
)
from occvla_ros.evaluation.rasterize import FutureBoxes, box_corners

METHOD_STYLES = {
    "model": ("yellow", "OccVLA"),  # stands out on the magenta road
    "ego_mlp": ("tab:blue", "ego MLP"),
    "ego_command_mlp": ("tab:blue", "ego+command MLP"),
    "constant_velocity": ("tab:gray", "const. velocity"),
}
VIEW_RANGE_M = 30.0
GT_STYLE = {"linewidth": 6.0, "markersize": 7}  # wider than any prediction drawn over it
OCCUPANCY_CAPTION = "over the Occ3D ground truth (top view)"


@dataclass
class BevSample:
    """One sample to draw: GT and predicted waypoints [6, 2] in the ego frame."""

    token: str
    gt: np.ndarray
    gt_mask: np.ndarray
    predictions: dict[str, np.ndarray]
    l2: float
    occupancy: np.ndarray | None = None  # Occ3D labels [200, 200, 16]
    boxes: FutureBoxes | None = None  # ego frame
    extra: dict = field(default_factory=dict)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def occupancy_top_view(labels: np.ndarray) -> np.ndarray:
    """RGB float [X, Y, 3] of the highest non-free voxel of each column (white where all free)."""
    occupied = labels != FREE_CLASS  # [X, Y, Z]
    top = labels.shape[2] - 1 - np.argmax(occupied[:, :, ::-1], axis=2)  # highest occupied level
    top_class = np.take_along_axis(labels, top[..., None], axis=2)[..., 0]
    colours = np.asarray(OCC3D_CLASS_COLORS, dtype=np.float64) / 255.0
    image = colours[top_class.astype(np.int64)]
    image[~occupied.any(axis=2)] = 1.0
    return image


def _draw_sample(axis, sample: BevSample) -> None:
    if sample.occupancy is not None:
        (x_min, y_min, _), (x_max, y_max, _) = OCC_RANGE_MIN, OCC_RANGE_MAX
        # Rows follow x and columns y; draw y on the horizontal axis, inverted so left is left.
        axis.imshow(
            occupancy_top_view(sample.occupancy),
            origin="lower",
            extent=(y_min, y_max, x_min, x_max),
            interpolation="nearest",
        )
    if sample.boxes is not None and len(sample.boxes.step):
        last = sample.boxes.select(sample.boxes.step == sample.boxes.step.max())
        for corners in box_corners(last.center, last.size, last.yaw):
            closed = np.vstack([corners, corners[:1]])
            axis.plot(closed[:, 1], closed[:, 0], color="black", linewidth=0.6)
    valid = sample.gt_mask.astype(bool)
    gt = np.vstack([[0.0, 0.0], sample.gt[valid]])
    # The ground truth is a wide band under every prediction: a prediction lying on it (the
    # better the model, the more often) leaves it visible on both sides instead of hiding it.
    axis.plot(
        gt[:, 1], gt[:, 0], "o-", color="tab:green", **GT_STYLE, zorder=3, label="ground truth"
    )
    for method, waypoints in sample.predictions.items():
        colour, label = METHOD_STYLES.get(method, ("tab:purple", method))
        path = np.vstack([[0.0, 0.0], waypoints])
        # The model above the baselines and wider: baselines often lie on it and hid it.
        emphasis = {"linewidth": 1.8, "zorder": 5} if method == "model" else {"zorder": 4}
        axis.plot(
            path[:, 1], path[:, 0], "x--", color=colour, markersize=3, label=label, **emphasis
        )
    axis.add_patch(_ego_rectangle())
    axis.set_xlim(VIEW_RANGE_M, -VIEW_RANGE_M)
    axis.set_ylim(-VIEW_RANGE_M / 2, 1.5 * VIEW_RANGE_M)
    axis.set_aspect("equal")
    axis.set_title(f"{sample.token[:10]}  L2 {sample.l2:.2f} m", fontsize=8)
    axis.set_xlabel("y (m, left)", fontsize=7)
    axis.set_ylabel("x (m, forward)", fontsize=7)
    axis.tick_params(labelsize=6)


def _ego_rectangle():
    from matplotlib.patches import Rectangle

    # 4.084 m x 1.85 m, rear axle at the origin, drawn in (y, x) plot coordinates.
    return Rectangle((-0.925, -1.542), 1.85, 4.084, color="tab:red", alpha=0.5)


def plot_bev_samples(samples: list[BevSample], path: Path, title: str) -> Path:
    """A grid of BEV panels, one per sample; saved as PNG."""
    plt = _pyplot()
    figure = bev_figure(samples, title)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def bev_figure(samples: list[BevSample], title: str):
    """The matplotlib figure of :func:`plot_bev_samples`; the title says when the panels are
    drawn over the Occ3D ground truth (only samples that carry it, i.e. ``--with-occupancy``)."""
    plt = _pyplot()
    columns = min(3, max(1, len(samples)))
    rows = max(1, int(np.ceil(len(samples) / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 4.6 * rows), squeeze=False)
    for axis in axes.ravel()[len(samples) :]:
        axis.axis("off")
    for axis, sample in zip(axes.ravel(), samples, strict=False):
        _draw_sample(axis, sample)
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    if any(sample.occupancy is not None for sample in samples):
        title = f"{title} {OCCUPANCY_CAPTION}"
    figure.suptitle(title, fontsize=10)
    figure.tight_layout(rect=(0, 0.05, 1, 0.96))
    return figure


def plot_confusion(matrix: np.ndarray, labels: list[str], path: Path, title: str) -> Path:
    """Row-normalised confusion matrix (rows = ground truth) with a log-scaled colour map."""
    from matplotlib.colors import LogNorm

    plt = _pyplot()
    matrix = np.asarray(matrix, dtype=np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    size = max(5.0, 0.35 * len(labels) + 2)
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(
        np.where(normalised > 0, normalised, np.nan), cmap="viridis", norm=LogNorm(1e-4, 1.0)
    )
    axis.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    axis.set_yticks(range(len(labels)), labels, fontsize=7)
    axis.set_xlabel("predicted")
    axis.set_ylabel("ground truth")
    axis.set_title(title, fontsize=10)
    figure.colorbar(image, ax=axis, label="fraction of the GT row")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
