"""The allocator settings for processes that move images: thresholds, reserve and arena count."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from occvla_ros.runtime.heap import ARENA_VARIABLE
from tests.conftest import REPO_ROOT

# Six 507 kB buffers written on worker threads and dropped on the main thread, as the node's
# decoding workers do with camera images; prints the page faults per buffer.
FAULTS_PER_BUFFER = """
import resource, sys
from concurrent.futures import ThreadPoolExecutor
import numpy as np
from occvla_ros.runtime.heap import keep_frame_buffers_in_heap

if sys.argv[1] == "fixed" and not keep_frame_buffers_in_heap():
    sys.exit("mallopt refused")
workers = ThreadPoolExecutor(2)

def frame_buffer():
    buffer = np.empty(507_000, np.uint8)
    buffer.fill(1)
    return buffer

for _ in range(20):
    workers.submit(frame_buffer).result()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):
    buffers = [future.result() for future in [workers.submit(frame_buffer) for _ in range(6)]]
    del buffers
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 600)
"""


def faults_per_buffer(mode: str) -> float:
    result = subprocess.run(
        [sys.executable, "-c", FAULTS_PER_BUFFER, mode],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=120, check=True,
    )  # fmt: skip
    return float(result.stdout.strip())


def test_fixed_thresholds_stop_the_page_faults_of_frame_buffers():
    default, fixed = faults_per_buffer("defaults"), faults_per_buffer("fixed")
    # A 507 kB buffer spans 124 pages: with glibc's defaults most are faulted in afresh.
    assert default > 30, default
    assert fixed < 5, fixed


# Eight threads alive at once, each allocating once (a thread takes its arena at its first
# allocation); prints the number of arenas glibc's malloc_stats() reports.
ARENAS_IN_USE = """
import ctypes, ctypes.util, os, sys, threading
from occvla_ros.runtime.heap import limit_malloc_arenas

if sys.argv[1] == "limited":
    print(limit_malloc_arenas())
elif sys.argv[1] == "late":  # after imports that start threads
    import numpy, rclpy
    print(limit_malloc_arenas())
elif sys.argv[1] == "node":  # the node's module caps them before its imports
    import occvla_ros.ros.planner_node
started, release = threading.Barrier(9), threading.Event()

def allocate():
    buffer = bytearray(1 << 20)
    started.wait()
    release.wait()
    del buffer

threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads:
    thread.start()
started.wait()
sys.stderr.flush()
os.dup2(sys.stdout.fileno(), 2)  # malloc_stats() writes to the C stderr
ctypes.CDLL(ctypes.util.find_library("c")).malloc_stats()
release.set()
"""


def arenas_in_use(mode: str, arena_max: str | None = None) -> tuple[str, int]:
    """(what limit_malloc_arenas returned, or "" when not called; arenas in use)."""
    environment = {k: v for k, v in os.environ.items() if k != ARENA_VARIABLE}
    if arena_max is not None:
        environment[ARENA_VARIABLE] = arena_max
    result = subprocess.run(
        [sys.executable, "-c", ARENAS_IN_USE, mode],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=120, check=True, env=environment,
    )  # fmt: skip
    lines = result.stdout.splitlines()
    answer = lines[0] if mode in ("limited", "late") else ""
    return answer, sum(line.startswith("Arena ") for line in lines)


def test_limited_arenas_keep_new_threads_in_the_main_one():
    _, with_default = arenas_in_use("defaults")
    assert with_default > 2, with_default  # glibc gives each new thread its own arena
    answer, limited = arenas_in_use("limited")
    assert answer == "True" and limited == 1, (answer, limited)


def test_a_cap_after_numpy_and_rclpy_start_threads_is_ignored_so_the_node_caps_before():
    answer, late = arenas_in_use("late")
    assert answer == "True" and late > 1, (answer, late)  # glibc accepted it, and ignores it
    _, in_node = arenas_in_use("node")
    assert in_node == 1, in_node


def test_malloc_arena_max_in_the_environment_wins():
    answer, arenas = arenas_in_use("limited", arena_max="4")
    assert answer == "False" and 2 < arenas <= 4, (answer, arenas)


def test_heap_usage_tells_live_memory_from_freed_memory_kept_in_the_heap():
    from occvla_ros.runtime.heap import heap_usage

    before = heap_usage()
    assert before is not None  # glibc 2.36 here: mallinfo2 exists
    # 100 kB blocks, under glibc's default 128 kB mmap threshold, come from the heap; freeing
    # every other one leaves holes that the heap keeps.
    blocks = [bytearray(100_000) for _ in range(200)]
    allocated = heap_usage()
    assert allocated.in_use_bytes - before.in_use_bytes >= 190 * 100_000
    del blocks[::2]
    freed = heap_usage()
    assert allocated.in_use_bytes - freed.in_use_bytes >= 90 * 100_000
    assert freed.free_bytes - allocated.free_bytes >= 90 * 100_000


# One arena and a 32 MiB reserve, then frame-sized buffers written on worker threads and freed on
# the main thread, as in the node; prints the anonymous memory (kB) after the reserve and after
# the frames, and the page faults per frame buffer.
RESERVE_THEN_FRAMES = """
from occvla_ros.runtime.heap import keep_frame_buffers_in_heap, limit_malloc_arenas
limit_malloc_arenas()  # before numpy starts a thread, as the node does
import resource, sys
from concurrent.futures import ThreadPoolExecutor
import numpy as np

def anonymous_kb():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1])

workers = ThreadPoolExecutor(2)
workers.submit(int).result()  # the workers exist (and have their arena) before the reserve
before = anonymous_kb()
if not keep_frame_buffers_in_heap(int(sys.argv[1]) << 20):
    sys.exit("mallopt refused")
reserved = anonymous_kb()

def frame_buffer():
    buffer = np.empty(507_000, np.uint8)
    buffer.fill(1)
    return buffer

faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):  # up to 24 frames alive at once: 12 MB
    sets = [[workers.submit(frame_buffer) for _ in range(6)] for _ in range(4)]
    buffers = [future.result() for futures in sets for future in futures]
    del buffers
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
print(reserved - before, anonymous_kb() - reserved, faults / 1200)
"""


def reserve_then_frames(reserve_mib: int) -> tuple[int, int, float]:
    """(kB the reserve made resident, kB the frames added after it, page faults per frame)."""
    result = subprocess.run(
        [sys.executable, "-c", RESERVE_THEN_FRAMES, str(reserve_mib)],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=120, check=True,
        env={k: v for k, v in os.environ.items() if k != ARENA_VARIABLE},
    )  # fmt: skip
    reserved, added, faults = result.stdout.split()
    return int(reserved), int(added), float(faults)


def test_the_reserve_is_resident_and_takes_the_frames_without_growing():
    reserved, added, faults = reserve_then_frames(32)
    assert reserved >= 31 * 1024, reserved  # all of it written, and kept after the free
    assert added < 1024 and faults < 1, (added, faults)
    # Without it the same frames make the memory grow: the reserve is what holds it flat.
    _, added_without, _ = reserve_then_frames(0)
    assert added_without > 8 * 1024, added_without


def test_a_reserve_over_the_trim_threshold_is_refused():
    from occvla_ros.runtime.heap import TRIM_THRESHOLD_BYTES, keep_frame_buffers_in_heap

    with pytest.raises(ValueError, match="reserve_bytes"):
        keep_frame_buffers_in_heap(TRIM_THRESHOLD_BYTES)
