"""The contact sheet: layout, BEV orientation, and the `occvla contact-sheet` command."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from occvla_ros import cli
from occvla_ros.constants import FREE_CLASS, OCC3D_CLASS_COLORS, OCC_CLASS_ID, OCC_GRID_SHAPE
from occvla_ros.data import contact_sheet
from occvla_ros.data.nuscenes_loader import load_records


def test_top_down_classes_take_the_highest_occupied_voxel():
    semantics = np.full(OCC_GRID_SHAPE, FREE_CLASS, dtype=np.uint8)
    semantics[10, 20, 0] = OCC_CLASS_ID["driveable_surface"]
    semantics[10, 20, 5] = OCC_CLASS_ID["car"]
    semantics[11, 20, 0] = OCC_CLASS_ID["sidewalk"]
    top = contact_sheet.top_down_classes(semantics)
    assert top[10, 20] == OCC_CLASS_ID["car"]
    assert top[11, 20] == OCC_CLASS_ID["sidewalk"]
    assert top[0, 0] == FREE_CLASS


def test_bev_puts_forward_up_and_left_left(synthetic_dataroot, tmp_path):
    record = load_records(synthetic_dataroot, "v1.0-mini", "mini_train")[3]
    semantics = np.full(OCC_GRID_SHAPE, FREE_CLASS, dtype=np.uint8)
    semantics[190:, 100:] = OCC_CLASS_ID["vegetation"]  # far ahead (x > 36 m), on the left (y > 0)
    labels = tmp_path / "labels.npz"
    np.savez(labels, semantics=semantics, mask_camera=np.ones(OCC_GRID_SHAPE, np.uint8))
    record = dataclasses.replace(record, occupancy_path=str(labels))
    bev = contact_sheet.bev_image(record, 200)
    vegetation_bgr = OCC3D_CLASS_COLORS[OCC_CLASS_ID["vegetation"]][::-1]
    assert tuple(bev[2, 2]) == vegetation_bgr  # top-left corner
    assert tuple(bev[2, 197]) != vegetation_bgr and tuple(bev[197, 2]) != vegetation_bgr


def test_contact_sheet_command_writes_the_keyframe(synthetic_dataroot, tmp_path, capsys):
    records = load_records(synthetic_dataroot, "v1.0-mini", "mini_val")
    out = tmp_path / "sheet.png"
    argv = ["contact-sheet", "--dataroot", str(synthetic_dataroot), "--split", "mini_val",
            "--cache-dir", str(tmp_path / "cache"),
            "--token", records[5].token, "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    assert records[5].token in capsys.readouterr().out
    sheet = cv2.imread(str(out))
    height, width = sheet.shape[:2]
    tile_height = round(216 * contact_sheet.TILE_WIDTH / 384)  # the fixture's 384x216 images
    assert width == 3 * contact_sheet.TILE_WIDTH + 2 * tile_height
    assert height == 2 * tile_height + 34
    # Top-left tile is CAM_FRONT_LEFT, bottom-middle CAM_BACK.
    front_left = cv2.imread(records[5].image_paths[2])
    tile = cv2.resize(front_left, (contact_sheet.TILE_WIDTH, tile_height), cv2.INTER_AREA)
    assert np.abs(sheet[40:tile_height, :].astype(int)[:, : contact_sheet.TILE_WIDTH]
                  - tile[40:].astype(int)).mean() < 2  # fmt: skip
    with pytest.raises(SystemExit):
        cli.main([*argv[:-2], "--index", "3", *argv[-2:]])  # --token and --index exclude
    bad = [*argv[:7], "--index", "999", "--out", str(out)]
    assert cli.main(bad) == 2
