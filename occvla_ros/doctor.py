"""``occvla doctor``: what is installed, and whether it is enough to run each part."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import platform
import sys

from occvla_ros import __version__
from occvla_ros.errors import ConfigError
from occvla_ros.resources import share_directory

# distribution name -> import name, grouped by what needs them.
REQUIRED = {
    "torch": "torch",
    "transformers": "transformers",
    "peft": "peft",
    "safetensors": "safetensors",
    "tokenizers": "tokenizers",
    "numpy": "numpy",
    "opencv-python-headless": "cv2",
    "PyYAML": "yaml",
}
OPTIONAL = {
    "nuscenes-devkit": "nuscenes",
    "rosbags": "rosbags",
    "mcap": "mcap",
    "accelerate": "accelerate",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--import", dest="do_import", action="store_true", help="also import each package"
    )


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _report(packages: dict[str, str], do_import: bool) -> list[str]:
    missing = []
    for distribution, module in packages.items():
        version = _version(distribution)
        status = version or "MISSING"
        if version and do_import:
            try:
                importlib.import_module(module)
            except Exception as error:  # a broken install must be reported, not crash doctor
                status = f"{version} (import failed: {error})"
                missing.append(distribution)
        if not version:
            missing.append(distribution)
        print(f"  {distribution:<24}{status}")
    return missing


def _ros_status() -> str:
    try:
        import rclpy  # noqa: F401
    except ImportError:
        return "not importable (source your ROS 2 setup, or `pip install -r requirements/ros.txt`)"
    distro = os.environ.get("ROS_DISTRO")
    return f"rclpy importable ({'ROS_DISTRO=' + distro if distro else 'PyPI wheels'})"


def _share_directory() -> str:
    try:
        return str(share_directory())
    except ConfigError as error:
        return f"not found: {error}"


def run(args: argparse.Namespace) -> int:
    print(f"occvla_ros {__version__} on Python {platform.python_version()} ({sys.executable})")
    print("required:")
    missing = _report(REQUIRED, args.do_import)
    print("optional (data, bags, multi-GPU):")
    _report(OPTIONAL, args.do_import)
    print(f"ROS 2: {_ros_status()}")
    print(f"share directory: {_share_directory()}")
    try:
        import torch

        accelerator = (
            f"CUDA ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "CPU only"
        )
    except ImportError:
        accelerator = "unknown (torch missing)"
    print(f"accelerator: {accelerator}")
    if missing:
        print(f"missing required packages: {', '.join(missing)}")
        return 1
    print("environment OK")
    return 0
