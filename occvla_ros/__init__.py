"""OccVLA for ROS 2: model, data, evaluation, runtime and nodes.

Layering (data flows one way): data -> model -> runtime -> ros. Nothing outside ``ros/`` imports
rclpy, and ``model/`` never imports ``data/`` or ``evaluation/``.
"""

__version__ = "0.1.0"
