"""Drone profile: `ros2 launch spatialq_ros drone.launch.py [namespace:=...] [params_file:=...] [use_sim_time:=true]
[image_topic:=...] [log_level:=debug] [build_map:=true]`.

The node graph is defined once in spatialq_ros/ros/graph.py; `spatialq bringup drone` runs the same nodes in one process.
"""

from spatialq_ros.ros.launch_description import profile_launch_description


def generate_launch_description():
    return profile_launch_description("drone")
