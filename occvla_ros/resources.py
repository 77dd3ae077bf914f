"""Where the installed package's data files (config/, launch/, rviz/) are."""

from __future__ import annotations

import sysconfig
from pathlib import Path

from occvla_ros.errors import ConfigError

PACKAGE = "occvla_ros"


def share_directory() -> Path:
    """share/occvla_ros: from the ament index when a ROS environment is sourced, else the
    ``share/`` of the Python environment the package was pip-installed into, else the source
    checkout this module runs from."""
    try:
        from ament_index_python.packages import (
            PackageNotFoundError,
            get_package_share_directory,
        )
    except ImportError:
        pass
    else:
        try:
            return Path(get_package_share_directory(PACKAGE))
        except (PackageNotFoundError, LookupError, OSError):
            pass  # no AMENT_PREFIX_PATH, e.g. a plain virtual environment
    installed = Path(sysconfig.get_paths()["data"]) / "share" / PACKAGE
    checkout = Path(__file__).resolve().parents[1]  # running from a source tree, not installed
    for candidate in (installed, checkout):
        if (candidate / "package.xml").is_file() and (candidate / "config").is_dir():
            return candidate
    raise ConfigError(
        f"cannot find share/{PACKAGE}: source your ROS workspace (install/setup.bash) or install "
        "the package non-editably (`make install` or `pip install .`)"
    )
