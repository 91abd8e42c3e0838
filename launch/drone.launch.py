"""Drone profile: `ros2 launch spatialq_ros drone.launch.py`.

Nodes are added as they land (see README); for now it declares the profile's arguments and parameters.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo
from launch.substitutions import LaunchConfiguration


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("spatialq_ros")
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="drone"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "drone.yaml")),
        DeclareLaunchArgument("use_sim_time", default_value="false"),
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw"),
        DeclareLaunchArgument("log_level", default_value="info"),
        LogInfo(msg=["spatialq_ros drone profile, parameters from ", LaunchConfiguration("params_file")]),
    ])
