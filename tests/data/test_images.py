"""Image loading: reduced JPEG decode, square resize, normalisation, bad files, ROS frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from occvla_ros.constants import IMAGE_MEAN, IMAGE_STD
from occvla_ros.data import images
from occvla_ros.errors import DataError


def write_jpeg(path: Path, width: int, height: int) -> np.ndarray:
    """A smooth BGR test picture (gradients + a block) written as JPEG; returns the BGR array."""
    ys, xs = np.mgrid[0:height, 0:width]
    picture = np.stack([255 * xs / width, 255 * ys / height, 128 + 0 * xs], axis=-1).astype(
        np.uint8
    )
    picture[height // 4 : height // 2, width // 4 : width // 2] = (0, 0, 255)  # red block
    assert cv2.imwrite(str(path), picture, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return picture


@pytest.mark.parametrize(
    ("width", "height", "size", "factor"),
    [(1600, 900, 224, 4), (1600, 900, 112, 8), (1600, 900, 450, 2), (1600, 900, 451, 1),
     (384, 216, 112, 1), (384, 216, 100, 2)],
)  # fmt: skip
def test_reduction_factor_keeps_both_sides_at_least_the_target(width, height, size, factor):
    assert images.reduction_factor(width, height, size) == factor
    assert (width // factor >= size and height // factor >= size) or factor == 1


def test_jpeg_header_gives_the_size(tmp_path):
    write_jpeg(tmp_path / "a.jpg", 320, 180)
    assert images.jpeg_size((tmp_path / "a.jpg").read_bytes()) == (320, 180)


def test_reduced_decode_matches_full_decode(tmp_path):
    path = tmp_path / "cam.jpg"
    write_jpeg(path, 1600, 900)
    reduced = images.load_image(path, 224)
    full = images.load_image(path, 224, reduced_decode=False)
    assert reduced.shape == full.shape == (224, 224, 3)
    assert reduced.dtype == np.uint8
    # Same picture: only resampling differs.
    assert np.abs(reduced.astype(int) - full.astype(int)).mean() < 3.0
    # RGB order: the red block lands in channel 0.
    block = reduced[224 // 4 + 8 : 224 // 2 - 8, 224 // 4 + 8 : 224 // 2 - 8]
    assert block[..., 0].mean() > 200 and block[..., 2].mean() < 50


def test_pixel_values_are_normalised_in_camera_order(tmp_path):
    paths = []
    for i, (w, h) in enumerate([(640, 360), (320, 180)]):
        paths.append(tmp_path / f"{i}.jpg")
        write_jpeg(paths[-1], w, h)
    pixels = images.load_pixel_values(paths, 112)
    assert pixels.shape == (2, 3, 112, 112) and pixels.dtype == torch.float32
    expected = (images.load_image(paths[1], 112)[..., 1] / 255.0 - IMAGE_MEAN[1]) / IMAGE_STD[1]
    torch.testing.assert_close(pixels[1, 1], torch.from_numpy(expected).float())
    assert pixels.min() >= -1.0 and pixels.max() <= 1.0


def test_missing_file_names_it(tmp_path):
    with pytest.raises(DataError, match=r"missing\.jpg"):
        images.load_image(tmp_path / "missing.jpg", 112)


def test_truncated_jpeg_names_it(tmp_path):
    path = tmp_path / "cut.jpg"
    write_jpeg(path, 640, 360)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.jpg is truncated"):
        images.load_image(path, 112)


def test_garbage_with_jpeg_markers_names_it(tmp_path):
    path = tmp_path / "garbage.jpg"
    path.write_bytes(b"\xff\xd8" + bytes(range(256)) * 8 + b"\xff\xd9")
    with pytest.raises(DataError, match=r"garbage\.jpg"):
        images.load_image(path, 112)
    # Without the header shortcut cv2.imdecode itself must be caught returning None.
    with pytest.raises(DataError, match=r"garbage\.jpg could not be decoded"):
        images.load_image(path, 112, reduced_decode=False)


def test_non_jpeg_names_it(tmp_path):
    path = tmp_path / "image.png"
    cv2.imwrite(str(path), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError, match=r"image\.png is not a JPEG"):
        images.load_image(path, 112)


def test_frames_of_every_encoding_give_the_same_pixels():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    from_rgb = images.frames_to_pixel_values([rgb], ["rgb8"], 64)
    from_bgr = images.frames_to_pixel_values([rgb[..., ::-1].copy()], ["bgr8"], 64)
    torch.testing.assert_close(from_rgb, from_bgr)
    gray = rgb[..., 0].copy()
    from_mono = images.frames_to_pixel_values([gray], ["mono8"], 64)
    assert from_mono.shape == (1, 3, 64, 64)
    torch.testing.assert_close(from_mono[0, 0], from_mono[0, 2])
    # Upscaling small frames works too.
    assert images.frames_to_pixel_values([rgb[:20, :30]], ["rgb8"], 64).shape == (1, 3, 64, 64)


@pytest.mark.parametrize(
    ("frame", "encoding", "message"),
    [
        (np.zeros((4, 4, 3), np.uint8), "yuv422", "unsupported image encoding"),
        (np.zeros((4, 4, 3), np.float32), "rgb8", "must be uint8"),
        (np.zeros((4, 4), np.uint8), "rgb8", "shape"),
        (np.zeros((4, 4, 3), np.uint8), "mono8", "shape"),
        (np.zeros((0, 4, 3), np.uint8), "rgb8", "shape"),
    ],
)
def test_bad_frames_raise(frame, encoding, message):
    with pytest.raises(DataError, match=message):
        images.frames_to_pixel_values([frame], [encoding], 32)


def test_decode_jpeg_bytes_at_reduced_scale(tmp_path):
    path = tmp_path / "cam.jpg"
    write_jpeg(path, 1600, 900)
    data = path.read_bytes()
    assert images.decode_jpeg(data, 224).shape == (225, 400, 3)
    assert images.decode_jpeg(data, 112).shape == (113, 200, 3)  # libjpeg rounds up
    assert images.decode_jpeg(data, 224, reduced_decode=False).shape == (900, 1600, 3)
