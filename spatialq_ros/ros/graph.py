"""The node graph of each profile, defined once.

`launch/*.launch.py` turn it into launch_ros `Node` actions; `spatialq bringup` and `spatialq replay`
instantiate the same nodes in one process. Plain data and YAML only (no rclpy), so the graph is
testable everywhere.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import SpatialqError

PACKAGE = "spatialq_ros"


@dataclass(frozen=True)
class NodeSpec:
    name: str
    executable: str  # console script installed in lib/spatialq_ros
    entry: str  # "module:Class" for in-process bringup
    inputs: tuple[tuple[str, str], ...]  # (node-relative topic, profile topic key) remappings
    enabled_by: str = ""  # a launch argument / bringup flag that switches the node on; "" = always

    def node_class(self):
        module, name = self.entry.split(":")
        return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Profile:
    name: str
    namespace: str
    topics: dict  # topic key -> default absolute topic (image, camera_info, pose)
    nodes: tuple[NodeSpec, ...]

    @property
    def params_file(self) -> Path:
        return config_dir() / f"{self.name}.yaml"

    def remappings(self, spec: NodeSpec, image_topic: str | None = None) -> list[tuple[str, str]]:
        """The node's relative input topics mapped onto this robot's topics (image_topic overrides the camera)."""
        topics = dict(self.topics)
        if image_topic:
            topics["image"] = image_topic
        remaps = []
        for relative, key in spec.inputs:
            topic = topics[key.removesuffix("/compressed")]
            remaps.append((relative, topic + "/compressed" if key.endswith("/compressed") else topic))
        return remaps

    def node(self, name: str) -> NodeSpec:
        for spec in self.nodes:
            if spec.name == name:
                return spec
        raise SpatialqError(f"profile {self.name} has no node {name!r}")


PERCEPTION = NodeSpec(
    name="perception_node", executable="perception_node", entry="spatialq_ros.ros.perception_node:PerceptionNode",
    inputs=(("image", "image"), ("image/compressed", "image/compressed"), ("camera_info", "camera_info")))
MAP_BUILDER = NodeSpec(
    name="map_builder_node", executable="map_builder_node", entry="spatialq_ros.ros.map_builder_node:MapBuilderNode",
    inputs=(("image", "image"), ("image/compressed", "image/compressed"), ("pose", "pose")), enabled_by="build_map")

PROFILES = {
    "drone": Profile("drone", "drone", {"image": "/camera/image_raw", "camera_info": "/camera/camera_info",
                                        "pose": "/odom"}, (PERCEPTION, MAP_BUILDER)),
    "tractor": Profile("tractor", "tractor", {"image": "/front_camera/image_raw",
                                              "camera_info": "/front_camera/camera_info", "pose": "/odom"},
                       (PERCEPTION, MAP_BUILDER)),
}


def profile(name: str) -> Profile:
    if name not in PROFILES:
        raise SpatialqError(f"unknown profile {name!r} (choose from {', '.join(PROFILES)})")
    return PROFILES[name]


def config_dir() -> Path:
    """config/ of the installed package (colcon: share/spatialq_ros/config) or of the source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory

        installed = Path(get_package_share_directory(PACKAGE)) / "config"
        if installed.is_dir():
            return installed
    except Exception:  # noqa: BLE001 - no ament index (pip install): fall back to the source tree
        pass
    return Path(__file__).resolve().parents[2] / "config"


def node_parameters(params_file: str | Path, node_name: str, namespace: str = "") -> dict:
    """The parameters a ROS 2 params file gives `node_name` in `namespace`, as rcl would resolve them.

    Keys may be `/**`, `/**/name` or `/namespace/name`; later, more specific keys win.
    """
    path = Path(params_file)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise SpatialqError(f"{path}: cannot read the parameters file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise SpatialqError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise SpatialqError(f"{path}: a parameters file maps node names to ros__parameters")
    full = "/" + "/".join(p for p in (namespace.strip("/"), node_name) if p)
    matched = []
    for key, body in data.items():
        rank = _match_rank(str(key), node_name, full)
        if rank is None:
            continue
        if not isinstance(body, dict) or not isinstance(body.get("ros__parameters"), dict):
            raise SpatialqError(f"{path}: {key}: expected a ros__parameters mapping")
        matched.append((rank, body["ros__parameters"]))
    params: dict = {}
    for _, values in sorted(matched, key=lambda m: m[0]):
        params.update(values)
    return params


def _match_rank(key: str, node_name: str, full: str) -> int | None:
    if key == "/**":
        return 0
    if key == "/**/" + node_name:
        return 1
    if key == full or key.lstrip("/") == full.lstrip("/"):
        return 2
    return None
