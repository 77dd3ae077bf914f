"""The ROS-agnostic runtime: the Planner the nodes wrap, input synchronisation, ego state."""
