"""Occupancy, meta-action and QA metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from occvla_ros.constants import FREE_CLASS, OCC3D_CLASS_NAMES
from occvla_ros.errors import ConfigError
from occvla_ros.evaluation.meta_action import MetaActionMetric
from occvla_ros.evaluation.occupancy import OccupancyMetric, iou_from_confusion
from occvla_ros.evaluation.qa import QAMetric, lcs_length, rouge_l
from occvla_ros.meta_action import MetaAction, MetaActionVocabulary


def random_labels(seed: int, shape=(2, 20, 20, 4)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = np.full(shape, FREE_CLASS, dtype=np.uint8)
    occupied = rng.uniform(size=shape) < 0.4
    labels[occupied] = rng.choice([1, 4, 7, 11, 15], size=occupied.sum())  # 5 present classes
    return labels


def test_label_against_itself_is_perfect_on_present_classes_and_nan_elsewhere():
    labels = random_labels(0)
    metric = OccupancyMetric(use_camera_mask=False)
    metric.update(labels, labels)
    result = metric.compute()
    present = {OCC3D_CLASS_NAMES[c] for c in (1, 4, 7, 11, 15)}
    for name, iou in result.per_class_iou.items():
        if name in present or name == "free":
            assert iou == 1.0
        else:
            assert math.isnan(iou)
    assert result.miou == 1.0 and result.geometry_iou == 1.0
    assert result.to_dict()["per_class_iou"]["bus"] is None  # NaN is JSON null


def test_confusion_matrix_camera_mask_and_ious_by_hand():
    gt = np.array([4, 4, 4, 7, FREE_CLASS, FREE_CLASS, 4])
    prediction = np.array([4, 4, 7, 7, 4, FREE_CLASS, 0])
    mask = np.array([1, 1, 1, 1, 1, 1, 0])  # the last voxel is not seen by a camera
    metric = OccupancyMetric()
    metric.update(prediction, gt, mask)
    result = metric.compute()
    confusion = np.array(result.confusion)
    assert confusion[4, 4] == 2 and confusion[4, 7] == 1 and confusion[FREE_CLASS, 4] == 1
    assert confusion.sum() == 6 == result.voxel_count
    assert result.per_class_iou["car"] == pytest.approx(2 / 4)  # TP 2, FN 1, FP 1
    assert result.per_class_iou["pedestrian"] == pytest.approx(1 / 2)  # TP 1, FP 1
    assert result.miou == pytest.approx((0.5 + 0.5) / 2)  # others/bus/... absent: NaN, excluded
    assert result.geometry_iou == pytest.approx(4 / 5)  # occupied TP 4, FP 1 (free -> car)
    unmasked = OccupancyMetric(use_camera_mask=False)
    unmasked.update(prediction, gt)
    assert unmasked.compute().voxel_count == 7
    assert unmasked.compute().per_class_iou["others"] == 0.0  # predicted once, never right


def test_occupancy_halves_equal_whole_and_bad_labels_are_errors():
    prediction, gt = random_labels(1), random_labels(2)
    mask = (np.random.default_rng(3).uniform(size=gt.shape) < 0.7).astype(np.uint8)
    whole, first, second = OccupancyMetric(), OccupancyMetric(), OccupancyMetric()
    whole.update(prediction, gt, mask)
    first.update(prediction[:1], gt[:1], mask[:1])
    second.update(prediction[1:], gt[1:], mask[1:])
    first.merge(second)
    assert first.compute().confusion == whole.compute().confusion
    np.testing.assert_array_equal(iou_from_confusion(np.zeros((2, 2))), [np.nan, np.nan])
    with pytest.raises(ConfigError, match=r"outside 0\.\.17"):
        whole.update(np.full(3, 18), np.zeros(3), np.ones(3))
    with pytest.raises(ConfigError, match="mask_camera"):
        whole.update(np.zeros(3), np.zeros(3))


def test_meta_action_accuracies_and_confusions():
    vocabulary = MetaActionVocabulary()
    index = {text: i for i, text in enumerate(vocabulary.texts)}
    gt = [
        index["decelerate, turn left"],
        index["keep speed, go straight"],
        index["stop, go straight"],
    ]
    predicted = [
        index["decelerate, turn left"],
        index["accelerate, go straight"],
        index["stop, turn right"],
    ]
    metric = MetaActionMetric(vocabulary)
    metric.update(np.array(predicted), np.array(gt))
    result = metric.compute()
    assert result["joint_accuracy"] == pytest.approx(1 / 3)
    assert result["speed_accuracy"] == pytest.approx(2 / 3)
    assert result["direction_accuracy"] == pytest.approx(2 / 3)
    speed = np.array(result["speed_confusion"])
    assert speed[vocabulary.speeds.index("keep speed"), vocabulary.speeds.index("accelerate")] == 1
    assert np.array(result["confusion"]).sum() == 3
    assert vocabulary.action(gt[0]) == MetaAction("decelerate", "turn left")
    with pytest.raises(ConfigError, match="outside"):
        metric.update(np.array([99]), np.array([0]))


def test_rouge_l_from_its_definition():
    assert lcs_length(["a", "b", "c", "d"], ["a", "c", "d", "e"]) == 3
    # LCS 4 of 4 candidate and 5 reference tokens: F = (1 + b^2) P R / (R + b^2 P), b = 1.2.
    p, r, b2 = 4 / 4, 4 / 5, 1.44
    assert rouge_l("the car turns left", "the red car turns left!") == pytest.approx(
        (1 + b2) * p * r / (r + b2 * p)
    )
    assert rouge_l("Same text.", "same text") == pytest.approx(1.0)
    assert rouge_l("nothing", "else") == 0.0


def test_qa_exact_match_for_closed_form_and_rouge_for_free_text():
    metric = QAMetric()
    metric.update(
        ["Yes.", "3", "decelerate, turn left", "2.5", "a car is ahead"],
        ["yes", "3.0", "Decelerate, turn left.", "2.4", "a truck is ahead of the ego car"],
    )
    result = metric.compute()
    assert result["closed_form_count"] == 4 and result["exact_match_accuracy"] == 0.75
    assert result["free_text_count"] == 1 and 0.0 < result["rouge_l"] < 1.0
