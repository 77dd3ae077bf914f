"""interfaces/build.sh: ROS interface packages PyPI lacks, built with PyPI's rosidl toolchain."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.ros import REPO_ROOT

# tf2_msgs/msg/TFMessage's hash in real ROS 2 systems (Jazzy and later): the same definition.
TF_MESSAGE_HASH = "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087"


@pytest.mark.skipif(
    shutil.which("cmake") is None, reason="no cmake here: the setup goes on without tf2_msgs"
)
def test_the_setup_built_tf2_msgs_with_the_real_type_hash():
    from tf2_msgs.msg import TFMessage

    message = TFMessage()
    assert message.transforms == []
    description = Path(sys.prefix) / "share" / "tf2_msgs" / "msg" / "TFMessage.json"
    hashes = json.loads(description.read_text())["type_hashes"]
    assert {"type_name": "tf2_msgs/msg/TFMessage", "hash_string": TF_MESSAGE_HASH} in hashes


def test_without_cmake_or_a_compiler_the_build_says_so_in_one_line_and_goes_on(tmp_path):
    # A PATH holding only what the script needs before its check: no cmake, no compiler.
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("bash", "dirname", "basename", "sed", "make"):
        (tools / tool).symlink_to(shutil.which(tool))
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "interfaces" / "build.sh"), "interfaces/tf2_msgs", sys.prefix],
        cwd=REPO_ROOT, env={**os.environ, "PATH": str(tools)}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "tf2_msgs not built: cmake, a C++ compiler missing (needs cmake >= 3.21, g++, make, "
        "python3-dev); going on without it"
    ]
