"""Keep per-frame buffers in the heap: glibc malloc thresholds for a process that moves images.

By default glibc serves each allocation of 128 kB or more with a fresh mmap until its dynamic
threshold adapts, and with buffers allocated on one thread and freed on another (DDS threads,
rclpy callbacks, decoding workers, PyTorch) it often never does. Every fresh mapping page-faults
once per 4 kB page when first written. benchmarks/ros_echo_floor.py (a Python node receiving six
507 kB JPEGs per set, on the 2-core development VM) counts 341 page faults per image with the
defaults and none with the thresholds below; the set's round trip falls from 4.9-5.4 to 1.9-2.0 ms.

Fixing the thresholds also switches glibc's adaptation off, so they are chosen for the largest
per-frame buffers: a raw 1600x900 rgb8 image is 4.3 MB, a set of six with its copies about 30 MB.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# mallopt() parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD_BYTES = 16 << 20  # above any one frame buffer: those come from the heap
TRIM_THRESHOLD_BYTES = 64 << 20  # above a set's buffers: freed frames are not handed back


def keep_frame_buffers_in_heap() -> bool:
    """Set glibc's mmap and trim thresholds for this process; False where that is not possible
    (libc is not glibc, or mallopt refused), and the defaults stay.

    Call it once in a process that receives or decodes camera frames, after loading the model:
    with the thresholds fixed, freed buffers under 16 MiB stay in the process, and a loader's
    one-off copies should not. It changes the whole process's allocator, so a library never
    calls it on its own.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # macOS, Windows: no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    return mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1 and ok
