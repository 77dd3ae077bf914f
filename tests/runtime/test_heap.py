"""keep_frame_buffers_in_heap: frame-sized buffers stop page-faulting on every allocation."""

from __future__ import annotations

import subprocess
import sys

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
