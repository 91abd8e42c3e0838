"""`spatialq bringup PROFILE`: the profile's nodes in one process, as `ros2 launch` would start them."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("profile", choices=("drone", "tractor"), help="robot profile (config/PROFILE.yaml)")
    parser.add_argument("--params-file", help="parameters file (default: the profile's config/PROFILE.yaml)")
    parser.add_argument("--namespace", help="node namespace (default: the profile name)")
    parser.add_argument("--image-topic", help="camera topic (default: the profile's)")
    parser.add_argument("--use-sim-time", action="store_true", help="follow /clock (bag replay)")
    parser.add_argument("--build-map", action="store_true", help="also run map_builder_node")
    parser.add_argument("--set", action="append", default=[], metavar="[NODE.]NAME=VALUE",
                        help="override a parameter (YAML value), e.g. --set size=224x224 --set perception_node.map=m.npz")


def parse_overrides(items: list[str]) -> dict[str, dict]:
    import yaml

    from ..errors import SpatialqError

    overrides: dict[str, dict] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SpatialqError(f"--set {item!r}: expected NAME=VALUE or NODE.NAME=VALUE")
        node, _, name = key.rpartition(".")
        value = yaml.safe_load(text) if text else ""
        if name == "size" or isinstance(value, (dict, list)) or value is None:
            value = text  # sizes like 448x448 and other plain words stay strings
        overrides.setdefault(node or "*", {})[name] = value
    return overrides


def run(args: argparse.Namespace) -> int:
    import os

    from ..ros.bringup import ANNOUNCE_S, create_profile_nodes, serve

    overrides = parse_overrides(args.set)

    def make(context) -> list:
        return create_profile_nodes(args.profile, context, params_file=args.params_file, namespace=args.namespace,
                                    image_topic=args.image_topic, use_sim_time=args.use_sim_time,
                                    enable={"build_map"} if args.build_map else set(), overrides=overrides,
                                    announce_s=ANNOUNCE_S)

    def started(nodes: list) -> None:
        print(f"spatialq bringup {args.profile}: running " + ", ".join(n.get_fully_qualified_name() for n in nodes)
              + f" (ROS_DOMAIN_ID {os.environ.get('ROS_DOMAIN_ID', '0')}); Ctrl-C stops", flush=True)

    serve(make, started=started)
    return 0
