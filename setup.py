from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "occvla_ros"
# ROS node executables: console scripts, and also in lib/occvla_ros/ where `ros2 run` and
# launch_ros look for them.
NODE_SCRIPTS = {
    "planner_node": "occvla_ros.ros.planner_node",
    "occupancy_node": "occvla_ros.ros.occupancy_node",
}
# The first lines are shell that Python reads as a string: they run the file with the python3 of
# the prefix it is installed in (a venv's, found relative to lib/occvla_ros/), else the python3
# on PATH.
LIBEXEC_TEMPLATE = """#!/bin/sh
'''':
python="$(dirname "$0")/../../bin/python3"
[ -x "$python" ] || python=python3
exec "$python" "$0" "$@"
'''
import sys

from {module} import main

sys.exit(main())
"""


def libexec_scripts() -> list[str]:
    """lib/occvla_ros/<node> for a wheel install (`pip install .`).

    colcon's `setup.py install` puts the console scripts there (setup.cfg), but pip always puts
    them in bin/, and launch_ros's Node(package=..., executable=...) looks only in
    <prefix>/lib/<package>/ ("libexec directory ... does not exist").
    """
    directory = Path("build") / "libexec"
    directory.mkdir(parents=True, exist_ok=True)
    scripts = []
    for name, module in NODE_SCRIPTS.items():
        script = directory / name
        script.write_text(LIBEXEC_TEMPLATE.format(module=module))
        script.chmod(0o755)
        scripts.append(str(script))
    return scripts


setup(
    name=PACKAGE,
    version="0.1.0",
    description="OccVLA vision-language-action driving planner for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    # training/ is run from the repository (python -m training.train); it is not installed.
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/rviz", glob("rviz/*.rviz")),
        (f"lib/{PACKAGE}", libexec_scripts()),
    ],
    # rclpy and the message packages come from the user's ROS distribution (or, on machines
    # without one, from requirements/ros.txt): never a hard requirement here.
    install_requires=[
        "setuptools",
        "numpy>=1.24,<2",
        "torch>=2.4",
        "transformers>=5.0,<6",
        "peft>=0.17",
        "safetensors",
        "tokenizers",
        "opencv-python-headless",
        "PyYAML",
        "tqdm",
        "pillow",
    ],
    extras_require={
        "data": ["nuscenes-devkit==1.2.0", "pyquaternion", "matplotlib", "shapely"],
        "bags": ["rosbags", "mcap", "mcap-ros2-support"],
    },
    zip_safe=True,
    entry_points={
        "console_scripts": [
            "occvla = occvla_ros.cli:main",
            *(f"{name} = {module}:main" for name, module in NODE_SCRIPTS.items()),
        ],
    },
)
