from glob import glob

from setuptools import find_packages, setup

PACKAGE = "occvla_ros"

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
            "planner_node = occvla_ros.ros.planner_node:main",
            "occupancy_node = occvla_ros.ros.occupancy_node:main",
        ],
    },
)
