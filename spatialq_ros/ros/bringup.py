"""A profile's node graph in one process: for machines without `ros2 launch`, and for replay.

The nodes, their parameters (the profile's YAML) and remappings come from `graph.py`, exactly as the
launch files use them.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions

from ..errors import SpatialqError
from .graph import node_parameters, profile

ANNOUNCE_S = 3.0  # a process that cannot start waits this long at most for /diagnostics to take its ERROR


def create_profile_nodes(profile_name: str, context, *, params_file: str | None = None, namespace: str | None = None,
                         image_topic: str | None = None, use_sim_time: bool = False, enable: set[str] | None = None,
                         overrides: dict[str, dict] | None = None, announce_s: float = 0.0) -> list:
    """The profile's nodes, constructed (and autostarted) with the same parameters the launch file gives them.

    overrides: node name (or "*" for every node) -> parameter values that replace the file's.
    announce_s: a node that fails to start first gets up to this long to deliver its ERROR on /diagnostics
    (for a process that exits on the error; in-process callers get it as the SpatialqError).
    """
    prof = profile(profile_name)
    ns = prof.namespace if namespace is None else namespace
    overrides = overrides or {}
    nodes: list = []
    try:
        for spec in prof.nodes:
            if spec.enabled_by and spec.enabled_by not in (enable or set()):
                continue
            params = node_parameters(params_file or prof.params_file, spec.name, ns)
            params.update(overrides.get("*", {}))
            params.update(overrides.get(spec.name, {}))
            params = _as_declared(params, spec.node_class().PARAMETERS)
            params["use_sim_time"] = use_sim_time
            remaps = [arg for a, b in prof.remappings(spec, image_topic) for arg in ("-r", f"{a}:={b}")]
            node = spec.node_class()(context=context, namespace=ns, cli_args=["--ros-args", *remaps],
                                     parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
            nodes.append(node)
            _require_started(node, announce_s)
    except Exception:
        for node in nodes:
            node.destroy_node()
        raise
    return nodes


def _as_declared(params: dict, specs) -> dict:
    """`--set threshold=0` reads as an integer, which ROS refuses for a double parameter: widen it."""
    floats = {spec.name for spec in specs if isinstance(spec.default, float)}
    return {k: float(v) if k in floats and type(v) is int else v for k, v in params.items()}


def _require_started(node, announce_s: float = 0.0) -> None:
    """An autostarted node that did not reach `active` is one clear error, not a node left half up; with
    `announce_s`, its ERROR goes out on /diagnostics first (see `AutostartNode.announce_diagnostics`)."""
    if node.get_parameter("autostart").value and node.state != "active":
        reason = node.configure_error or f"stuck in state {node.state} (see its log)"
        if announce_s > 0:
            node.announce_diagnostics(announce_s)
        raise SpatialqError(f"{node.get_fully_qualified_name()}: {reason}")


@contextmanager
def stop_on_signals():
    """An Event set by SIGINT / SIGTERM (what Ctrl-C and ros2 launch send), from before the nodes exist,
    so a stop during start-up is as clean as one later."""
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def spin_nodes(nodes: list, context, stop: threading.Event) -> None:
    """Spin until `stop` or shutdown; then let nodes that keep state save it (`close`), and destroy them."""
    executor = MultiThreadedExecutor(num_threads=max(2, 2 * len(nodes)), context=context)
    for node in nodes:
        executor.add_node(node)
    try:
        while context.ok() and not stop.is_set():
            executor.spin_once(timeout_sec=0.1)
    except ExternalShutdownException:
        pass
    finally:
        close_nodes(nodes)
        executor.shutdown()


def close_nodes(nodes: list) -> None:
    for node in nodes:
        close = getattr(node, "close", None)
        if close is not None:
            close()
        node.destroy_node()


def serve(make_nodes: Callable[[rclpy.Context], list], argv: list[str] | None = None,
          started: Callable[[list], None] | None = None) -> None:
    """Make the nodes in a fresh context and spin them until SIGINT / SIGTERM, then close them (saving state).
    A node that cannot start raises SpatialqError, with nothing left running."""
    from ..runtime.memory import limit_malloc_arenas

    limit_malloc_arenas()  # a process of its own, long-running: before any node makes a thread
    with stop_on_signals() as stop:
        context = rclpy.Context()
        rclpy.init(args=argv, context=context, signal_handler_options=SignalHandlerOptions.NO)
        try:
            nodes = make_nodes(context)
            if started is not None:
                started(nodes)
            spin_nodes(nodes, context, stop)
        finally:
            rclpy.try_shutdown(context=context)


def run_nodes(node_classes: list, argv: list[str] | None, prog: str) -> int:
    """Entry point of a node executable: construct, autostart, spin; a bad parameter is one line and exit 2."""
    def make(context) -> list:
        nodes: list = []
        try:
            for cls in node_classes:
                nodes.append(cls(context=context))
                _require_started(nodes[-1], ANNOUNCE_S)
        except Exception:
            for node in nodes:
                node.destroy_node()
            raise
        return nodes

    try:
        serve(make, argv)
    except SpatialqError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0
