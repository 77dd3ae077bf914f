"""Camera images -> the model's normalised pixel tensors, from JPEG files or decoded frames.

JPEG files are decoded at reduced scale: libjpeg can produce 1/2, 1/4 or 1/8 of the picture
directly from the DCT coefficients (``cv2.IMREAD_REDUCED_COLOR_*``), which skips most of the
decoding work. The strongest reduction that keeps both sides >= the target size is chosen, so the
final resize only ever shrinks: a 1600x900 nuScenes image is decoded at 400x225 for 224 px and at
200x113 for 112 px (libjpeg rounds up).

Aspect ratio: every view is resized to S x S without keeping its 16:9 aspect ratio (a horizontal
squash), as PaliGemma's own processor does. Cropping to a square would drop the image edges
where neighbouring cameras overlap and padding would spend a third of the image tokens on grey.

Frames from the ROS runtime (``rgb8``, ``bgr8``, ``mono8`` arrays of any size) go through
:func:`frames_to_pixel_values` so training and deployment share the resize and normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from occvla_ros.constants import IMAGE_MEAN, IMAGE_STD
from occvla_ros.errors import DataError

# Reduction factor -> OpenCV flag decoding the JPEG at 1 / factor of its size.
_REDUCED_FLAGS = {
    8: cv2.IMREAD_REDUCED_COLOR_8,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    1: cv2.IMREAD_COLOR,
}
_JPEG_START = b"\xff\xd8"
_JPEG_END = b"\xff\xd9"
# Start-of-frame markers (baseline, extended, progressive, lossless ...) carry the image size.
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE})
FRAME_ENCODINGS = ("rgb8", "bgr8", "mono8")


def read_jpeg_bytes(path: str | Path) -> bytes:
    """The bytes of a complete JPEG file; :class:`DataError` naming it if missing or truncated."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read image {path}: {error.strerror or error}") from error
    if not data.startswith(_JPEG_START):
        raise DataError(f"image {path} is not a JPEG file (no start-of-image marker)")
    # Writers may pad after the end-of-image marker; a truncated file has none near its end.
    if _JPEG_END not in data[-64:]:
        raise DataError(f"image {path} is truncated (no JPEG end-of-image marker)")
    return data


def jpeg_size(data: bytes, name: str | Path = "<bytes>") -> tuple[int, int]:
    """(width, height) from a JPEG's start-of-frame header, without decoding."""
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            break
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if marker in _SOF_MARKERS and position + 9 <= len(data):
            height = int.from_bytes(data[position + 5 : position + 7], "big")
            width = int.from_bytes(data[position + 7 : position + 9], "big")
            return width, height
        position += 2 + length
    raise DataError(f"image {name} has no readable JPEG frame header")


def reduction_factor(width: int, height: int, size: int) -> int:
    """Strongest JPEG reduction (8, 4, 2 or 1) keeping both sides >= ``size``."""
    for factor in (8, 4, 2):
        if width // factor >= size and height // factor >= size:
            return factor
    return 1


def decode_jpeg(
    data: bytes, size: int, name: str | Path = "<bytes>", *, reduced_decode: bool = True
) -> np.ndarray:
    """BGR uint8 of JPEG bytes at the strongest reduction keeping both sides >= ``size``."""
    factor = 1
    if reduced_decode:
        width, height = jpeg_size(data, name)
        factor = reduction_factor(width, height, size)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _REDUCED_FLAGS[factor])
    if image is None:
        raise DataError(f"image {name} could not be decoded (corrupt JPEG data)")
    return image


def load_image(path: str | Path, size: int, *, reduced_decode: bool = True) -> np.ndarray:
    """RGB uint8 [size, size, 3] of a JPEG file (see the module docstring for the scaling)."""
    image = decode_jpeg(read_jpeg_bytes(path), size, path, reduced_decode=reduced_decode)
    return cv2.cvtColor(_resize_square(image, size), cv2.COLOR_BGR2RGB)


def _resize_square(image: np.ndarray, size: int) -> np.ndarray:
    height, width = image.shape[:2]
    if (height, width) == (size, size):
        return image
    shrinking = height >= size and width >= size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def normalize(images: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
    """RGB uint8 images [V, S, S, 3] -> float32 [V, 3, S, S] with IMAGE_MEAN / IMAGE_STD."""
    batch = torch.from_numpy(np.ascontiguousarray(np.stack(images)))  # [V, S, S, 3]
    pixels = batch.permute(0, 3, 1, 2).float().div_(255.0)  # [V, 3, S, S]
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    return pixels.sub_(mean).div_(std)


def load_pixel_values(
    paths: Sequence[str | Path], size: int, *, reduced_decode: bool = True
) -> torch.Tensor:
    """float32 [V, 3, size, size] of V JPEG files, in the order given."""
    return normalize([load_image(path, size, reduced_decode=reduced_decode) for path in paths])


def frame_to_rgb(frame: np.ndarray, encoding: str, size: int) -> np.ndarray:
    """RGB uint8 [size, size, 3] of a decoded ``rgb8`` / ``bgr8`` / ``mono8`` frame of any size."""
    frame = np.asarray(frame)
    expected_channels = 1 if encoding == "mono8" else 3
    if encoding not in FRAME_ENCODINGS:
        raise DataError(f"unsupported image encoding {encoding!r}; expected {FRAME_ENCODINGS}")
    if frame.dtype != np.uint8:
        raise DataError(f"{encoding} frame must be uint8, got {frame.dtype}")
    channels = 1 if frame.ndim == 2 else frame.shape[-1] if frame.ndim == 3 else -1
    if channels != expected_channels or min(frame.shape[:2]) == 0:
        raise DataError(f"{encoding} frame has shape {frame.shape}; expected [H, W] or [H, W, C]")
    resized = _resize_square(frame, size)
    if encoding == "mono8":
        return cv2.cvtColor(resized.reshape(size, size), cv2.COLOR_GRAY2RGB)
    if encoding == "bgr8":
        return cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(resized)


def frames_to_pixel_values(
    frames: Sequence[np.ndarray], encodings: Sequence[str], size: int
) -> torch.Tensor:
    """float32 [V, 3, size, size] of V decoded camera frames (the runtime's path)."""
    if len(frames) != len(encodings):
        raise DataError(f"{len(frames)} frames but {len(encodings)} encodings")
    return normalize([frame_to_rgb(f, e, size) for f, e in zip(frames, encodings, strict=True)])
