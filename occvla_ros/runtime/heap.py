"""Keep per-frame buffers in the heap: glibc malloc thresholds for a process that moves images.

By default glibc serves each allocation of 128 kB or more with a fresh mmap until its dynamic
threshold adapts, and with buffers allocated on one thread and freed on another (DDS threads,
rclpy callbacks, decoding workers, PyTorch) it often never does. Every fresh mapping page-faults
once per 4 kB page when first written. benchmarks/ros_echo_floor.py (a Python node receiving six
507 kB JPEGs per set, on the 2-core development VM) counts 341 page faults per image with the
defaults and none with the thresholds below; the set's round trip falls from 4.9-5.4 to 1.9-2.0 ms.

Fixing the thresholds also switches glibc's adaptation off, so they are chosen for the largest
per-frame buffers: a raw 1600x900 rgb8 image is 4.3 MB, a set of six with its copies about 30 MB.

Each such threshold applies per malloc arena, and glibc gives threads up to 8 arenas per core: a
frame allocated on a DDS thread, decoded on a worker and freed on the main thread leaves free
memory behind in several arenas, which each keep up to the trim threshold. The node caps them at
one, so every thread allocates from the main arena. ``heap_usage`` tells the two kinds of heap
growth apart: memory in use (Fast DDS's camera payloads reaching their high-water mark) and free
memory kept, which a periodic ``malloc_trim`` did not hold down (docs/ros-performance.md, What
the creep is).

A fresh node's heap grew by 28-41 MiB in its first seconds of camera input (payloads, frames in
flight and the holes between them) and by steps of 0.4-3 MiB later. The reserve of
``keep_frame_buffers_in_heap`` writes that working set once at start-up and frees it into the one
arena, where the fixed trim threshold keeps it: the frames then reuse pages that are already
resident. The anonymous memory then grew by 0.7 MiB in ten minutes at 12 Hz, all of it in the
first (docs/ros-performance.md, Heap reserve); the memory in use and the free memory show on
/diagnostics.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from dataclasses import dataclass

# mallopt() parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

MMAP_THRESHOLD_BYTES = 16 << 20  # above any one frame buffer: those come from the heap
TRIM_THRESHOLD_BYTES = 64 << 20  # above a set's buffers: freed frames are not handed back
# Chunks of the reserve: under the mmap threshold, so they come from the heap and return to it.
RESERVE_CHUNK_BYTES = 4 << 20
MALLOC_ARENAS = 1  # the arena that holds the reserve serves every thread
ARENA_VARIABLE = "MALLOC_ARENA_MAX"  # glibc's own setting, read at process start


@functools.cache  # find_library runs ldconfig; mallinfo2 is called once a diagnostics period
def _libc_function(name: str):
    """A glibc function by name, or None where this C library has none (macOS, Windows, musl)."""
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c")), name)
    except (OSError, AttributeError, TypeError):
        return None


def _mallopt(parameter: int, value: int) -> bool:
    """glibc's mallopt(); False where there is none or it refused."""
    if (mallopt := _libc_function("mallopt")) is None:
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(parameter, value) == 1


def limit_malloc_arenas(count: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas for the threads this process starts from now on.

    Call it before importing numpy, torch or rclpy: OpenBLAS starts a thread at numpy's import and
    rclpy at its own, and glibc fixes its arena limit when the first thread takes an arena; a cap
    set after that is accepted and ignored (tests/runtime/test_heap.py). ``MALLOC_ARENA_MAX``
    in the environment is the user's choice and is left alone (returns False then, as it does
    where mallopt is not available).
    """
    if ARENA_VARIABLE in os.environ:
        return False
    return _mallopt(_M_ARENA_MAX, count)


def keep_frame_buffers_in_heap(reserve_bytes: int = 0) -> bool:
    """Set glibc's mmap and trim thresholds for this process, then reserve ``reserve_bytes`` of
    resident free memory in the heap; False where that is not possible (libc is not glibc, or
    mallopt refused), and the defaults stay, without a reserve.

    Call it once in a process that receives or decodes camera frames, after loading the model:
    with the thresholds fixed, freed buffers under 16 MiB stay in the process, and a loader's
    one-off copies should not. The reserve serves the threads of the calling thread's arena, all
    of them after ``limit_malloc_arenas()``. It changes the whole process's allocator, so a
    library never calls it on its own.
    """
    if not 0 <= reserve_bytes < TRIM_THRESHOLD_BYTES:  # more would be trimmed at once
        raise ValueError(f"reserve_bytes={reserve_bytes} must be in [0, {TRIM_THRESHOLD_BYTES})")
    mmap_fixed = _mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    if not (_mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) and mmap_fixed):
        return False
    _reserve(reserve_bytes)
    return True


def _reserve(size: int) -> None:
    """Allocate ``size`` bytes in heap chunks, write every page, free them all: the freed chunks
    merge into free memory that stays resident under the trim threshold."""
    malloc, free = _libc_function("malloc"), _libc_function("free")
    malloc.argtypes, malloc.restype = (ctypes.c_size_t,), ctypes.c_void_p
    free.argtypes, free.restype = (ctypes.c_void_p,), None
    chunks = []
    for start in range(0, size, RESERVE_CHUNK_BYTES):
        length = min(RESERVE_CHUNK_BYTES, size - start)
        if (chunk := malloc(length)) is None:
            break  # out of memory: keep what was reserved
        ctypes.memset(chunk, 0, length)
        chunks.append(chunk)
    for chunk in chunks:
        free(chunk)


class _MallInfo2(ctypes.Structure):
    # struct mallinfo2 from glibc's <malloc.h> (glibc 2.33 and later), field for field.
    _fields_ = [
        (field, ctypes.c_size_t)
        for field in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


@dataclass(frozen=True)
class HeapUsage:
    """What malloc holds, over all arenas: a leak grows ``in_use``; memory the heap keeps but
    cannot reuse for the next request (fragmentation) grows ``free``."""

    in_use_bytes: int  # allocated and not yet freed, heap and mmapped chunks
    free_bytes: int  # freed, kept inside the heaps


def heap_usage() -> HeapUsage | None:
    """glibc's mallinfo2() summed over arenas; None where it is not available."""
    if (mallinfo2 := _libc_function("mallinfo2")) is None:
        return None
    mallinfo2.argtypes, mallinfo2.restype = (), _MallInfo2
    info = mallinfo2()
    return HeapUsage(info.uordblks + info.hblkhd, info.fordblks)
