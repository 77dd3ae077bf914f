"""nuScenes -> rosbag2 conversion (and, in occvla_ros.ros.bag_player, replay)."""
