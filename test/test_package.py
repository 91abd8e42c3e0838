"""Packaging: what colcon and ros2 launch read, checked where ROS tooling is not installed."""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_package_xml_is_format_3_ament_python_with_runtime_deps():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.get("format") == "3" and root.findtext("name") == "spatialq_ros"
    assert root.find("export/build_type").text == "ament_python"
    deps = {e.text for e in root.findall("exec_depend")}
    assert deps >= {"rclpy", "sensor_msgs", "std_msgs", "geometry_msgs", "nav_msgs", "visualization_msgs",
                    "diagnostic_msgs", "std_srvs", "launch", "launch_ros", "python3-numpy", "python3-opencv"}


def test_setup_installs_scripts_where_ros2_run_finds_them():
    cfg = (ROOT / "setup.cfg").read_text()
    assert "script_dir=$base/lib/spatialq_ros" in cfg and "install_scripts=$base/lib/spatialq_ros" in cfg
    assert (ROOT / "resource" / "spatialq_ros").exists()
    setup = (ROOT / "setup.py").read_text()
    assert "spatialq = spatialq_ros.cli:main" in setup


def test_launch_description_declares_the_profile_arguments():
    tree = ast.parse((ROOT / "spatialq_ros" / "ros" / "launch_description.py").read_text())
    declared = {node.args[0].value for node in ast.walk(tree) if isinstance(node, ast.Call)
                and getattr(node.func, "id", "") == "DeclareLaunchArgument" and isinstance(node.args[0], ast.Constant)}
    assert declared >= {"namespace", "params_file", "use_sim_time", "image_topic", "log_level"}


def test_each_launch_file_builds_its_profile_from_the_graph_spec():
    for profile in ("drone", "tractor"):
        tree = ast.parse((ROOT / "launch" / f"{profile}.launch.py").read_text())
        assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
                 and getattr(n.func, "id", "") == "profile_launch_description"]
        assert [c.args[0].value for c in calls] == [profile]


def test_every_node_of_the_graph_is_an_installed_executable():
    from spatialq_ros.ros.graph import PROFILES

    setup = (ROOT / "setup.py").read_text()
    for prof in PROFILES.values():
        for spec in prof.nodes:
            module = spec.entry.split(":")[0]
            assert f'"{spec.executable} = {module}:main",' in setup, spec.executable


def test_readme_quick_start_and_ci_agree():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
