"""BEV figures: the ground truth stays visible under the predictions; the title tells the truth."""

from __future__ import annotations

import numpy as np

from occvla_ros.constants import FREE_CLASS
from occvla_ros.evaluation.figures import (
    OCCUPANCY_CAPTION,
    BevSample,
    _pyplot,
    bev_figure,
    plot_bev_samples,
)

GT_GREEN = np.array([44, 160, 44])  # matplotlib's tab:green


def sample(predictions: dict[str, np.ndarray], occupancy: np.ndarray | None = None) -> BevSample:
    gt = np.stack([2.5 * np.arange(1, 7), np.linspace(0.0, 3.0, 6)], axis=-1)  # ego frame
    return BevSample(
        token="0123456789abcdef",
        gt=gt,
        gt_mask=np.ones(6, bool),
        predictions={name: gt.copy() if p is None else p for name, p in predictions.items()},
        l2=0.0,
        occupancy=occupancy,
    )


def green_pixels(samples: list[BevSample], path) -> int:
    """Pixels of the saved figure in the ground truth's colour."""
    import matplotlib.image

    plot_bev_samples(samples, path, "test")
    image = (matplotlib.image.imread(path)[..., :3] * 255).round().astype(int)
    return int((np.abs(image - GT_GREEN).max(axis=-1) < 12).sum())


def test_ground_truth_stays_visible_under_predictions_lying_on_it(tmp_path):
    alone = green_pixels([sample({})], tmp_path / "alone.png")
    # Every method predicting exactly the ground truth: the worst case for hiding it.
    methods = {"model": None, "ego_mlp": None, "constant_velocity": None}
    covered = green_pixels([sample(methods)], tmp_path / "covered.png")
    assert alone > 0
    # Drawn under the predictions at the same width, 13 % of it showed; as a wider band, 55 %.
    assert covered >= 0.35 * alone


def test_title_names_the_occupancy_background_only_when_it_is_drawn():
    plt = _pyplot()
    plain = bev_figure([sample({"model": None})], "first samples")
    labels = np.full((200, 200, 16), FREE_CLASS, np.uint8)
    labels[100:110, 95:105, :4] = 4
    over = bev_figure([sample({"model": None}, labels)], "first samples")
    assert plain._suptitle.get_text() == "first samples"
    assert over._suptitle.get_text() == f"first samples {OCCUPANCY_CAPTION}"
    plt.close(plain)
    plt.close(over)
