"""Stage datasets over the synthetic dataset: keys, shapes, dtypes, workers, bad files."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from occvla_ros.constants import OCC_GRID_SHAPE
from occvla_ros.data.datasets import NO_META_ACTION, KeyframeDataset, collate_keyframes
from occvla_ros.data.nuscenes_loader import load_records
from occvla_ros.errors import ConfigError, DataError
from occvla_ros.meta_action import MetaActionVocabulary

SIZE = 32
COMMON = {
    "token": str, "pixel_values": (torch.float32, (6, 3, SIZE, SIZE)),
    "ego_state": (torch.float32, (3,)), "command": str, "meta_action": (torch.int64, ()),
    "meta_action_text": str, "trajectory": (torch.float32, (6, 2)),
    "trajectory_mask": (torch.bool, (6,)), "past_trajectory": (torch.float32, (4, 2)),
    "past_mask": (torch.bool, (4,)), "situation": str,
}  # fmt: skip
STAGE_KEYS = {
    "qa": {"question": str, "answer": str},
    "occupancy_language": {
        "occupancy": (torch.int64, OCC_GRID_SHAPE), "occupancy_mask": (torch.bool, OCC_GRID_SHAPE)
    },
    "planning": {},
    "evaluation": {
        "scene_name": str, "trajectory_lidar": (torch.float32, (6, 2)),
        "lidar_to_ego": (torch.float32, (4, 4)),
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def records(synthetic_dataroot):
    return load_records(synthetic_dataroot, "v1.0-mini", "mini_val")


def check_sample(sample, expected):
    assert set(sample) == set(expected)
    for key, kind in expected.items():
        if kind is str:
            assert isinstance(sample[key], str), key
        else:
            dtype, shape = kind
            assert sample[key].dtype == dtype and tuple(sample[key].shape) == shape, key


@pytest.mark.parametrize("stage", list(STAGE_KEYS))
def test_sample_keys_shapes_and_dtypes(records, stage):
    dataset = KeyframeDataset(records, stage, SIZE)
    check_sample(dataset[0], {**COMMON, **STAGE_KEYS[stage]})
    batch = collate_keyframes([dataset[0], dataset[1], dataset[2]])
    assert batch["pixel_values"].shape == (3, 6, 3, SIZE, SIZE)
    assert batch["meta_action"].dtype == torch.int64 and batch["meta_action"].shape == (3,)
    assert isinstance(batch["token"], list) and len(batch["command"]) == 3
    assert batch["num_skipped"] == 0


def test_which_keyframes_each_stage_uses(records):
    with_future = [r for r in records if r.has_future]
    assert len(KeyframeDataset(records, "planning", SIZE)) == len(with_future) == len(records) - 1
    assert len(KeyframeDataset(records, "evaluation", SIZE)) == len(records)
    all_pairs = KeyframeDataset(records, "qa", SIZE)
    assert len(all_pairs) == sum(len(r.qa) for r in records)
    pairs = {(all_pairs[i]["question"], all_pairs[i]["answer"]) for i in range(len(all_pairs))}
    assert pairs == {pair for r in records for pair in r.qa}
    one_each = KeyframeDataset(records, "qa", SIZE, qa_pairs="sample")
    assert len(one_each) == len(records)
    assert (one_each[0]["question"], one_each[0]["answer"]) in records[0].qa
    last = KeyframeDataset(records, "evaluation", SIZE)[len(records) - 1]
    assert last["meta_action"] == NO_META_ACTION and not last["trajectory_mask"].any()


def test_values_come_from_the_records(records):
    dataset = KeyframeDataset(records, "occupancy_language", SIZE)
    sample, record = dataset[2], dataset.records[2]
    vocabulary = MetaActionVocabulary()
    assert vocabulary.action(int(sample["meta_action"])).text == record.meta_action
    np.testing.assert_allclose(sample["trajectory"].numpy(), record.future_ego, rtol=1e-6)
    with np.load(record.occupancy_path) as npz:
        np.testing.assert_array_equal(sample["occupancy"].numpy(), npz["semantics"])
        np.testing.assert_array_equal(sample["occupancy_mask"].numpy(), npz["mask_camera"] > 0)


def test_dataloader_with_two_workers(records):
    dataset = KeyframeDataset(records, "planning", SIZE)
    loader = DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collate_keyframes)
    tokens = []
    for batch in loader:
        assert batch["pixel_values"].shape[1:] == (6, 3, SIZE, SIZE)
        tokens += batch["token"]
    assert tokens == [r.token for r in dataset.records]


def with_image(record, path):
    return dataclasses.replace(record, image_paths=(str(path), *record.image_paths[1:]))


def test_bad_image_raises_naming_the_file_or_is_skipped(records, tmp_path, caplog):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    bad = [records[0], with_image(records[1], broken), records[2]]
    with pytest.raises(DataError, match=r"broken\.jpg"):
        KeyframeDataset(bad, "planning", SIZE)[1]
    skipping = KeyframeDataset(bad, "planning", SIZE, skip_bad=True)
    with caplog.at_level(logging.WARNING):
        assert skipping[1] is None
    assert skipping.num_skipped == 1 and "broken.jpg" in caplog.text
    batch = collate_keyframes([skipping[i] for i in range(3)])
    assert batch["num_skipped"] == 1 and batch["token"] == [records[0].token, records[2].token]
    # Across workers the count arrives with the batches.
    loader = DataLoader(skipping, batch_size=3, num_workers=2, collate_fn=collate_keyframes)
    assert sum(b["num_skipped"] for b in loader) == 1
    assert collate_keyframes([None, None]) is None


def test_bad_occupancy_file_names_it(records, tmp_path):
    broken = tmp_path / "labels.npz"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    record = dataclasses.replace(records[0], occupancy_path=str(broken))
    with pytest.raises(DataError, match=r"labels\.npz"):
        KeyframeDataset([record], "occupancy_language", SIZE)[0]
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(Path(records[0].occupancy_path).read_bytes()[:3000])
    record = dataclasses.replace(records[0], occupancy_path=str(truncated))
    with pytest.raises(DataError, match=r"truncated\.npz"):
        KeyframeDataset([record], "occupancy_language", SIZE)[0]
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, semantics=np.zeros((10, 10, 4), np.uint8), mask_camera=np.zeros((10, 10, 4)))
    record = dataclasses.replace(records[0], occupancy_path=str(wrong))
    with pytest.raises(DataError, match=r"wrong\.npz.*expected \(200, 200, 16\)"):
        KeyframeDataset([record], "occupancy_language", SIZE)[0]


def test_bad_arguments(records):
    with pytest.raises(ConfigError, match="unknown stage"):
        KeyframeDataset(records, "pretraining", SIZE)
    with pytest.raises(ConfigError, match="qa_pairs"):
        KeyframeDataset(records, "qa", SIZE, qa_pairs="some")
    small = MetaActionVocabulary(speeds=("stop",), directions=("go straight",))
    with pytest.raises(ConfigError, match="not in the meta-action vocabulary"):
        KeyframeDataset(records, "planning", SIZE, vocabulary=small)
