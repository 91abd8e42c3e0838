"""The graph spec: profiles, parameter resolution as rcl does it, remappings, and the YAML files' contents."""

from __future__ import annotations

import pytest

from spatialq_ros.errors import SpatialqError
from spatialq_ros.ros.graph import PROFILES, node_parameters, profile


def test_profile_yaml_gives_each_node_the_shared_and_its_own_parameters():
    drone = profile("drone")
    perception = node_parameters(drone.params_file, "perception_node", "drone")
    assert perception["size"] == "448x448" and perception["autostart"] is True and "map" in perception
    builder = node_parameters(drone.params_file, "map_builder_node", "drone")
    assert builder["size"] == "448x448" and "max_keypoints" not in builder and builder["min_distance"] == 5.0
    assert node_parameters(profile("tractor").params_file, "perception_node", "tractor")["size"] == "448x224"


def test_yaml_parameters_are_ones_the_nodes_declare_with_the_declared_types():
    pytest.importorskip("rclpy")
    from spatialq_ros.ros import map_builder_node, perception_node

    declared = {"perception_node": perception_node.PARAMETERS, "map_builder_node": map_builder_node.PARAMETERS}
    for prof in PROFILES.values():
        for spec in prof.nodes:
            specs = {s.name: s for s in declared[spec.name]}
            for name, value in node_parameters(prof.params_file, spec.name, prof.namespace).items():
                assert name in specs, f"{prof.name}.yaml: {spec.name} has no parameter {name}"
                assert type(value) is type(specs[name].default), f"{prof.name}.yaml: {spec.name}.{name}"


def test_more_specific_keys_win(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("/**:\n  ros__parameters: {a: 1, b: 1, c: 1}\n/**/n:\n  ros__parameters: {b: 2, c: 2}\n"
                 "/ns/n:\n  ros__parameters: {c: 3}\n/other:\n  ros__parameters: {a: 9}\n")
    assert node_parameters(f, "n", "ns") == {"a": 1, "b": 2, "c": 3}
    assert node_parameters(f, "n", "elsewhere") == {"a": 1, "b": 2, "c": 2}


@pytest.mark.parametrize("text, message", [("a: [", "not valid YAML"), ("- 1\n- 2\n", "maps node names"),
                                           ("/**:\n  other: 1\n", "ros__parameters")])
def test_bad_parameter_files_are_one_line_errors(tmp_path, text, message):
    f = tmp_path / "p.yaml"
    f.write_text(text)
    with pytest.raises(SpatialqError, match=message):
        node_parameters(f, "n", "ns")
    with pytest.raises(SpatialqError, match="cannot read"):
        node_parameters(tmp_path / "missing.yaml", "n", "ns")


def test_remappings_follow_the_image_topic():
    drone = profile("drone")
    spec = drone.node("perception_node")
    assert dict(drone.remappings(spec)) == {"image": "/camera/image_raw",
                                            "image/compressed": "/camera/image_raw/compressed",
                                            "camera_info": "/camera/camera_info"}
    moved = dict(drone.remappings(spec, "/cam2/image"))
    assert moved["image"] == "/cam2/image" and moved["image/compressed"] == "/cam2/image/compressed"
    assert dict(drone.remappings(drone.node("map_builder_node")))["pose"] == "/odom"


def test_unknown_profile_or_node():
    with pytest.raises(SpatialqError, match="unknown profile 'boat'"):
        profile("boat")
    with pytest.raises(SpatialqError, match="no node"):
        profile("drone").node("radar_node")


def test_launch_description_content_where_launch_ros_is_installed():
    pytest.importorskip("launch_ros", reason="launch_ros comes with a ROS 2 install, not from PyPI")
    from launch.actions import DeclareLaunchArgument
    from launch_ros.actions import Node

    from spatialq_ros.ros.launch_description import profile_launch_description

    for name, prof in PROFILES.items():
        entities = profile_launch_description(name).entities
        args = {e.name: e.default_value for e in entities if isinstance(e, DeclareLaunchArgument)}
        assert {"namespace", "params_file", "use_sim_time", "image_topic", "log_level", "build_map"} <= set(args)
        nodes = [e for e in entities if isinstance(e, Node)]
        assert [n.node_executable for n in nodes] == [s.executable for s in prof.nodes]
