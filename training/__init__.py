"""Offline training entry points, run from the repository: ``python -m training.train ...``.

Not installed with the ROS package: users of the planner node need only ``occvla_ros``.
"""
