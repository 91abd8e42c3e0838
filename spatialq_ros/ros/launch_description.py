"""The launch description of a profile, made from its graph spec (`graph.py`), for `ros2 launch`.

Arguments: namespace, params_file, use_sim_time, image_topic, log_level, and one switch per optional
node (build_map). Needs `launch` and `launch_ros`, which come with a ROS 2 install, not from PyPI.
"""

from __future__ import annotations

from .graph import profile


def profile_launch_description(profile_name: str):
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, LogInfo
    from launch.conditions import IfCondition
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node
    from launch_ros.parameter_descriptions import ParameterValue

    prof = profile(profile_name)
    arguments = [
        DeclareLaunchArgument("namespace", default_value=prof.namespace, description="namespace of every node"),
        DeclareLaunchArgument("params_file", default_value=str(prof.params_file), description="node parameters"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock (bag replay)"),
        DeclareLaunchArgument("image_topic", default_value=prof.topics["image"], description="camera topic"),
        DeclareLaunchArgument("log_level", default_value="info", description="ROS log level"),
    ]
    switches = sorted({spec.enabled_by for spec in prof.nodes if spec.enabled_by})
    arguments += [DeclareLaunchArgument(s, default_value="false", description=f"start the nodes of {s}")
                  for s in switches]
    image = LaunchConfiguration("image_topic")
    nodes = []
    for spec in prof.nodes:
        remappings = []
        for relative, key in spec.inputs:
            if key == "image":
                remappings.append((relative, image))
            elif key == "image/compressed":
                remappings.append((relative, [image, "/compressed"]))
            else:
                remappings.append((relative, prof.topics[key]))
        nodes.append(Node(
            package="spatialq_ros", executable=spec.executable, name=spec.name,
            namespace=LaunchConfiguration("namespace"), output="screen",
            parameters=[LaunchConfiguration("params_file"),
                        {"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)}],
            remappings=remappings, arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
            condition=IfCondition(LaunchConfiguration(spec.enabled_by)) if spec.enabled_by else None))
    banner = LogInfo(msg=[f"spatialq_ros {prof.name} profile: parameters from ", LaunchConfiguration("params_file")])
    return LaunchDescription([*arguments, banner, *nodes])
