"""The OccVLA model: pure PyTorch, no ROS, no data or evaluation imports."""
